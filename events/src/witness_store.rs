//! Where a witness keeps what it holds: `witness.sqlite` in its data folder, apart from any
//! record. One row per log (the latest checkpoint it cosigned), and the refused checkpoints
//! that are evidence against a log (signed by the log's key, inconsistent with what is held).
//!
//! What must stay true:
//! - a new latest checkpoint replaces the old one only if the old one is still what the
//!   decision was made on (compare-and-swap in one transaction), and is on disk
//!   (`synchronous=FULL`) before the witness answers;
//! - at most [`MAX_REFUSALS_PER_LOG`] refusals are kept per log (the oldest go first).

use std::path::Path;

use serde::Serialize;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

use crate::store::StoreError;
use crate::witness::Held;

/// Refused checkpoints kept per log.
pub const MAX_REFUSALS_PER_LOG: i64 = 100;

/// A refused checkpoint kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The log's origin.
    pub origin: String,
    /// When (seconds since the epoch).
    pub at: u64,
    /// The HTTP status answered.
    pub status: u16,
    /// Why.
    pub reason: String,
    /// The size the witness held then.
    pub held: u64,
    /// The request as received.
    pub request: String,
}

/// The witness's state on disk.
#[derive(Clone)]
pub struct WitnessStore {
    pool: SqlitePool,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS witness_logs (
        origin TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        root TEXT NOT NULL,
        note TEXT NOT NULL,
        cosigned_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS witness_refusals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        at INTEGER NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL,
        held INTEGER NOT NULL,
        request TEXT NOT NULL)",
];

impl WitnessStore {
    /// Open (or create) the witness's database.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(crate::store::sqlite_options(path))
            .await?;
        for s in SCHEMA {
            sqlx::query(s).execute(&pool).await?;
        }
        Ok(Self { pool })
    }

    /// What is held for `origin`.
    pub async fn held(&self, origin: &str) -> Result<Option<Held>, StoreError> {
        let row: Option<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT size, root, note, cosigned_at FROM witness_logs WHERE origin = ?",
        )
        .bind(origin)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(size, root, note, at)| Held {
            size: size as u64,
            root,
            note,
            cosigned_at: at as u64,
        }))
    }

    /// Every log held, by origin.
    pub async fn all(&self) -> Result<Vec<(String, Held)>, StoreError> {
        let rows: Vec<(String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT origin, size, root, note, cosigned_at FROM witness_logs ORDER BY origin",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(o, size, root, note, at)| {
                (
                    o,
                    Held {
                        size: size as u64,
                        root,
                        note,
                        cosigned_at: at as u64,
                    },
                )
            })
            .collect())
    }

    /// Replace what is held for `origin` with `new`, if what is held is still `expected`
    /// (`None`: nothing held). Returns whether it was replaced.
    pub async fn replace(
        &self,
        origin: &str,
        expected: Option<&Held>,
        new: &Held,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now: Option<(i64, String)> =
            sqlx::query_as("SELECT size, root FROM witness_logs WHERE origin = ?")
                .bind(origin)
                .fetch_optional(&mut *tx)
                .await?;
        let same = match (&now, expected) {
            (None, None) => true,
            (Some((s, r)), Some(e)) => *s as u64 == e.size && *r == e.root,
            _ => false,
        };
        if !same {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO witness_logs (origin, size, root, note, cosigned_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, \
             note = excluded.note, cosigned_at = excluded.cosigned_at",
        )
        .bind(origin)
        .bind(new.size as i64)
        .bind(&new.root)
        .bind(&new.note)
        .bind(new.cosigned_at as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Keep a refused checkpoint as evidence (the oldest beyond the bound go).
    pub async fn record_refusal(&self, r: &Refusal) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO witness_refusals (origin, at, status, reason, held, request) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.origin)
        .bind(r.at as i64)
        .bind(i64::from(r.status))
        .bind(&r.reason)
        .bind(r.held as i64)
        .bind(&r.request)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM witness_refusals WHERE origin = ? AND id NOT IN \
             (SELECT id FROM witness_refusals WHERE origin = ? ORDER BY id DESC LIMIT ?)",
        )
        .bind(&r.origin)
        .bind(&r.origin)
        .bind(MAX_REFUSALS_PER_LOG)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest refusals, newest first.
    pub async fn refusals(&self, limit: u32) -> Result<Vec<Refusal>, StoreError> {
        let rows: Vec<(String, i64, i64, String, i64, String)> = sqlx::query_as(
            "SELECT origin, at, status, reason, held, request FROM witness_refusals ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(origin, at, status, reason, held, request)| Refusal {
                origin,
                at: at as u64,
                status: status as u16,
                reason,
                held: held as u64,
                request,
            })
            .collect())
    }
}
