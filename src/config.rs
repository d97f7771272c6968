//! Configuration: defaults, then a `.env` file in the working directory, then
//! the process environment (which wins). Names are upstream's where upstream
//! has them, case-insensitive; kci-lite's own start with `KCI_`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Default request body limit (16 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Default token lifetime when neither expiry variable is set (10 years).
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 315_360_000;
/// Default number of HTTP worker threads.
pub const DEFAULT_HTTP_THREADS: usize = 16;
/// Default longest time one write to a client may block, in seconds.
pub const DEFAULT_SEND_TIMEOUT_SECS: u64 = 10;
/// Longest send timeout accepted, in seconds.
const MAX_SEND_TIMEOUT_SECS: u64 = 3600;
/// Default longest time a request body may take to arrive, in seconds.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;
/// Longest body timeout accepted, in seconds.
const MAX_BODY_TIMEOUT_SECS: u64 = 3600;
/// Default longest time a request head may take to arrive once it has
/// begun, in seconds.
pub const DEFAULT_HEAD_TIMEOUT_SECS: u64 = 30;
/// Longest head timeout accepted, in seconds.
const MAX_HEAD_TIMEOUT_SECS: u64 = 3600;
/// Default longest time a keep-alive connection with nothing in flight
/// stays open, in seconds.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Longest idle timeout accepted, in seconds.
const MAX_IDLE_TIMEOUT_SECS: u64 = 86_400;
/// Default cap on the connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Highest connection cap accepted.
const MAX_MAX_CONNECTIONS: usize = 1_000_000;
/// Default cap on the live subscriptions of one user.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_USER: usize = 10_000;
/// Highest cap on the live subscriptions of one user accepted.
const MAX_MAX_SUBSCRIPTIONS_PER_USER: usize = 1_000_000;

/// Default pub/sub keep-alive period (`KEEP_ALIVE_PERIOD`), in seconds.
pub const DEFAULT_KEEP_ALIVE_SECS: f64 = 45.0;
/// Shortest keep-alive period accepted other than 0 (off), in seconds: a
/// shorter one would keep the broker waking up for nothing.
const MIN_KEEP_ALIVE_SECS: f64 = 0.001;
/// Longest keep-alive period accepted, in seconds (one day).
const MAX_KEEP_ALIVE_SECS: f64 = 86_400.0;

/// Shortest HMAC secret accepted (jwt-simple refuses weaker keys).
pub const MIN_SECRET_LEN: usize = 12;

/// Upstream variables that have no meaning here: accepted, logged, ignored.
const IGNORED_UPSTREAM: &[&str] = &["MONGO_SERVICE", "REDIS_HOST", "REDIS_PORT"];

/// JWT signing algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    None,
    StartTls,
    Tls,
}

/// SMTP relay settings; present only when both host and port are set.
#[derive(Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub sender: String,
    pub password: String,
}

/// Every setting of the server, checked once at start-up.
#[derive(Clone)]
pub struct Config {
    pub secret_key: Option<String>,
    pub unified_secret: Option<String>,
    pub algorithm: Algorithm,
    pub token_lifetime_secs: u64,
    pub initial_password: Option<String>,
    pub initial_admin_username: String,
    pub initial_admin_email: String,
    /// `KEEP_ALIVE_PERIOD`: how long a waiting `/listen` waits before it
    /// gets a `BEEP`; `None` (`KEEP_ALIVE_PERIOD=0`) sends none.
    pub keep_alive: Option<Duration>,
    pub cloud_events_source: String,
    pub public_base_url: Option<String>,
    pub smtp: Option<Smtp>,
    pub email_sender: String,
    pub event_history_ttl_secs: u64,
    /// `TELEMETRY_TTL_SECONDS`: telemetry events older than this are
    /// purged by the timer and never shown.
    pub telemetry_ttl_secs: u64,
    pub node_purge_age_days: u64,
    pub max_body_bytes: u64,
    pub http_threads: usize,
    /// A client that reads nothing of a response for this long is
    /// disconnected.
    pub send_timeout_secs: u64,
    /// A request body slower than this to arrive is answered 408.
    pub body_timeout_secs: u64,
    /// A request head slower than this to arrive (from its first byte) is
    /// answered 408.
    pub head_timeout_secs: u64,
    /// A connection with no request in flight and none arriving for this
    /// long is closed.
    pub idle_timeout_secs: u64,
    /// Most connections open at once (also bounded by the file descriptors
    /// the process may open); more are closed as soon as accepted.
    pub max_connections: usize,
    /// Most live pub/sub subscriptions one user may hold (429 above it).
    pub max_subscriptions_per_user: usize,
    pub bcrypt_cost: u32,
    pub synchronous_full: bool,
    /// Names of ignored upstream variables that were set (logged at start).
    pub ignored: Vec<String>,
}

