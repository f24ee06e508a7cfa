//! The log: one table of events with a global position, on SQLite or PostgreSQL.
//!
//! What must stay true:
//! - positions start at 1 and have no gaps, and a reader that has seen position `n` has seen
//!   every position below it: a position is given out only while holding the one write lock
//!   (SQLite's single writer; a PostgreSQL transaction-level advisory lock), so positions
//!   commit in order and a late commit can never appear below one already read;
//! - an event is acknowledged only after its transaction commits (SQLite WAL with
//!   `synchronous=FULL`; PostgreSQL's default `synchronous_commit`);
//! - the `events` table refuses UPDATE and DELETE (triggers), and so do `checkpoints` and the
//!   witnesses' `cosignatures` of them;
//! - a command id is stored in the same transaction as its events, so a retried command
//!   appends nothing new.
//!
//! One writer task per store commits every append that is waiting in one transaction (group
//! commit, [`append`]), so many concurrent commands share one fsync; the statements are the
//! same text on both databases (sqlx's SQLite driver takes `$N` parameters too).

mod append;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot, watch};

use crate::chain::{Checkpoint, Frontier, StoredEvent};

/// Why the store failed. Each variant says what the caller should do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another command changed the aggregate first: reload and retry, or tell the user (409).
    #[error(
        "the {aggregate_type} {aggregate_id} was changed by another command; reload and try again"
    )]
    Conflict {
        aggregate_type: String,
        aggregate_id: String,
    },
    /// This command id was used already: look up its first result.
    #[error("command {0} was already executed")]
    DuplicateCommand(String),
    /// The database failed: retry later; nothing was acknowledged.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored row does not parse: the log is damaged; run `dinh log verify`.
    #[error("damaged row at position {position}: {reason}")]
    Corrupt {
        /// The first position that does not parse.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store is shutting down.
    #[error("the record store is closed")]
    Closed,
}

/// Events of one command, ready to append.
#[derive(Debug, Clone)]
pub struct Append {
    /// `meeting` or `feedback`.
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// Sequence of the first event; the aggregate must be at `first_sequence - 1`.
    pub first_sequence: u64,
    /// (event_type, event_version, payload) of each event.
    pub events: Vec<(String, String, Value)>,
    /// The client's idempotency key.
    pub command_id: Option<String>,
    /// `role:id`.
    pub actor: String,
    /// RFC 3339 time of the command.
    pub recorded_at: String,
    /// A snapshot of the aggregate to keep with these events: (state, sequence it covers,
    /// snapshot number). Derived data, outside the hash chain; it only saves loading time.
    pub snapshot: Option<(Value, u64, u64)>,
}

/// Positions given to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Appended {
    /// The first event's position (for an append of no event: the head it saw).
    pub first: u64,
    /// The last event's position; `first..=last` has no gap.
    pub last: u64,
}

/// What a projection needs of a stored event: its payload still as text, so that it is parsed
/// once, straight into the typed event.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// Position in the log, from 1.
    pub position: u64,
    /// `meeting`, `feedback`, `loudspeakers`.
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// RFC 3339, UTC, as stored.
    pub recorded_at: String,
    /// The event's fields, as stored (JSON).
    pub payload: String,
}

/// A projection's stored rows and position.
#[derive(Debug, Clone, Default)]
pub struct ProjectionRows {
    /// Last position applied.
    pub position: u64,
    /// (key, row).
    pub rows: Vec<(String, Value)>,
}

/// The log, on SQLite or PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// The writer task's queue; the task ends when the last store is dropped.
    writer: mpsc::Sender<append::Job>,
    head: watch::Sender<u64>,
}

enum Db {
    Sqlite {
        read: SqlitePool,
        /// One connection for checkpoints and projection rows: writes outside the log, which
        /// the log's writer task does not need to serialise.
        side: SqlitePool,
    },
    Postgres(PgPool),
}

