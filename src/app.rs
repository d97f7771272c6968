//! The application: configuration, store, keys, user cache and mailer,
//! built once at start-up and shared by every worker as `Arc<App>`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rand::Rng;
use rand::distr::Alphanumeric;

use crate::auth::{self, Keys, UserCache};
use crate::config::Config;
use crate::ids;
use crate::mail::Mailer;
use crate::model::user::{Group, User};
use crate::pubsub::{Broker, BrokerConfig};
use crate::store::Notice;
use crate::store::{Store, StoreError, groups, meta, users};
use crate::streams::{Hub, HubConfig};
use crate::timer::{Timer, TimerConfig, Wake};
use crate::timestamp::SystemClock;

pub use crate::model::user::NODE_EDIT_ANY;

/// Everything a request handler needs.
pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub broker: Arc<Broker>,
    /// The open event streams (`GET /stream/{channel}`).
    pub streams: Arc<Hub>,
    timer: Mutex<Timer>,
    pub keys: Keys,
    pub users: Arc<UserCache>,
    pub mailer: Mailer,
    /// A hash checked when a login names no user, so that both cases take
    /// the same time (see [`App::dummy_hash`]).
    dummy_hash: Arc<OnceLock<String>>,
    /// Requests handled since start (Prometheus `http_requests_total`).
    pub requests: AtomicU64,
}

/// A start-up failure, printed by `main` as is.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl From<StoreError> for StartError {
    fn from(err: StoreError) -> StartError {
        StartError(err.to_string())
    }
}

fn dummy_hash(cost: u32) -> String {
    auth::hash_password(&random_password(20), cost).unwrap_or_default()
}

