//! The `kci-lite` command: `serve`, `admin create`, `migrate`, `export`,
//! `import`, `backup`, `check`.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use kci_lite::app::App;
use kci_lite::config::Config;
use kci_lite::{server, store};

/// jemalloc returns freed memory to the system (after a few seconds) where
/// the system allocator keeps what bursts of large request bodies took.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "kci-lite",
    version,
    about = "The KernelCI API as one binary and one SQLite file",
    long_about = "The KernelCI API as one binary and one SQLite file.\n\n\
                  Settings come from environment variables and a .env file in the working \
                  directory (upstream names: SECRET_KEY, ALGORITHM, SMTP_HOST, ...; see README.md)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (creates and migrates the database, bootstraps the first admin).
    Serve {
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8001")]
        bind: String,
        /// The SQLite database file.
        #[arg(long, default_value = "./kci-lite.db")]
        db: PathBuf,
    },
    /// Manage administrator accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Show, apply or revert schema migrations.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
        /// The SQLite database file.
        #[arg(long, global = true, default_value = "./kci-lite.db")]
        db: PathBuf,
    },
    /// Write every collection to DIR in mongoexport's format (one file per
    /// upstream MongoDB collection, plus kv.json), from one snapshot.
    Export {
        /// The directory to write (created if missing; files replaced).
        #[arg(long)]
        out: PathBuf,
        /// The SQLite database file.
        #[arg(long, default_value = "./kci-lite.db")]
        db: PathBuf,
    },
    /// Read the files of DIR (ours, or upstream's mongoexport output) into
    /// an empty database, in one transaction.
    Import {
        /// The directory to read.
        #[arg(long)]
        from: PathBuf,
        /// Add to a database that holds data: existing ids are skipped.
        #[arg(long)]
        merge: bool,
        /// The SQLite database file (created and migrated if missing).
        #[arg(long, default_value = "./kci-lite.db")]
        db: PathBuf,
    },
    /// Write a consistent copy of the database (SQLite's online backup),
    /// also while a server runs on it; the copy can be served as it is.
    Backup {
        /// The file to write (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
        /// The SQLite database file.
        #[arg(long, default_value = "./kci-lite.db")]
        db: PathBuf,
    },
    /// Verify the database: integrity, schema version, rows per table.
    /// Exits non-zero on any problem.
    Check {
        /// The SQLite database file.
        #[arg(long, default_value = "./kci-lite.db")]
        db: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a verified superuser. The password is read from standard input
    /// (--password-stdin), a prompt on a terminal, or KCI_INITIAL_PASSWORD.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The SQLite database file.
        #[arg(long, default_value = "./kci-lite.db")]
        db: PathBuf,
    },
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// List every migration and when it was applied.
    Status,
    /// Apply pending migrations (all, or up to --to).
    Up {
        #[arg(long)]
        to: Option<u32>,
    },
    /// Revert migrations down to --to (default: one step).
    Down {
        #[arg(long)]
        to: Option<u32>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { bind, db } => serve(&bind, &db),
        Command::Admin {
            command:
                AdminCommand::Create {
                    username,
                    email,
                    password_stdin,
                    db,
                },
        } => admin_create(&username, &email, password_stdin, &db),
        Command::Migrate { command, db } => migrate(command, &db),
        Command::Export { out, db } => export(&db, &out),
        Command::Import { from, merge, db } => import(&db, &from, merge),
        Command::Backup { out, db } => backup(&db, &out),
        Command::Check { db } => check(&db),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kci-lite: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Longest wait at shutdown for the last answers to be written.
const SHUTDOWN_WRITES: std::time::Duration = std::time::Duration::from_secs(2);

fn load_config() -> Result<Config, String> {
    Config::load().map_err(|e| format!("configuration: {e}"))
}

fn serve(bind: &str, db: &std::path::Path) -> Result<(), String> {
    let config = load_config()?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Freed memory goes back to the system after a few seconds even while
    // the server is idle (jemalloc purges on a thread of its own).
    if let Err(err) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("kci-lite: warning: freed memory is returned only under load: {err}");
    }
    let app = Arc::new(App::open(config, db).map_err(|e| e.to_string())?);
    let running = server::start(Arc::clone(&app), bind).map_err(|e| e.to_string())?;
    eprintln!(
        "kci-lite: serving http://{} (database {})",
        running.addr(),
        db.display()
    );
    let signal = signals.forever().next();
    eprintln!("kci-lite: signal {signal:?} received, shutting down");
    let writes = running.stop();
    app.close();
    writes.wait(SHUTDOWN_WRITES);
    eprintln!("kci-lite: stopped");
    Ok(())
}