/// Run `$body` with `$ex` bound to the pool that reads (and writes outside the log): the same
/// statement text serves both databases.
macro_rules! on_pool {
    ($store:expr, $ex:ident => $body:expr) => {
        match &$store.inner.db {
            Db::Sqlite { read: $ex, .. } => $body,
            Db::Postgres($ex) => $body,
        }
    };
    (side $store:expr, $ex:ident => $body:expr) => {
        match &$store.inner.db {
            Db::Sqlite { side: $ex, .. } => $body,
            Db::Postgres($ex) => $body,
        }
    };
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The tables, the same on both databases but for the integer type (`{int}`).
const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        position {int} PRIMARY KEY,
        aggregate_type TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        sequence {int} NOT NULL,
        event_type TEXT NOT NULL,
        event_version TEXT NOT NULL,
        event_id TEXT NOT NULL UNIQUE,
        command_id TEXT,
        actor TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        payload TEXT NOT NULL,
        hash TEXT NOT NULL,
        UNIQUE (aggregate_type, aggregate_id, sequence))",
    "CREATE TABLE IF NOT EXISTS commands (
        command_id TEXT PRIMARY KEY,
        aggregate_id TEXT NOT NULL,
        first_position {int} NOT NULL,
        last_position {int} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS checkpoints (
        tree_size {int} PRIMARY KEY,
        root_hash TEXT NOT NULL,
        chain_hash TEXT NOT NULL,
        signed_at TEXT NOT NULL,
        key TEXT NOT NULL,
        signature TEXT NOT NULL,
        frontier TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapshots (
        aggregate_type TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        sequence {int} NOT NULL,
        version {int} NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id))",
    "CREATE TABLE IF NOT EXISTS projection_positions (
        name TEXT PRIMARY KEY,
        position {int} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS projection_rows (
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        row TEXT NOT NULL,
        PRIMARY KEY (name, key))",
];

/// SQLite: `INTEGER PRIMARY KEY` is the rowid, which is what a position should be.
const SQLITE_TRIGGERS: &[&str] = &[
    "CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the record is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the record is append-only'); END",
];

const PG_TRIGGERS: &[&str] = &[
    "CREATE OR REPLACE FUNCTION dinh_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'the record is append-only'; END $$",
    "DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'events_append_only' AND tgrelid = 'events'::regclass) THEN
            CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
                FOR EACH ROW EXECUTE FUNCTION dinh_append_only();
        END IF; END $$",
];

/// The statements that create the schema for one database.
fn schema(int: &'static str, triggers: &'static [&'static str]) -> impl Iterator<Item = String> {
    TABLES
        .iter()
        .map(move |t| t.replace("{int}", int))
        .chain(triggers.iter().map(|t| (*t).to_owned()))
}

/// Checkpoints and the witnesses' cosignatures of them: a column for the C2SP note (logs from
/// before it have none), the cosignatures' table, and append-only triggers on both (as on
/// `events`: a checkpoint once stored is never changed or removed).
const CHECKPOINT_TABLES: &[&str] = &["CREATE TABLE IF NOT EXISTS cosignatures (
        tree_size {int} NOT NULL,
        witness TEXT NOT NULL,
        cosigned_at {int} NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (tree_size, witness))"];

const SQLITE_CHECKPOINT_TRIGGERS: &[&str] = &[
    "CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
        BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
        BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS cosignatures_no_update BEFORE UPDATE ON cosignatures
        BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS cosignatures_no_delete BEFORE DELETE ON cosignatures
        BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END",
];

/// A PostgreSQL trigger calling `dinh_append_only`, created unless one of that name exists
/// on the table.
macro_rules! pg_trigger {
    ($name:literal, $table:literal, $on:literal, $each:literal) => {
        concat!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '",
            $name,
            "' AND tgrelid = '",
            $table,
            "'::regclass) THEN CREATE TRIGGER ",
            $name,
            " BEFORE ",
            $on,
            " ON ",
            $table,
            " FOR EACH ",
            $each,
            " EXECUTE FUNCTION dinh_append_only(); END IF; END $$"
        )
    };
}

/// After [`PG_TRIGGERS`] (which creates `dinh_append_only`). TRUNCATE too: it fires no
/// DELETE trigger.
const PG_CHECKPOINT_TRIGGERS: &[&str] = &[
    "ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS note TEXT",
    pg_trigger!(
        "checkpoints_append_only",
        "checkpoints",
        "UPDATE OR DELETE",
        "ROW"
    ),
    pg_trigger!(
        "checkpoints_no_truncate",
        "checkpoints",
        "TRUNCATE",
        "STATEMENT"
    ),
    pg_trigger!(
        "cosignatures_append_only",
        "cosignatures",
        "UPDATE OR DELETE",
        "ROW"
    ),
    pg_trigger!(
        "cosignatures_no_truncate",
        "cosignatures",
        "TRUNCATE",
        "STATEMENT"
    ),
];

