//! The write path: one writer task per store commits every append waiting in its queue in one
//! transaction (group commit), on SQLite and on PostgreSQL alike.
//!
//! What must stay true (decided once, in [`plan`], for both databases):
//! - positions follow the last committed one with no gap, read under the one write lock
//!   (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's transaction-level advisory lock), so positions
//!   commit in order even when another hub writes the same database;
//! - an append continues its aggregate's sequence exactly, or is refused as a conflict and
//!   writes nothing;
//! - a command id appends once: a second append with it (in the log, or earlier in the same
//!   batch) is refused and writes nothing;
//! - the chain hash of each row is computed from the row before it, inside the lock;
//! - a reply goes out only after the transaction committed; when it fails, every append of
//!   the batch fails and nothing of it is acknowledged.
//!
//! What differs between the databases is in [`Dialect`]: how the lock is taken and what runs
//! before commit. The statements are the same text on both (sqlx's SQLite driver takes `$N`
//! parameters too).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Weak;

use sqlx::postgres::{PgConnectOptions, PgConnection, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{parse_hash, Append, Appended, Inner, StoreError, PG_APPEND_LOCK, PG_CHANNEL};
use crate::chain::StoredEvent;

/// An append waiting for the writer, and where its result goes.
pub(super) type Job = (Append, oneshot::Sender<Result<Appended, StoreError>>);

/// Appends taken into one transaction at most: a batch's statements stay far below both
/// databases' limits on bound parameters, and a reply is never held back long.
pub(super) const MAX_BATCH: usize = 512;

/// Rows per multi-row INSERT: 12 parameters each, far below SQLite's 32,766 and
/// PostgreSQL's 65,535.
const ROWS_PER_INSERT: usize = 1000;

/// The last committed position and its chain hash (32 zero bytes before position 1).
pub(super) type Head = (u64, [u8; 32]);

/// (aggregate type, aggregate id).
type Key = (String, String);

/// What one batch writes, decided from the appends, the command ids already in the log and
/// each aggregate's latest sequence.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// One result per append, in order.
    pub results: Vec<Result<Appended, StoreError>>,
    /// The rows to insert, positions consecutive after the head the plan started from.
    pub rows: Vec<StoredEvent>,
    /// (command id, aggregate id, first position, last position) of each accepted append
    /// that carries a command id.
    pub commands: Vec<(String, String, u64, u64)>,
    /// The newest snapshot per aggregate: (state, sequence it covers, snapshot number).
    pub snapshots: BTreeMap<Key, (String, u64, u64)>,
    /// The head after these rows.
    pub head: Head,
    /// Each written aggregate's latest sequence after these rows.
    pub sequences: HashMap<Key, u64>,
}