/// A setting that has an unusable value; the message names the variable.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("secret_key", &redact(&self.secret_key))
            .field("unified_secret", &redact(&self.unified_secret))
            .field("algorithm", &self.algorithm)
            .field("token_lifetime_secs", &self.token_lifetime_secs)
            .field("initial_password", &redact(&self.initial_password))
            .field("initial_admin_username", &self.initial_admin_username)
            .field("smtp_host", &self.smtp.as_ref().map(|s| &s.host))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("http_threads", &self.http_threads)
            .field("bcrypt_cost", &self.bcrypt_cost)
            .finish_non_exhaustive()
    }
}

/// The raw variables: `.env` first, the process environment on top; keys
/// upper-cased because upstream's settings are case-insensitive.
pub fn gather(dotenv: Option<&Path>) -> Result<HashMap<String, String>, ConfigError> {
    let mut vars = HashMap::new();
    if let Some(path) = dotenv
        && path.exists()
    {
        let iter = dotenvy::from_path_iter(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        for item in iter {
            let (key, value) =
                item.map_err(|e| ConfigError(format!("bad line in {}: {e}", path.display())))?;
            vars.insert(key.to_ascii_uppercase(), value);
        }
    }
    for (key, value) in std::env::vars_os() {
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str()) {
            vars.insert(key.to_ascii_uppercase(), value.to_string());
        }
    }
    Ok(vars)
}

impl Config {
    /// Builds the configuration from the working directory's `.env` and the
    /// process environment.
    pub fn load() -> Result<Config, ConfigError> {
        Config::from_vars(&gather(Some(Path::new(".env")))?)
    }

