//! Persistent state: devices, enrollment tokens, API tokens, audit.
//!
//! One code path over sqlx's `Any` driver serves both backends: embedded
//! SQLite (a file in the data dir, WAL) by default and PostgreSQL for
//! scale-out. Each backend has its own migrations (`migrations/<backend>/`),
//! embedded in the binary and applied at start. Queries use `$N`
//! placeholders, which both accept, and plain `TEXT`/`BIGINT` columns (times
//! are Unix milliseconds), so rows decode the same way on either.

mod actions;
mod alerts;
mod audit;
mod content;
mod devices;
mod events;
mod import;
mod investigations;
mod lifecycle;
mod links;
mod mail;
mod samples;
mod tokens;
mod users;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use actions::{Action, ActionFilter, ActionSource, Changes, Containment, NewAction};
pub use alerts::{Alert, AlertEvent, AlertFilter, AlertPath, AlertStatus};
pub use audit::{AuditEntry, AuditFilter, NewAudit};
pub use content::{Bundle, Indicator, NewBundle};
pub use devices::{Device, DeviceQuery, DeviceSort, DeviceStatus, HelloInfo, NewDevice};
pub use events::ActionEvent;
pub use import::ImportedAction;
pub use investigations::{DeviceGroup, Investigation, InvestigationEvent};
pub use lifecycle::{ActionStatus, Move, Step};
pub use links::{Click, UrlBlock};
pub use mail::MailSearchRecord;
pub use samples::Sample;
pub use tokens::{
    hash_secret, ApiToken, EnrollmentToken, NewApiToken, NewDeviceOwned, NewEnrollmentToken, Refused, Role, TokenGrant,
    TokenKind, TokenRefusal,
};
pub use users::{Session, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}

impl StoreError {
    /// A row of `table` this version cannot read.
    pub(crate) fn corrupt(table: &'static str, detail: String) -> Self {
        Self::Corrupt { table, detail }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Pulsed after every commit that appended to an event log.
    logged: Arc<Logged>,
}

/// The wake-up signal of the event logs (`action_events`, `alert_events`):
/// the store pulses it after each commit that appended to one, so event
/// sinks and the console stream never miss a change and no caller has to
/// remember to raise it.
#[derive(Debug)]
pub struct Logged {
    tx: tokio::sync::watch::Sender<u64>,
}

impl Logged {
    fn pulse(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

impl Store {
    /// Connect to `url` and apply this build's migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let options: AnyConnectOptions = url.parse::<AnyConnectOptions>()?.disable_statement_logging();
        let pool = match backend {
            Backend::Sqlite => {
                // One writer at a time is SQLite's model; a small pool keeps
                // readers concurrent under WAL while writes queue briefly.
                AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => AnyPoolOptions::new().max_connections(16).connect_with(options).await?,
        };
        let logged = Arc::new(Logged { tx: tokio::sync::watch::channel(0).0 });
        let store = Self { pool, backend, logged };
        // Replicas starting together: one migrates, the others wait and
        // find it done (sqlx's own lock is taken only after it creates its
        // bookkeeping table, which two at once can fail at).
        store.exclusively(store.migrate()).await??;
        Ok(store)
    }

    /// Run `work` holding the database's start-up lock, so replicas
    /// starting at the same moment do first-start work (migrations, the
    /// first admin) one after the other. On PostgreSQL a session advisory
    /// lock, ended with its session (the connection is closed after, even
    /// if `work` is cancelled half-way); on SQLite the data dir's own lock
    /// already keeps to one coordinator.
    pub async fn exclusively<T>(&self, work: impl std::future::Future<Output = T>) -> Result<T, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(work.await);
        }
        let mut conn = self.pool.acquire().await?.detach();
        sqlx::query("SELECT pg_advisory_lock($1)").bind(START_LOCK).execute(&mut conn).await?;
        let out = work.await;
        let _ = sqlx::Connection::close(conn).await;
        Ok(out)
    }