/// Decide a batch. `sequences` holds the latest sequence of every aggregate the batch names
/// (0 for a new one); `seen` the batch's command ids already in the log. Pure but for the
/// event ids (time-ordered, unique): the same inputs give the same rows.
pub(super) fn plan(
    appends: &[&Append],
    seen: &HashSet<String>,
    sequences: &HashMap<Key, u64>,
    head: Head,
) -> Plan {
    let mut p = Plan {
        head,
        ..Plan::default()
    };
    let mut ids_in_batch: HashSet<&str> = HashSet::new();
    for a in appends {
        let key = (a.aggregate_type.clone(), a.aggregate_id.clone());
        if let Some(id) = &a.command_id {
            if seen.contains(id) || ids_in_batch.contains(id.as_str()) {
                p.results
                    .push(Err(StoreError::DuplicateCommand(id.clone())));
                continue;
            }
        }
        let current = p
            .sequences
            .get(&key)
            .or_else(|| sequences.get(&key))
            .copied()
            .unwrap_or(0);
        if current + 1 != a.first_sequence {
            p.results.push(Err(StoreError::Conflict {
                aggregate_type: a.aggregate_type.clone(),
                aggregate_id: a.aggregate_id.clone(),
            }));
            continue;
        }
        if a.events.is_empty() {
            p.results.push(Ok(Appended {
                first: p.head.0,
                last: p.head.0,
            }));
            continue;
        }
        let first = p.head.0 + 1;
        for (i, (event_type, event_version, payload)) in a.events.iter().enumerate() {
            let mut ev = StoredEvent {
                position: p.head.0 + 1,
                aggregate_type: a.aggregate_type.clone(),
                aggregate_id: a.aggregate_id.clone(),
                sequence: a.first_sequence + i as u64,
                event_type: event_type.clone(),
                event_version: event_version.clone(),
                // Time-ordered (UUID v7): the event_id index grows at its right edge, so a
                // batch dirties a page or two of it; random v4 ids dirtied a page per event,
                // most of what a commit wrote to the WAL.
                event_id: uuid::Uuid::now_v7().to_string(),
                command_id: a.command_id.clone(),
                actor: a.actor.clone(),
                recorded_at: a.recorded_at.clone(),
                payload: payload.clone(),
                hash: String::new(),
            };
            let h = ev.chain_hash(&p.head.1);
            ev.hash = hex::encode(h);
            p.head = (ev.position, h);
            p.rows.push(ev);
        }
        let appended = Appended {
            first,
            last: p.head.0,
        };
        if let Some(id) = &a.command_id {
            ids_in_batch.insert(id);
            p.commands.push((
                id.clone(),
                a.aggregate_id.clone(),
                appended.first,
                appended.last,
            ));
        }
        if let Some((state, seq, version)) = &a.snapshot {
            p.snapshots
                .insert(key.clone(), (state.to_string(), *seq, *version));
        }
        p.sequences
            .insert(key, a.first_sequence + a.events.len() as u64 - 1);
        p.results.push(Ok(appended));
    }
    p
}