    /// Builds and checks the configuration from a map of upper-case names.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let algorithm = match get("ALGORITHM").as_deref() {
            None | Some("HS256") => Algorithm::HS256,
            Some("HS384") => Algorithm::HS384,
            Some("HS512") => Algorithm::HS512,
            Some(other) => {
                return Err(ConfigError(format!(
                    "ALGORITHM: unsupported value '{other}' (use HS256, HS384 or HS512)"
                )));
            }
        };
        let token_lifetime_secs = match (
            get("ACCESS_TOKEN_EXPIRE_SECONDS"),
            get("ACCESS_TOKEN_EXPIRE_MINUTES"),
        ) {
            (Some(secs), _) => parse_num::<u64>("ACCESS_TOKEN_EXPIRE_SECONDS", &secs)?,
            (None, Some(mins)) => parse_num::<u64>("ACCESS_TOKEN_EXPIRE_MINUTES", &mins)?
                .checked_mul(60)
                .ok_or_else(|| ConfigError("ACCESS_TOKEN_EXPIRE_MINUTES: too large".into()))?,
            (None, None) => DEFAULT_TOKEN_LIFETIME_SECS,
        };
        if token_lifetime_secs > MAX_SECONDS {
            return Err(ConfigError(format!(
                "ACCESS_TOKEN_EXPIRE_SECONDS / _MINUTES: at most {MAX_SECONDS} seconds"
            )));
        }
        let initial_admin_username =
            get("KCI_INITIAL_ADMIN_USERNAME").unwrap_or_else(|| "admin".to_string());
        let initial_admin_email = get("KCI_INITIAL_ADMIN_EMAIL")
            .unwrap_or_else(|| format!("{initial_admin_username}@kernelci.org"));
        let keep_alive = keep_alive_period(get("KEEP_ALIVE_PERIOD").as_deref())?;
        let email_sender = get("EMAIL_SENDER").unwrap_or_default();
        let smtp = match (get("SMTP_HOST"), get("SMTP_PORT")) {
            (Some(host), Some(port)) => {
                let port = parse_num::<u16>("SMTP_PORT", &port)?;
                let security = match get("SMTP_SECURITY").map(|s| s.to_ascii_lowercase()) {
                    None if port == 465 => SmtpSecurity::Tls,
                    None => SmtpSecurity::StartTls,
                    Some(s) if s == "tls" || s == "ssl" => SmtpSecurity::Tls,
                    Some(s) if s == "starttls" => SmtpSecurity::StartTls,
                    Some(s) if s == "none" || s == "plain" => SmtpSecurity::None,
                    Some(s) => {
                        return Err(ConfigError(format!(
                            "SMTP_SECURITY: unsupported value '{s}' (use none, starttls or tls)"
                        )));
                    }
                };
                Some(Smtp {
                    host,
                    port,
                    security,
                    sender: email_sender.clone(),
                    password: vars.get("EMAIL_PASSWORD").cloned().unwrap_or_default(),
                })
            }
            _ => None,
        };
        let bcrypt_cost = match get("KCI_BCRYPT_COST") {
            Some(v) => {
                let cost = parse_num::<u32>("KCI_BCRYPT_COST", &v)?;
                if !(4..=31).contains(&cost) {
                    return Err(ConfigError(
                        "KCI_BCRYPT_COST: must be between 4 and 31".into(),
                    ));
                }
                cost
            }
            None => 12,
        };
        let http_threads = match get("KCI_HTTP_THREADS") {
            Some(v) => {
                let n = parse_num::<usize>("KCI_HTTP_THREADS", &v)?;
                if !(1..=1024).contains(&n) {
                    return Err(ConfigError(
                        "KCI_HTTP_THREADS: must be between 1 and 1024".into(),
                    ));
                }
                n
            }
            None => DEFAULT_HTTP_THREADS,
        };
        let synchronous_full = match get("KCI_SYNCHRONOUS").map(|s| s.to_ascii_lowercase()) {
            None => true,
            Some(s) if s == "full" => true,
            Some(s) if s == "normal" => false,
            Some(s) => {
                return Err(ConfigError(format!(
                    "KCI_SYNCHRONOUS: unsupported value '{s}' (use full or normal)"
                )));
            }
        };
        let max_body_bytes = match get("KCI_MAX_BODY_BYTES") {
            Some(v) => parse_num::<u64>("KCI_MAX_BODY_BYTES", &v)?,
            None => DEFAULT_MAX_BODY_BYTES,
        };
        let send_timeout_secs = ranged(
            &get,
            "KCI_SEND_TIMEOUT_SECONDS",
            DEFAULT_SEND_TIMEOUT_SECS,
            MAX_SEND_TIMEOUT_SECS,
            " seconds",
        )?;
        let body_timeout_secs = ranged(
            &get,
            "KCI_BODY_TIMEOUT_SECONDS",
            DEFAULT_BODY_TIMEOUT_SECS,
            MAX_BODY_TIMEOUT_SECS,
            " seconds",
        )?;
        let head_timeout_secs = ranged(
            &get,
            "KCI_HEAD_TIMEOUT_SECONDS",
            DEFAULT_HEAD_TIMEOUT_SECS,
            MAX_HEAD_TIMEOUT_SECS,
            " seconds",
        )?;
        let idle_timeout_secs = ranged(
            &get,
            "KCI_IDLE_TIMEOUT_SECONDS",
            DEFAULT_IDLE_TIMEOUT_SECS,
            MAX_IDLE_TIMEOUT_SECS,
            " seconds",
        )?;
        let max_connections = ranged(
            &get,
            "KCI_MAX_CONNECTIONS",
            DEFAULT_MAX_CONNECTIONS,
            MAX_MAX_CONNECTIONS,
            "",
        )?;
        let max_subscriptions_per_user = ranged(
            &get,
            "KCI_MAX_SUBSCRIPTIONS_PER_USER",
            DEFAULT_MAX_SUBSCRIPTIONS_PER_USER,
            MAX_MAX_SUBSCRIPTIONS_PER_USER,
            "",
        )?;
        let public_base_url = get("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_string());
        if let Some(url) = &public_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError(
                "PUBLIC_BASE_URL: must start with http:// or https://".into(),
            ));
        }
        for name in ["SECRET_KEY", "UNIFIED_SECRET"] {
            if get(name).is_some_and(|k| k.len() < MIN_SECRET_LEN) {
                return Err(ConfigError(format!(
                    "{name}: must be at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 32`)"
                )));
            }
        }
        Ok(Config {
            secret_key: get("SECRET_KEY"),
            unified_secret: get("UNIFIED_SECRET"),
            algorithm,
            token_lifetime_secs,
            initial_password: get("KCI_INITIAL_PASSWORD"),
            initial_admin_username,
            initial_admin_email,
            keep_alive,
            cloud_events_source: get("CLOUD_EVENTS_SOURCE")
                .unwrap_or_else(|| "https://api.kernelci.org/".to_string()),
            public_base_url,
            smtp,
            email_sender,
            event_history_ttl_secs: opt_num(&get, "EVENT_HISTORY_TTL_SECONDS", 604_800)?,
            telemetry_ttl_secs: opt_num(&get, "TELEMETRY_TTL_SECONDS", 1_209_600)?,
            node_purge_age_days: opt_num(&get, "NODE_PURGE_AGE_DAYS", 180)?,
            max_body_bytes,
            http_threads,
            send_timeout_secs,
            body_timeout_secs,
            head_timeout_secs,
            idle_timeout_secs,
            max_connections,
            max_subscriptions_per_user,
            bcrypt_cost,
            synchronous_full,
            ignored: IGNORED_UPSTREAM
                .iter()
                .filter(|name| vars.contains_key(**name))
                .map(|name| name.to_string())
                .collect(),
        })
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError(format!("{name}: '{value}' is not a valid number")))
}