/// A random password for bootstrapped and invited accounts.
pub fn random_password(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Why [`App::create_user`] stored nothing.
#[derive(Debug)]
pub enum CreateUserError {
    /// Another user already has this username.
    UsernameTaken,
    /// Another user already has this e-mail address (compared
    /// case-insensitively).
    EmailTaken,
    /// No group has this name.
    UnknownGroup(String),
    /// The store failed, or caught a uniqueness race itself.
    Store(StoreError),
}

impl From<StoreError> for CreateUserError {
    fn from(err: StoreError) -> CreateUserError {
        CreateUserError::Store(err)
    }
}

impl App {
    /// Opens the database (migrating it), loads or generates the secret,
    /// ensures `node:edit:any` and the first admin exist.
    pub fn open(config: Config, db: &Path) -> Result<App, StartError> {
        let app = App::open_without_admin(config, db)?;
        app.bootstrap_admin()?;
        Ok(app)
    }

    /// Like [`App::open`] but never creates the first admin (for
    /// `kci-lite admin create`, which creates the admin it is asked for).
    pub fn open_without_admin(config: Config, db: &Path) -> Result<App, StartError> {
        for name in &config.ignored {
            eprintln!("kci-lite: {name} is an upstream setting with no meaning here; ignored");
        }
        let store = Arc::new(Store::open(db, config.synchronous_full)?);
        let (notices, notices_rx) = crossbeam_channel::unbounded::<Vec<Notice>>();
        store.set_notifier(notices);
        // Commit notices go to the broker; node changes also wake the timer;
        // new stored events go to the event streams.
        let (to_broker, broker_rx) = crossbeam_channel::unbounded();
        let (to_timer, timer_rx) = crossbeam_channel::unbounded();
        let (to_streams, streams_rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("kci-notices".into())
            .spawn(move || {
                for batch in notices_rx {
                    if let Some(wake) = Wake::of(&batch) {
                        let _ = to_timer.send(wake);
                    }
                    let stored: Vec<Notice> = batch
                        .iter()
                        .filter(|n| matches!(n, Notice::Channel(_)))
                        .cloned()
                        .collect();
                    if !stored.is_empty() {
                        let _ = to_streams.send(stored);
                    }
                    if to_broker.send(batch).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| StartError(format!("cannot start the notice thread: {e}")))?;
        let timer = Timer::start(
            Arc::clone(&store),
            TimerConfig {
                source: config.cloud_events_source.clone(),
                event_ttl_secs: config.event_history_ttl_secs,
                telemetry_ttl_secs: config.telemetry_ttl_secs,
                node_purge_age_days: config.node_purge_age_days,
            },
            timer_rx,
            Arc::new(SystemClock),
        )?;
        let broker = Broker::start(
            Arc::clone(&store),
            broker_rx,
            BrokerConfig {
                keep_alive: config.keep_alive,
                source: config.cloud_events_source.clone(),
                history_ttl_secs: config.event_history_ttl_secs,
                max_subscriptions_per_user: config.max_subscriptions_per_user,
            },
            Arc::new(SystemClock),
        )?;
        let streams = Hub::start(
            Arc::clone(&store),
            streams_rx,
            HubConfig {
                keep_alive: config.keep_alive,
                history_ttl_secs: config.event_history_ttl_secs,
            },
            Arc::new(SystemClock),
        )?;
        let secret = match &config.secret_key {
            Some(secret) => secret.clone(),
            None => store.write(|c, _| {
                if let Some(secret) = meta::get(c, "secret_key")? {
                    return Ok::<_, StoreError>(secret);
                }
                let mut bytes = [0u8; 32];
                rand::Rng::fill(&mut rand::rng(), &mut bytes);
                let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                meta::set(c, "secret_key", &secret)?;
                Ok(secret)
            })?,
        };
        let keys = Keys::new(
            config.algorithm,
            &secret,
            config.unified_secret.as_deref(),
            config.token_lifetime_secs,
        );
        store.write(|c, _| {
            if groups::get_by_name(c, NODE_EDIT_ANY)?.is_none() {
                groups::insert(
                    c,
                    &Group {
                        id: ids::new_id(),
                        name: NODE_EDIT_ANY.to_string(),
                    },
                )?;
            }
            Ok::<_, StoreError>(())
        })?;
        let mailer = Mailer::from_config(&config).map_err(|e| StartError(e.0))?;
        let cache = store.read(users::all)?;
        let app = App {
            store,
            broker,
            streams,
            timer: Mutex::new(timer),
            keys,
            users: Arc::new(UserCache::load(cache)),
            mailer,
            dummy_hash: Arc::new(OnceLock::new()),
            requests: AtomicU64::new(0),
            config,
        };
        // The dummy hash costs as much as a login: compute it off the
        // start-up path.
        let (dummy, cost) = (Arc::clone(&app.dummy_hash), app.config.bcrypt_cost);
        std::thread::spawn(move || {
            dummy.get_or_init(|| dummy_hash(cost));
        });
        Ok(app)
    }

    /// Creates the first superuser when none exists; a generated password
    /// is printed once.
    fn bootstrap_admin(&self) -> Result<(), StartError> {
        if self.store.read(users::any_superuser)? {
            return Ok(());
        }
        let (password, generated) = match &self.config.initial_password {
            Some(p) => (p.clone(), false),
            None => (random_password(20), true),
        };
        let username = self.config.initial_admin_username.clone();
        let email = self.config.initial_admin_email.clone();
        self.create_superuser(&username, &email, &password)?;
        if generated {
            eprintln!("kci-lite: initial admin password: {password}");
        }
        eprintln!("kci-lite: created initial admin user '{username}'");
        Ok(())
    }

    /// Creates a verified, active superuser (start-up and `admin create`).
    pub fn create_superuser(
        &self,
        username: &str,
        email: &str,
        password: &str,
    ) -> Result<User, StartError> {
        let email = crate::model::user::normalize_email(email)
            .ok_or_else(|| StartError(format!("'{email}' is not a valid e-mail address")))?;
        let hashed_password = auth::hash_password(password, self.config.bcrypt_cost)
            .map_err(|e| StartError(e.to_string()))?;
        let user = User {
            id: ids::new_id(),
            email: email.clone(),
            is_active: true,
            is_superuser: true,
            is_verified: true,
            username: username.to_string(),
            groups: Vec::new(),
            hashed_password,
        };
        self.create_user(user, Vec::new()).map_err(|err| match err {
            CreateUserError::UsernameTaken => {
                StartError(format!("a user named '{username}' already exists"))
            }
            CreateUserError::EmailTaken => {
                StartError(format!("a user with e-mail '{email}' already exists"))
            }
            CreateUserError::UnknownGroup(name) => StartError(format!("no group named '{name}'")),
            CreateUserError::Store(StoreError::Conflict(what)) => StartError(what),
            CreateUserError::Store(other) => StartError(other.to_string()),
        })
    }

    /// Stores a new user in one write: its username and e-mail must be
    /// free, and its groups are the ones named in `group_names` (looked up
    /// in the same transaction; they replace `user.groups`). Once the write
    /// commits, the user cache holds the user.
    pub fn create_user(
        &self,
        mut user: User,
        group_names: Vec<String>,
    ) -> Result<User, CreateUserError> {
        let cache = Arc::clone(&self.users);
        self.store.write_then(
            move |c, _| {
                if users::get_by_username(c, &user.username)?.is_some() {
                    return Err(CreateUserError::UsernameTaken);
                }
                if users::get_by_email(c, &user.email)?.is_some() {
                    return Err(CreateUserError::EmailTaken);
                }
                user.groups = group_names
                    .into_iter()
                    .map(|name| match groups::get_by_name(c, &name)? {
                        Some(group) => Ok(group),
                        None => Err(CreateUserError::UnknownGroup(name)),
                    })
                    .collect::<Result<_, _>>()?;
                users::insert(c, &user)?;
                Ok(user)
            },
            move |user| cache.put(user),
        )
    }

    /// The hash to check a password against when no user matched.
    pub fn dummy_hash(&self) -> &str {
        let cost = self.config.bcrypt_cost;
        self.dummy_hash.get_or_init(|| dummy_hash(cost))
    }

    /// Counts one handled request.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops the pub/sub dispatcher, ends the event streams (after what was
    /// committed), stops the writer, checkpoints the WAL.
    pub fn close(&self) {
        if let Ok(mut timer) = self.timer.lock() {
            timer.stop();
        }
        self.broker.stop();
        self.streams.stop();
        self.store.close();
    }
}