/// What differs between SQLite and PostgreSQL on the write path. A dialect owns the writer's
/// one connection (not a pool: a pooled connection is pinged on every release and acquire).
pub(super) trait Dialect: Send + 'static {
    type Db: sqlx::Database;
    /// Open the write transaction holding the one write lock.
    fn begin(
        &mut self,
    ) -> impl Future<Output = Result<Transaction<'_, Self::Db>, sqlx::Error>> + Send;
    /// Run what must happen inside the transaction after the rows (PostgreSQL wakes the other
    /// hubs that follow the same database), then commit.
    fn commit(
        tx: Transaction<'_, Self::Db>,
        last: u64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// After a failed batch: connect again if the connection is broken.
    fn recover(&mut self) -> impl Future<Output = ()> + Send;
    /// Read the head under the lock.
    fn head(
        tx: &mut Transaction<'_, Self::Db>,
    ) -> impl Future<Output = Result<Head, StoreError>> + Send;
    /// Of `ids`, those already in the `commands` table.
    fn seen(
        tx: &mut Transaction<'_, Self::Db>,
        ids: &[&str],
    ) -> impl Future<Output = Result<HashSet<String>, sqlx::Error>> + Send;
    /// The latest sequence of each of `keys` that has events.
    fn sequences(
        tx: &mut Transaction<'_, Self::Db>,
        keys: &[&Key],
    ) -> impl Future<Output = Result<HashMap<Key, u64>, sqlx::Error>> + Send;
    /// Insert a plan's rows, command ids and snapshots.
    fn write(
        tx: &mut Transaction<'_, Self::Db>,
        plan: &Plan,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// The last row of the log, under the lock.
const LAST: &str = "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1";

/// The statements, the same text on both databases; `$db` names the sqlx database.
macro_rules! same_statements {
    ($db:ty) => {
        async fn head(tx: &mut Transaction<'_, $db>) -> Result<Head, StoreError> {
            let row: Option<(i64, String)> = sqlx::query_as(LAST).fetch_optional(&mut **tx).await?;
            match row {
                None => Ok((0, [0; 32])),
                Some((p, h)) => Ok((p as u64, parse_hash(p as u64, &h)?)),
            }
        }

        async fn seen(
            tx: &mut Transaction<'_, $db>,
            ids: &[&str],
        ) -> Result<HashSet<String>, sqlx::Error> {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT command_id FROM commands WHERE command_id IN (",
            );
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            q.push(")");
            let rows: Vec<(String,)> = q.build_query_as().fetch_all(&mut **tx).await?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        }

        async fn sequences(
            tx: &mut Transaction<'_, $db>,
            keys: &[&Key],
        ) -> Result<HashMap<Key, u64>, sqlx::Error> {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT aggregate_type, aggregate_id, MAX(sequence) FROM events \
                 WHERE (aggregate_type, aggregate_id) IN (",
            );
            let mut list = q.separated(", ");
            for (t, id) in keys {
                list.push("(")
                    .push_bind_unseparated(t.as_str())
                    .push_unseparated(", ")
                    .push_bind_unseparated(id.as_str())
                    .push_unseparated(")");
            }
            q.push(") GROUP BY aggregate_type, aggregate_id");
            let rows: Vec<(String, String, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
            Ok(rows
                .into_iter()
                .map(|(t, id, s)| ((t, id), s as u64))
                .collect())
        }

        async fn write(tx: &mut Transaction<'_, $db>, plan: &Plan) -> Result<(), sqlx::Error> {
            for chunk in plan.rows.chunks(ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO events (position, aggregate_type, aggregate_id, sequence, \
                     event_type, event_version, event_id, command_id, actor, recorded_at, \
                     payload, hash) ",
                );
                q.push_values(chunk, |mut b, ev| {
                    b.push_bind(ev.position as i64)
                        .push_bind(ev.aggregate_type.as_str())
                        .push_bind(ev.aggregate_id.as_str())
                        .push_bind(ev.sequence as i64)
                        .push_bind(ev.event_type.as_str())
                        .push_bind(ev.event_version.as_str())
                        .push_bind(ev.event_id.as_str())
                        .push_bind(ev.command_id.as_deref())
                        .push_bind(ev.actor.as_str())
                        .push_bind(ev.recorded_at.as_str())
                        .push_bind(ev.payload.to_string())
                        .push_bind(ev.hash.as_str());
                });
                q.build().execute(&mut **tx).await?;
            }
            for chunk in plan.commands.chunks(ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO commands (command_id, aggregate_id, first_position, last_position) ",
                );
                q.push_values(chunk, |mut b, (id, agg, first, last)| {
                    b.push_bind(id.as_str())
                        .push_bind(agg.as_str())
                        .push_bind(*first as i64)
                        .push_bind(*last as i64);
                });
                q.build().execute(&mut **tx).await?;
            }
            if !plan.snapshots.is_empty() {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO snapshots (aggregate_type, aggregate_id, sequence, version, payload) ",
                );
                q.push_values(&plan.snapshots, |mut b, ((t, id), (state, seq, version))| {
                    b.push_bind(t.as_str())
                        .push_bind(id.as_str())
                        .push_bind(*seq as i64)
                        .push_bind(*version as i64)
                        .push_bind(state.as_str());
                });
                q.push(
                    " ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET \
                     sequence = excluded.sequence, version = excluded.version, \
                     payload = excluded.payload",
                );
                q.build().execute(&mut **tx).await?;
            }
            Ok(())
        }
    };
}

/// Connect again if `conn` no longer answers (a PostgreSQL restart, a file system error).
async fn reconnect<C: Connection>(conn: &mut C, opts: &C::Options) {
    if conn.ping().await.is_err() {
        match C::connect_with(opts).await {
            Ok(c) => *conn = c,
            Err(e) => tracing::error!(error = %e, "record writer cannot reconnect"),
        }
    }
}

/// SQLite: `BEGIN IMMEDIATE` takes the database's one write lock at once (a deferred BEGIN
/// would take it at the first write, after our reads).
pub(super) struct SqliteDialect {
    pub conn: SqliteConnection,
    pub opts: SqliteConnectOptions,
}

impl Dialect for SqliteDialect {
    type Db = Sqlite;