/// The checkpoint statements for SQLite: `ADD COLUMN` only when the column is missing
/// (SQLite has no `IF NOT EXISTS` for columns).
async fn sqlite_checkpoint_schema(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let has_note: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_table_info('checkpoints') WHERE name = 'note'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if has_note == 0 {
        sqlx::query("ALTER TABLE checkpoints ADD COLUMN note TEXT")
            .execute(&mut *conn)
            .await?;
    }
    let stmts = CHECKPOINT_TABLES
        .iter()
        .map(|t| t.replace("{int}", "INTEGER"))
        .chain(SQLITE_CHECKPOINT_TRIGGERS.iter().map(|t| (*t).to_owned()));
    for stmt in stmts {
        sqlx::query(&stmt).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The checkpoint statements for PostgreSQL, in the schema transaction.
fn pg_checkpoint_schema() -> impl Iterator<Item = String> {
    CHECKPOINT_TABLES
        .iter()
        .map(|t| t.replace("{int}", "BIGINT"))
        .chain(PG_CHECKPOINT_TRIGGERS.iter().map(|t| (*t).to_owned()))
}

/// A witness's cosignature of one of the log's checkpoints, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The checkpoint's size.
    pub tree_size: u64,
    /// The witness's key name.
    pub witness: String,
    /// Its timestamp (seconds since the epoch).
    pub cosigned_at: u64,
    /// The signature line (`— name base64`), newline included.
    pub line: String,
}

/// The advisory lock that serialises appends on PostgreSQL ("dinh" in ASCII).
const PG_APPEND_LOCK: i64 = 0x6469_6e68;
/// The channel a PostgreSQL writer notifies after each commit.
const PG_CHANNEL: &str = "dinh_events";

const EVENT_COLUMNS: &str = "position, aggregate_type, aggregate_id, sequence, event_type, \
    event_version, event_id, command_id, actor, recorded_at, payload, hash";

/// How the hub opens each of its SQLite databases (the log, the witness's): created when
/// missing, in WAL mode, and FULL synchronous, so that a commit is on disk before it is
/// acknowledged, through power loss too.
pub(crate) fn sqlite_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
}