    /// The migrations applied to this database, by version.
    pub async fn migrations_applied(&self) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&self.pool).await?)
    }

    /// Begin a transaction that will write. On SQLite it takes the write lock
    /// up front (`BEGIN IMMEDIATE`): a deferred transaction that reads first
    /// cannot upgrade once another connection has written, and fails with
    /// SQLITE_BUSY_SNAPSHOT instead of waiting.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let statement = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        Ok(self.pool.begin_with(statement).await?)
    }

    /// Commit a transaction that appended to an event log, then wake the
    /// readers of the logs.
    pub(crate) async fn commit_logged(&self, tx: sqlx::Transaction<'static, sqlx::Any>) -> Result<(), StoreError> {
        tx.commit().await?;
        self.logged.pulse();
        Ok(())
    }

    /// What event-log readers wait on.
    pub fn logged(&self) -> Arc<Logged> {
        self.logged.clone()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = Migrator::new(Embedded(self.backend)).await?;
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The key of [`Store::exclusively`]'s advisory lock ("picket" in ASCII).
const START_LOCK: i64 = 0x7069_636b_6574;

/// This build's migrations for one backend, compiled into the binary.
#[derive(Debug)]
struct Embedded(Backend);

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../../migrations/sqlite/0001_foundation.sql")),
    (2, "actions", include_str!("../../migrations/sqlite/0002_actions.sql")),
    (3, "offboarding", include_str!("../../migrations/sqlite/0003_offboarding.sql")),
    (4, "detection", include_str!("../../migrations/sqlite/0004_detection.sql")),
    (5, "samples", include_str!("../../migrations/sqlite/0005_samples.sql")),
    (6, "investigations", include_str!("../../migrations/sqlite/0006_investigations.sql")),
    (7, "classification", include_str!("../../migrations/sqlite/0007_classification.sql")),
    (8, "credentials", include_str!("../../migrations/sqlite/0008_credentials.sql")),
    (9, "verdicts", include_str!("../../migrations/sqlite/0009_verdicts.sql")),
    (10, "renewal", include_str!("../../migrations/sqlite/0010_renewal.sql")),
    (11, "users", include_str!("../../migrations/sqlite/0011_users.sql")),
    (12, "containment", include_str!("../../migrations/sqlite/0012_containment.sql")),
    (13, "mail_searches", include_str!("../../migrations/sqlite/0013_mail_searches.sql")),
    (14, "mail_hosts", include_str!("../../migrations/sqlite/0014_mail_hosts.sql")),
    (15, "links", include_str!("../../migrations/sqlite/0015_links.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../../migrations/postgres/0001_foundation.sql")),
    (2, "actions", include_str!("../../migrations/postgres/0002_actions.sql")),
    (3, "offboarding", include_str!("../../migrations/postgres/0003_offboarding.sql")),
    (4, "detection", include_str!("../../migrations/postgres/0004_detection.sql")),
    (5, "samples", include_str!("../../migrations/postgres/0005_samples.sql")),
    (6, "investigations", include_str!("../../migrations/postgres/0006_investigations.sql")),
    (7, "classification", include_str!("../../migrations/postgres/0007_classification.sql")),
    (8, "credentials", include_str!("../../migrations/postgres/0008_credentials.sql")),
    (9, "verdicts", include_str!("../../migrations/postgres/0009_verdicts.sql")),
    (10, "renewal", include_str!("../../migrations/postgres/0010_renewal.sql")),
    (11, "users", include_str!("../../migrations/postgres/0011_users.sql")),
    (12, "containment", include_str!("../../migrations/postgres/0012_containment.sql")),
    (13, "mail_searches", include_str!("../../migrations/postgres/0013_mail_searches.sql")),
    (14, "mail_hosts", include_str!("../../migrations/postgres/0014_mail_hosts.sql")),
    (15, "links", include_str!("../../migrations/postgres/0015_links.sql")),
];

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 's>> {
        let list = match self.0 {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations = list
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(*version, Cow::Borrowed(name), MigrationType::Simple, Cow::Borrowed(sql), false)
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// A page of a list: its items and the cursor of the next page.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `rows` was fetched with `LIMIT limit + 1`: keep `limit` and, if there
    /// was one more, the cursor of the last kept item.
    pub(crate) fn of(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(cursor_of)
        } else {
            None
        };
        Self { items: rows, next_cursor }
    }
}

/// A `time:id` cursor of a newest-first list; `None` starts at the newest.
pub(crate) fn time_cursor(table: &'static str, cursor: Option<&str>) -> Result<(i64, String), StoreError> {
    let Some(c) = cursor else { return Ok((i64::MAX, String::new())) };
    let bad = || StoreError::Corrupt { table, detail: format!("cursor {c:?}") };
    let (at, id) = c.split_once(':').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_string()))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A fresh store on SQLite in a temp dir, and — when
    /// `PICKET_TEST_POSTGRES_URL` is set — a fresh schema on PostgreSQL.
    pub async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut out = vec![(Store::connect(&url).await.expect("sqlite store"), Some(dir))];
        if let Some(pg) = postgres_url_for_test().await {
            out.push((Store::connect(&pg).await.expect("postgres store"), None));
        }
        out
    }

    /// A URL of a new, empty PostgreSQL database for one test, if the
    /// environment provides a server.
    pub async fn postgres_url_for_test() -> Option<String> {
        let base = std::env::var("PICKET_TEST_POSTGRES_URL").ok()?;
        Some(crate::testdb::fresh_postgres_database(&base).await.expect("create test database"))
    }
}