fn admin_create(
    username: &str,
    email: &str,
    password_stdin: bool,
    db: &std::path::Path,
) -> Result<(), String> {
    let config = load_config()?;
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Password (again): ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords do not match".into());
        }
        first
    } else if let Some(password) = config.initial_password.clone() {
        password
    } else {
        return Err(
            "no password: use --password-stdin, a terminal, or KCI_INITIAL_PASSWORD".into(),
        );
    };
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let app = App::open_without_admin(config, db).map_err(|e| e.to_string())?;
    let result = app.create_superuser(username, email, &password);
    app.close();
    let user = result.map_err(|e| e.to_string())?;
    println!("created superuser '{}' with id {}", user.username, user.id);
    Ok(())
}

fn migrate(command: MigrateCommand, db: &std::path::Path) -> Result<(), String> {
    let conn = store::open_connection(db, true).map_err(|e| e.to_string())?;
    match command {
        MigrateCommand::Status => {
            let current = store::migrate::current(&conn).map_err(|e| e.to_string())?;
            println!(
                "schema version {current} (this binary knows {})",
                store::migrate::latest()
            );
            for m in store::migrate::status(&conn).map_err(|e| e.to_string())? {
                println!(
                    "{:04}_{:<20} {}",
                    m.version,
                    m.name,
                    m.applied_at.as_deref().unwrap_or("pending")
                );
            }
        }
        MigrateCommand::Up { to } => {
            let done = store::migrate::up(&conn, to).map_err(|e| e.to_string())?;
            if done.is_empty() {
                println!("nothing to apply");
            }
            for v in done {
                println!("applied {v:04}");
            }
        }
        MigrateCommand::Down { to } => {
            let current = store::migrate::current(&conn).map_err(|e| e.to_string())?;
            let to = to.unwrap_or(current.saturating_sub(1));
            let done = store::migrate::down(&conn, to).map_err(|e| e.to_string())?;
            if done.is_empty() {
                println!("nothing to revert");
            }
            for v in done {
                println!("reverted {v:04}");
            }
        }
    }
    Ok(())
}

fn backup(db: &std::path::Path, out: &std::path::Path) -> Result<(), String> {
    let bytes = store::maintenance::backup(db, out).map_err(|e| e.to_string())?;
    eprintln!(
        "backup: {} ({:.1} MiB) written from {}",
        out.display(),
        bytes as f64 / (1024.0 * 1024.0),
        db.display()
    );
    Ok(())
}

fn check(db: &std::path::Path) -> Result<(), String> {
    let report = store::maintenance::check(db).map_err(|e| e.to_string())?;
    println!(
        "schema version {} (this binary knows {})",
        report.schema, report.latest
    );
    for (table, what, n) in &report.counts {
        println!("{table:<12} {n:>12}  {what}");
    }
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    if report.problems.is_empty() {
        println!("ok");
        Ok(())
    } else {
        Err(format!(
            "{} problems in {}",
            report.problems.len(),
            db.display()
        ))
    }
}

/// Progress bars on standard error when it is a terminal.
struct Bars {
    bar: Option<indicatif::ProgressBar>,
}

impl Bars {
    fn new() -> Bars {
        Bars { bar: None }
    }
}

impl kci_lite::exchange::Progress for Bars {
    fn start(&mut self, collection: &str, total: Option<u64>) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {human_pos}/{human_len} {per_sec} {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(collection.to_string());
        self.bar = Some(bar);
    }

    fn update(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

fn export(db: &std::path::Path, out: &std::path::Path) -> Result<(), String> {
    if !db.is_file() {
        return Err(format!("{}: no such database file", db.display()));
    }
    let mut conn = store::open_connection(db, true).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let counts =
        kci_lite::exchange::export(&mut conn, out, &mut Bars::new()).map_err(|e| e.to_string())?;
    eprintln!(
        "exported: {counts} (to {} in {:.1} s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn import(db: &std::path::Path, from: &std::path::Path, merge: bool) -> Result<(), String> {
    let config = load_config()?;
    let mut conn = store::open_connection(db, true).map_err(|e| e.to_string())?;
    store::migrate::up(&conn, None).map_err(|e| e.to_string())?;
    let done = kci_lite::exchange::import(
        &mut conn,
        from,
        merge,
        &config.cloud_events_source,
        &mut Bars::new(),
    )
    .map_err(|e| e.to_string())?;
    if done.orphans > 0 {
        eprintln!(
            "import: {} nodes have a parent that is not stored",
            done.orphans
        );
    }
    if done.without_groups > 0 {
        eprintln!(
            "import: {} users are members of a group that is not stored",
            done.without_groups
        );
    }
    eprintln!("imported: {}; skipped {}", done.counts, done.skipped);
    Ok(())
}