impl Store {
    /// Open `target`: a `postgres://` URL, or else the path of a SQLite file (created when
    /// missing).
    pub async fn open(target: &str) -> Result<Self, StoreError> {
        if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            Self::open_postgres(target).await
        } else {
            Self::open_sqlite(Path::new(target)).await
        }
    }

    /// Open (or create) a SQLite log.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let opts = sqlite_options(path);
        let mut conn = SqliteConnection::connect_with(&opts).await?;
        for stmt in schema("INTEGER", SQLITE_TRIGGERS) {
            sqlx::query(&stmt).execute(&mut conn).await?;
        }
        sqlite_checkpoint_schema(&mut conn).await?;
        let pool = |n| SqlitePoolOptions::new().max_connections(n);
        let side = pool(1).connect_with(opts.clone()).await?;
        let read = pool(4).connect_with(opts.clone().read_only(true)).await?;
        let dialect = append::SqliteDialect { conn, opts };
        Self::start(Db::Sqlite { read, side }, dialect).await
    }

    /// Connect to PostgreSQL and create the tables when missing.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await?;
        {
            // Two hubs starting at once must not race on CREATE.
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_APPEND_LOCK)
                .execute(&mut *tx)
                .await?;
            for stmt in schema("BIGINT", PG_TRIGGERS).chain(pg_checkpoint_schema()) {
                sqlx::query(&stmt).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        // The writer's own connection: its transaction never waits for a reader's.
        let conn = PgConnection::connect_with(&opts).await?;
        let dialect = append::PgDialect { conn, opts };
        let store = Self::start(Db::Postgres(pool.clone()), dialect).await?;
        tokio::spawn(pg_listen(pool, Arc::downgrade(&store.inner)));
        Ok(store)
    }

    async fn start(db: Db, dialect: impl append::Dialect) -> Result<Self, StoreError> {
        let (writer, rx) = mpsc::channel(4 * append::MAX_BATCH);
        let (head, _) = watch::channel(0);
        let store = Self {
            inner: Arc::new(Inner { db, writer, head }),
        };
        let last: i64 = on_pool!(store, ex => {
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(ex)
                .await?
        });
        store.inner.head.send_replace(last as u64);
        tokio::spawn(append::writer(dialect, rx, Arc::downgrade(&store.inner)));
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        match self.inner.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The last committed position (0 when empty).
    pub fn head(&self) -> u64 {
        *self.inner.head.borrow()
    }

    /// Changes of [`Store::head`]: wakes readers when new events commit.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// Append one command's events atomically; the reply comes after the commit.
    pub async fn append(&self, append: Append) -> Result<Appended, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .writer
            .send((append, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The aggregate and positions a command id was given, if it was executed.
    pub async fn command_result(
        &self,
        command_id: &str,
    ) -> Result<Option<(String, Appended)>, StoreError> {
        let sql = "SELECT aggregate_id, first_position, last_position FROM commands \
                   WHERE command_id = $1";
        let row: Option<(String, i64, i64)> = on_pool!(self, ex => {
            sqlx::query_as(sql).bind(command_id).fetch_optional(ex).await?
        });
        Ok(row.map(|(id, f, l)| {
            (
                id,
                Appended {
                    first: f as u64,
                    last: l as u64,
                },
            )
        }))
    }

    /// Up to `limit` events after position `after`, in order.
    pub async fn read(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
        );
        on_pool!(self, ex => {
            sqlx::query(&sql)
                .bind(after as i64)
                .bind(limit as i64)
                .fetch_all(ex)
                .await?
                .iter()
                .map(row_to_event)
                .collect()
        })
    }

    /// [`Store::read`] with only what projections fold, the payload unparsed.
    pub async fn read_raw(&self, after: u64, limit: usize) -> Result<Vec<RawEvent>, StoreError> {
        const ROWS: &str = "SELECT position, aggregate_type, aggregate_id, recorded_at, payload \
                            FROM events WHERE position > $1 ORDER BY position LIMIT $2";
        type Row = (i64, String, String, String, String);
        let batched: Option<Vec<Row>> = match &self.inner.db {
            // sqlx hands SQLite's rows from its worker thread one at a time, a wake-up each:
            // most of a rebuild went on that. The batch comes over as one JSON array instead
            // (the payload as a string, so its text comes back as stored). A batch that does
            // not parse (a column of another type in a damaged log) is read again row by row,
            // which says what is wrong as before.
            Db::Sqlite { read, .. } => {
                let sql = format!(
                    "SELECT json_group_array(json_array(position, aggregate_type, aggregate_id, \
                     recorded_at, payload) ORDER BY position) FROM ({ROWS})"
                );
                let (text,): (String,) = sqlx::query_as(&sql)
                    .bind(after as i64)
                    .bind(limit as i64)
                    .fetch_one(read)
                    .await?;
                serde_json::from_str(&text).ok()
            }
            Db::Postgres(_) => None,
        };
        let rows: Vec<Row> = match batched {
            Some(rows) => rows,
            None => on_pool!(self, ex => {
                sqlx::query_as(ROWS)
                    .bind(after as i64)
                    .bind(limit as i64)
                    .fetch_all(ex)
                    .await?
            }),
        };
        Ok(rows
            .into_iter()
            .map(
                |(position, aggregate_type, aggregate_id, recorded_at, payload)| RawEvent {
                    position: position as u64,
                    aggregate_type,
                    aggregate_id,
                    recorded_at,
                    payload,
                },
            )
            .collect())
    }

    /// Events of one aggregate after `after_sequence`, in order.
    pub async fn aggregate_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
             AND sequence > $3 ORDER BY sequence"
        );
        on_pool!(self, ex => {
            sqlx::query(&sql)
                .bind(aggregate_type)
                .bind(aggregate_id)
                .bind(after_sequence as i64)
                .fetch_all(ex)
                .await?
                .iter()
                .map(row_to_event)
                .collect()
        })
    }

    /// The sequence of an aggregate's last event (0 when it has none).
    pub async fn last_sequence(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<u64, StoreError> {
        let sql = "SELECT COALESCE(MAX(sequence), 0) FROM events \
                   WHERE aggregate_type = $1 AND aggregate_id = $2";
        let n: i64 = on_pool!(self, ex => {
            sqlx::query_scalar(sql)
                .bind(aggregate_type)
                .bind(aggregate_id)
                .fetch_one(ex)
                .await?
        });
        Ok(n as u64)
    }

    /// The latest snapshot of an aggregate: (state, sequence, snapshot number).
    pub async fn snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<(Value, u64, u64)>, StoreError> {
        let sql = "SELECT payload, sequence, version FROM snapshots \
                   WHERE aggregate_type = $1 AND aggregate_id = $2";
        let row: Option<(String, i64, i64)> = on_pool!(self, ex => {
            sqlx::query_as(sql)
                .bind(aggregate_type)
                .bind(aggregate_id)
                .fetch_optional(ex)
                .await?
        });
        Ok(
            row.and_then(|(p, seq, v)| {
                Some((serde_json::from_str(&p).ok()?, seq as u64, v as u64))
            }),
        )
    }

    /// Drop every stored snapshot. Snapshots are derived state outside the hash chain that
    /// decides commands (whose feedback item a house may withdraw): a hub that has just
    /// verified its log drops them rather than trust rows anyone who can write the database
    /// could have edited, and makes new ones from the verified events as aggregates grow.
    pub async fn forget_snapshots(&self) -> Result<u64, StoreError> {
        let done = on_pool!(side self, ex => {
            sqlx::query("DELETE FROM snapshots").execute(ex).await?.rows_affected()
        });
        Ok(done)
    }

    /// Every checkpoint, smallest first.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let sql = "SELECT tree_size, root_hash, chain_hash, signed_at, key, signature, note \
                   FROM checkpoints ORDER BY tree_size";
        let rows: Vec<CheckpointRow> = on_pool!(self, ex => {
            sqlx::query_as(sql).fetch_all(ex).await?
        });
        Ok(rows.into_iter().map(checkpoint_of_row).collect())
    }

    /// The latest checkpoint and the Merkle frontier at it.
    pub async fn last_checkpoint(&self) -> Result<Option<(Checkpoint, Frontier)>, StoreError> {
        let sql =
            "SELECT tree_size, root_hash, chain_hash, signed_at, key, signature, note, frontier \
             FROM checkpoints ORDER BY tree_size DESC LIMIT 1";
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            String,
        );
        let row: Option<Row> = on_pool!(self, ex => {
            sqlx::query_as(sql).fetch_optional(ex).await?
        });
        let Some((n, root_hash, chain_hash, signed_at, key, signature, note, frontier)) = row
        else {
            return Ok(None);
        };
        let frontier: Frontier =
            serde_json::from_str(&frontier).map_err(|e| StoreError::Corrupt {
                position: n as u64,
                reason: format!("checkpoint frontier: {e}"),
            })?;
        let cp = checkpoint_of_row((n, root_hash, chain_hash, signed_at, key, signature, note));
        Ok(Some((cp, frontier)))
    }

    /// Store a checkpoint (ignored when one of that size exists).
    pub async fn put_checkpoint(
        &self,
        cp: &Checkpoint,
        frontier: &Frontier,
    ) -> Result<(), StoreError> {
        let frontier = serde_json::to_string(frontier).expect("a frontier serialises");
        let sql = "INSERT INTO checkpoints (tree_size, root_hash, chain_hash, signed_at, key, \
                   signature, frontier, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                   ON CONFLICT DO NOTHING";
        on_pool!(side self, ex => {
            sqlx::query(sql)
                .bind(cp.tree_size as i64)
                .bind(&cp.root_hash)
                .bind(&cp.chain_hash)
                .bind(&cp.signed_at)
                .bind(&cp.key)
                .bind(&cp.signature)
                .bind(&frontier)
                .bind(&cp.note)
                .execute(ex)
                .await?;
        });
        Ok(())
    }

    /// Keep a witness's cosignature of the checkpoint of `tree_size` (ignored when that
    /// witness's is kept already).
    pub async fn put_cosignature(&self, c: &Cosignature) -> Result<(), StoreError> {
        let sql = "INSERT INTO cosignatures (tree_size, witness, cosigned_at, line) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        on_pool!(side self, ex => {
            sqlx::query(sql)
                .bind(c.tree_size as i64)
                .bind(&c.witness)
                .bind(c.cosigned_at as i64)
                .bind(&c.line)
                .execute(ex)
                .await?;
        });
        Ok(())
    }

    /// Every cosignature kept, by checkpoint size.
    pub async fn cosignatures(&self) -> Result<Vec<Cosignature>, StoreError> {
        let sql = "SELECT tree_size, witness, cosigned_at, line FROM cosignatures \
                   ORDER BY tree_size, witness";
        let rows: Vec<(i64, String, i64, String)> = on_pool!(self, ex => {
            sqlx::query_as(sql).fetch_all(ex).await?
        });
        Ok(rows
            .into_iter()
            .map(|(n, witness, at, line)| Cosignature {
                tree_size: n as u64,
                witness,
                cosigned_at: at as u64,
                line,
            })
            .collect())
    }

    /// A projection's rows and position.
    pub async fn load_projection(&self, name: &str) -> Result<ProjectionRows, StoreError> {
        let pos_sql = "SELECT position FROM projection_positions WHERE name = $1";
        let rows_sql = "SELECT key, row FROM projection_rows WHERE name = $1 ORDER BY key";
        let (position, rows): (Option<i64>, Vec<(String, String)>) = on_pool!(self, ex => (
            sqlx::query_scalar(pos_sql).bind(name).fetch_optional(ex).await?,
            sqlx::query_as(rows_sql).bind(name).fetch_all(ex).await?,
        ));
        let rows = rows
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|v| (k, v)))
            .collect();
        Ok(ProjectionRows {
            position: position.unwrap_or(0) as u64,
            rows,
        })
    }

    /// Write changed projection rows and its new position in one transaction. With `reset`,
    /// the projection's old rows go first (a rebuild).
    pub async fn save_projection(
        &self,
        name: &str,
        position: u64,
        rows: &[(String, Value)],
        reset: bool,
    ) -> Result<(), StoreError> {
        on_pool!(side self, ex => {
            let mut tx = ex.begin().await?;
            if reset {
                sqlx::query("DELETE FROM projection_rows WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            for (k, v) in rows {
                sqlx::query(
                    "INSERT INTO projection_rows (name, key, row) VALUES ($1, $2, $3) \
                     ON CONFLICT (name, key) DO UPDATE SET row = excluded.row",
                )
                .bind(name)
                .bind(k)
                .bind(v.to_string())
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO projection_positions (name, position) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            )
            .bind(name)
            .bind(position as i64)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

type CheckpointRow = (i64, String, String, String, String, String, Option<String>);

fn checkpoint_of_row(
    (n, root_hash, chain_hash, signed_at, key, signature, note): CheckpointRow,
) -> Checkpoint {
    Checkpoint {
        tree_size: n as u64,
        root_hash,
        chain_hash,
        signed_at,
        key,
        signature,
        note,
    }
}

fn corrupt(position: u64, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        position,
        reason: reason.to_string(),
    }
}

/// A row of [`EVENT_COLUMNS`], from either database.
fn row_to_event<R: Row>(row: &R) -> Result<StoredEvent, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let position = row.try_get::<i64, _>(0)? as u64;
    let payload: String = row.try_get(10)?;
    Ok(StoredEvent {
        position,
        aggregate_type: row.try_get(1)?,
        aggregate_id: row.try_get(2)?,
        sequence: row.try_get::<i64, _>(3)? as u64,
        event_type: row.try_get(4)?,
        event_version: row.try_get(5)?,
        event_id: row.try_get(6)?,
        command_id: row.try_get(7)?,
        actor: row.try_get(8)?,
        recorded_at: row.try_get(9)?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt(position, e))?,
        hash: row.try_get(11)?,
    })
}

fn parse_hash(position: u64, hex_hash: &str) -> Result<[u8; 32], StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out).map_err(|e| corrupt(position, e))?;
    Ok(out)
}

/// Follow other hubs' commits on the same PostgreSQL database.
async fn pg_listen(pool: PgPool, inner: std::sync::Weak<Inner>) {
    loop {
        let Ok(mut listener) = sqlx::postgres::PgListener::connect_with(&pool).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if inner.upgrade().is_none() {
                return;
            }
            continue;
        };
        if listener.listen(PG_CHANNEL).await.is_err() {
            continue;
        }
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
            let Some(inner) = inner.upgrade() else { return };
            match n {
                Ok(Ok(_)) => {
                    // The payload is another writer's head, but the channel is shared by every
                    // schema of the database: read our own table instead of trusting it.
                    let max: Result<i64, _> =
                        sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                            .fetch_one(&pool)
                            .await;
                    if let Ok(p) = max {
                        let p = p as u64;
                        inner.head.send_if_modified(|h| {
                            let changed = p > *h;
                            *h = (*h).max(p);
                            changed
                        });
                    }
                }
                Ok(Err(_)) => break,
                Err(_) => {} // quiet: check that the store is still wanted
            }
        }
    }
}