    async fn begin(&mut self) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
        self.conn.begin_with("BEGIN IMMEDIATE").await
    }

    async fn commit(tx: Transaction<'_, Sqlite>, _last: u64) -> Result<(), sqlx::Error> {
        tx.commit().await
    }

    async fn recover(&mut self) {
        reconnect(&mut self.conn, &self.opts).await;
    }

    same_statements!(Sqlite);
}

/// PostgreSQL: a transaction-level advisory lock, released by the commit, serialises the
/// appends of every hub on the database; `pg_notify` in the same transaction tells the others.
pub(super) struct PgDialect {
    pub conn: PgConnection,
    pub opts: PgConnectOptions,
}

impl Dialect for PgDialect {
    type Db = Postgres;

    async fn begin(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        let mut tx = self.conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn commit(mut tx: Transaction<'_, Postgres>, last: u64) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PG_CHANNEL)
            .bind(last.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn recover(&mut self) {
        reconnect(&mut self.conn, &self.opts).await;
    }

    same_statements!(Postgres);
}

/// The writer task: takes every waiting append (up to [`MAX_BATCH`]) into one transaction,
/// commits, then replies to each. Ends when the store is dropped.
pub(super) async fn writer<D: Dialect>(
    mut dialect: D,
    mut rx: mpsc::Receiver<Job>,
    inner: Weak<Inner>,
) {
    // The head and sequences this writer last committed. They are only a cache: under the lock
    // the head is read again, and when another writer moved it the sequences are dropped.
    let mut head: Head = (0, [0; 32]);
    let mut sequences: HashMap<Key, u64> = HashMap::new();
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        match batch(&mut dialect, &jobs, &mut head, &mut sequences).await {
            Ok(results) => {
                if let Some(inner) = inner.upgrade() {
                    inner.head.send_if_modified(|h| {
                        let changed = head.0 > *h;
                        *h = (*h).max(head.0);
                        changed
                    });
                }
                for ((_, reply), result) in jobs.drain(..).zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, appends = jobs.len(), "record append failed; rolled back");
                sequences.clear();
                let msg = e.to_string();
                for (_, reply) in jobs.drain(..) {
                    let _ = reply.send(Err(StoreError::Database(sqlx::Error::Protocol(
                        msg.clone(),
                    ))));
                }
                dialect.recover().await;
            }
        }
    }
}

/// One transaction: lock, check, write, commit. On success the caches move to the new head;
/// on error the transaction rolls back (dropped uncommitted) and nothing is acknowledged.
async fn batch<D: Dialect>(
    dialect: &mut D,
    jobs: &[Job],
    head: &mut Head,
    sequences: &mut HashMap<Key, u64>,
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let mut tx = dialect.begin().await?;
    let now = D::head(&mut tx).await?;
    if now != *head {
        // Another writer appended since our last commit (or this is our first batch).
        sequences.clear();
        *head = now;
    }
    let appends: Vec<&Append> = jobs.iter().map(|(a, _)| a).collect();
    let ids: Vec<&str> = appends
        .iter()
        .filter_map(|a| a.command_id.as_deref())
        .collect();
    let seen = if ids.is_empty() {
        HashSet::new()
    } else {
        D::seen(&mut tx, &ids).await?
    };
    let mut unknown: Vec<Key> = appends
        .iter()
        .map(|a| (a.aggregate_type.clone(), a.aggregate_id.clone()))
        .filter(|k| !sequences.contains_key(k))
        .collect();
    unknown.sort();
    unknown.dedup();
    if !unknown.is_empty() {
        let found = D::sequences(&mut tx, &unknown.iter().collect::<Vec<_>>()).await?;
        for k in unknown {
            let s = found.get(&k).copied().unwrap_or(0);
            sequences.insert(k, s);
        }
    }
    let plan = plan(&appends, &seen, sequences, *head);
    if !plan.rows.is_empty() || !plan.snapshots.is_empty() {
        D::write(&mut tx, &plan).await?;
        D::commit(tx, plan.head.0).await?;
    }
    // else: nothing to write; the transaction rolls back as it drops.
    *head = plan.head;
    sequences.extend(plan.sequences);
    Ok(plan.results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(id: &str, seq: u64, n: usize, command: Option<&str>) -> Append {
        Append {
            aggregate_type: "meeting".into(),
            aggregate_id: id.into(),
            first_sequence: seq,
            events: vec![("E".into(), "1".into(), serde_json::json!({"type": "e"})); n],
            command_id: command.map(str::to_owned),
            actor: "system:test".into(),
            recorded_at: "2026-11-23T01:00:00Z".into(),
            snapshot: None,
        }
    }

    fn key(id: &str) -> Key {
        ("meeting".into(), id.into())
    }

    #[test]
    fn positions_follow_the_head_with_no_gap_and_chain_from_it() {
        let (a, b) = (append("m1", 1, 2, None), append("m2", 4, 1, None));
        let seqs = HashMap::from([(key("m2"), 3)]);
        let p = plan(&[&a, &b], &HashSet::new(), &seqs, (10, [7; 32]));
        assert_eq!(
            p.results
                .iter()
                .map(|r| *r.as_ref().unwrap())
                .collect::<Vec<_>>(),
            vec![
                Appended {
                    first: 11,
                    last: 12
                },
                Appended {
                    first: 13,
                    last: 13
                }
            ]
        );
        let mut prev = [7u8; 32];
        for (i, row) in p.rows.iter().enumerate() {
            assert_eq!(row.position, 11 + i as u64);
            prev = row.chain_hash(&prev);
            assert_eq!(row.hash, hex::encode(prev));
        }
        assert_eq!(p.head, (13, prev));
        assert_eq!(p.sequences[&key("m1")], 2);
        assert_eq!(p.sequences[&key("m2")], 4);
    }

    #[test]
    fn a_stale_append_is_refused_and_takes_no_position() {
        let stale = append("m1", 1, 1, None);
        let next = append("m2", 1, 1, None);
        let seqs = HashMap::from([(key("m1"), 5)]);
        let p = plan(&[&stale, &next], &HashSet::new(), &seqs, (0, [0; 32]));
        assert!(matches!(p.results[0], Err(StoreError::Conflict { .. })));
        assert_eq!(p.results[1].as_ref().unwrap().first, 1);
        assert_eq!(p.rows.len(), 1);
    }

    #[test]
    fn two_appends_to_one_aggregate_in_a_batch_continue_each_other() {
        let (a, b, again) = (
            append("m1", 1, 1, None),
            append("m1", 2, 2, None),
            append("m1", 2, 1, None),
        );
        let p = plan(
            &[&a, &b, &again],
            &HashSet::new(),
            &HashMap::new(),
            (0, [0; 32]),
        );
        assert!(p.results[0].is_ok() && p.results[1].is_ok());
        assert!(matches!(p.results[2], Err(StoreError::Conflict { .. })));
        assert_eq!(p.sequences[&key("m1")], 3);
    }

    #[test]
    fn a_command_id_appends_once_in_the_log_and_in_the_batch() {
        let (old, a, b) = (
            append("m1", 1, 1, Some("k-old")),
            append("m2", 1, 1, Some("k")),
            append("m3", 1, 1, Some("k")),
        );
        let seen = HashSet::from(["k-old".to_owned()]);
        let p = plan(&[&old, &a, &b], &seen, &HashMap::new(), (0, [0; 32]));
        assert!(matches!(&p.results[0], Err(StoreError::DuplicateCommand(k)) if k == "k-old"));
        assert!(p.results[1].is_ok());
        assert!(matches!(&p.results[2], Err(StoreError::DuplicateCommand(k)) if k == "k"));
        assert_eq!(p.commands, vec![("k".into(), "m2".into(), 1, 1)]);
    }

    #[test]
    fn an_empty_append_takes_no_position_and_keeps_no_command_id() {
        let empty = append("m1", 1, 0, Some("k"));
        let p = plan(&[&empty], &HashSet::new(), &HashMap::new(), (4, [1; 32]));
        assert_eq!(
            p.results[0].as_ref().unwrap(),
            &Appended { first: 4, last: 4 }
        );
        assert!(p.rows.is_empty() && p.commands.is_empty());
    }
}