/// `KEEP_ALIVE_PERIOD` (seconds, fractions allowed; default 45): `0` turns
/// keep-alives off (`None`), as upstream does; a negative value, a value
/// that is not a number, or one outside 0.001 to 86400 is refused.
fn keep_alive_period(text: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    let Some(text) = text else {
        return Ok(Some(Duration::from_secs_f64(DEFAULT_KEEP_ALIVE_SECS)));
    };
    let secs = parse_num::<f64>("KEEP_ALIVE_PERIOD", text)?;
    if secs == 0.0 {
        Ok(None)
    } else if (MIN_KEEP_ALIVE_SECS..=MAX_KEEP_ALIVE_SECS).contains(&secs) {
        Ok(Some(Duration::from_secs_f64(secs)))
    } else {
        Err(ConfigError(format!(
            "KEEP_ALIVE_PERIOD: must be 0 (no keep-alive) or {MIN_KEEP_ALIVE_SECS} to \
             {MAX_KEEP_ALIVE_SECS} seconds, not '{text}'"
        )))
    }
}

/// Longest retention or age accepted (100 years), so that date arithmetic
/// can never overflow.
const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// The whole number `name`, from 1 to `max` (`unit` names it in the
/// message), or `default` when unset.
fn ranged<T>(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    max: T,
    unit: &str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + From<u8> + fmt::Display,
{
    let Some(text) = get(name) else {
        return Ok(default);
    };
    let value: T = parse_num(name, &text)?;
    if value >= T::from(1) && value <= max {
        Ok(value)
    } else {
        Err(ConfigError(format!("{name}: must be 1 to {max}{unit}")))
    }
}

fn opt_num(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
) -> Result<u64, ConfigError> {
    let value = match get(name) {
        Some(v) => parse_num(name, &v)?,
        None => default,
    };
    let limit = if name.ends_with("_DAYS") {
        MAX_SECONDS / 86400
    } else {
        MAX_SECONDS
    };
    if value > limit {
        return Err(ConfigError(format!("{name}: at most {limit}")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let cfg = Config::from_vars(&vars(&[])).expect("valid");
        assert_eq!(cfg.algorithm, Algorithm::HS256);
        assert_eq!(cfg.token_lifetime_secs, DEFAULT_TOKEN_LIFETIME_SECS);
        assert_eq!(cfg.initial_admin_email, "admin@kernelci.org");
        assert!(cfg.smtp.is_none());
        assert_eq!(cfg.bcrypt_cost, 12);
    }

    #[test]
    fn seconds_win_over_minutes() {
        let cfg = Config::from_vars(&vars(&[
            ("ACCESS_TOKEN_EXPIRE_SECONDS", "10"),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "5"),
        ]))
        .expect("valid");
        assert_eq!(cfg.token_lifetime_secs, 10);
        let cfg = Config::from_vars(&vars(&[("ACCESS_TOKEN_EXPIRE_MINUTES", "5")])).expect("ok");
        assert_eq!(cfg.token_lifetime_secs, 300);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("ALGORITHM", "RS256"),
            ("SMTP_PORT", "x"),
            ("KCI_BCRYPT_COST", "3"),
            ("KEEP_ALIVE_PERIOD", "-1"),
            ("KCI_SYNCHRONOUS", "off"),
            ("SECRET_KEY", "short"),
            ("EVENT_HISTORY_TTL_SECONDS", "99999999999999999"),
            ("NODE_PURGE_AGE_DAYS", "99999999"),
        ] {
            let mut v = vars(&[(name, value)]);
            v.insert("SMTP_HOST".into(), "localhost".into());
            v.entry("SMTP_PORT".into()).or_insert_with(|| "25".into());
            let err = Config::from_vars(&v).expect_err("must fail");
            assert!(err.0.starts_with(name), "{err}");
        }
    }

    #[test]
    fn keep_alive_zero_is_off_and_bad_periods_are_refused() {
        let period =
            |v: &str| Config::from_vars(&vars(&[("KEEP_ALIVE_PERIOD", v)])).map(|c| c.keep_alive);
        let default = Config::from_vars(&vars(&[])).expect("valid").keep_alive;
        assert_eq!(default, Some(Duration::from_secs(45)));
        for off in ["0", "0.0", " 0 ", "-0"] {
            assert_eq!(period(off).expect("off"), None, "{off:?}");
        }
        assert_eq!(
            period("0.5").expect("valid"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(period("2").expect("valid"), Some(Duration::from_secs(2)));
        assert_eq!(
            period("0.001").expect("valid"),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            period("86400").expect("valid"),
            Some(Duration::from_secs(86_400))
        );
        for bad in [
            "-1", "-0.5", "abc", "NaN", "inf", "1e-9", "0.0009", "86401", "1e300",
        ] {
            let err = period(bad).expect_err(bad);
            assert!(err.0.starts_with("KEEP_ALIVE_PERIOD"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn smtp_security_follows_port() {
        let cfg =
            Config::from_vars(&vars(&[("SMTP_HOST", "h"), ("SMTP_PORT", "465")])).expect("valid");
        assert_eq!(cfg.smtp.map(|s| s.security), Some(SmtpSecurity::Tls));
    }

    #[test]
    fn upstream_only_variables_are_noted() {
        let cfg =
            Config::from_vars(&vars(&[("MONGO_SERVICE", "mongodb://db:27017")])).expect("valid");
        assert_eq!(cfg.ignored, vec!["MONGO_SERVICE".to_string()]);
    }

    #[test]
    fn debug_redacts_secrets() {
        let cfg = Config::from_vars(&vars(&[("SECRET_KEY", "hunter2-hunter2")])).expect("valid");
        assert!(!format!("{cfg:?}").contains("hunter2-hunter2"));
    }
}
