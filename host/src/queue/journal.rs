//! The embedded store's journal: SQLite in WAL mode, written by one thread
//! with group commit.
//!
//! Why a thread and a channel: SQLite wants one writer, and an `fsync` per
//! job would cap submits at the disk's sync rate. Every mutation sends its
//! changed rows here and waits for the acknowledgement; the writer drains
//! whatever has arrived, writes it in one transaction, commits (with
//! `synchronous = FULL`, so the commit is on disk), then acknowledges every
//! sender. Rows are written in the order mutations happened, so when a
//! mutation is acknowledged every earlier one is durable too.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::core::{Change, UserRow};
use super::error::StoreError;
use super::job::{Job, JobId};

/// Most rows written in one transaction.
const MAX_BATCH: usize = 1024;

type Ack = oneshot::Sender<Result<(), String>>;

/// The writer's handle.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<(Vec<Change>, Ack)>,
}

/// Everything the journal holds, for a restart.
pub struct Loaded {
    /// Users.
    pub users: Vec<UserRow>,
    /// Jobs.
    pub jobs: Vec<Job>,
    /// Payloads.
    pub payloads: Vec<(JobId, Vec<u8>)>,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, row TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, job TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS payloads (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    )?;
    Ok(conn)
}

impl Journal {
    /// Opens (or creates) the journal at `path`, reads it back, and starts the writer.
    pub fn open(path: &Path) -> Result<(Journal, Loaded), StoreError> {
        let unavailable =
            |e: rusqlite::Error| StoreError::Unavailable(format!("{}: {e}", path.display()));
        let conn = open(path).map_err(unavailable)?;
        let loaded = read_all(&conn)?;
        let (tx, rx) = mpsc::channel::<(Vec<Change>, Ack)>();
        std::thread::Builder::new()
            .name("queue-journal".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| StoreError::Unavailable(format!("starting the journal writer: {e}")))?;
        Ok((Journal { tx }, loaded))
    }

    /// Writes `changes` durably; returns when they are on disk.
    pub async fn write(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.tx
            .send((changes, ack))
            .map_err(|_| StoreError::Unavailable("the journal writer stopped".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("writing the journal: {e}"))),
            Err(_) => Err(StoreError::Unavailable("the journal writer stopped".into())),
        }
    }
}

fn read_all(conn: &Connection) -> Result<Loaded, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
    let q = |sql: &str| conn.prepare(sql).map_err(|e| corrupt(&e));
    let mut users = Vec::new();
    let mut stmt = q("SELECT row FROM users")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| corrupt(&e))?;
    for row in rows {
        let text = row.map_err(|e| corrupt(&e))?;
        users.push(serde_json::from_str::<UserRow>(&text).map_err(|e| corrupt(&e))?);
    }
    let mut jobs = Vec::new();
    let mut stmt = q("SELECT job FROM jobs ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| corrupt(&e))?;
    for row in rows {
        let text = row.map_err(|e| corrupt(&e))?;
        jobs.push(serde_json::from_str::<Job>(&text).map_err(|e| corrupt(&e))?);
    }
    let mut payloads = Vec::new();
    let mut stmt = q("SELECT id, body FROM payloads")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as JobId, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(|e| corrupt(&e))?;
    for row in rows {
        payloads.push(row.map_err(|e| corrupt(&e))?);
    }
    Ok(Loaded {
        users,
        jobs,
        payloads,
    })
}

fn writer(mut conn: Connection, rx: mpsc::Receiver<(Vec<Change>, Ack)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut rows = batch[0].0.len();
        while rows < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => {
                    rows += next.0.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let result = write_batch(&mut conn, batch.iter().flat_map(|(c, _)| c.iter()))
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "queue journal write failed");
        }
        for (_, ack) in batch {
            let _ = ack.send(result.clone());
        }
    }
}

fn write_batch<'a>(
    conn: &mut Connection,
    changes: impl Iterator<Item = &'a Change>,
) -> anyhow::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut job = tx.prepare_cached("INSERT OR REPLACE INTO jobs (id, job) VALUES (?1, ?2)")?;
        let mut user =
            tx.prepare_cached("INSERT OR REPLACE INTO users (name, row) VALUES (?1, ?2)")?;
        let mut payload =
            tx.prepare_cached("INSERT OR REPLACE INTO payloads (id, body) VALUES (?1, ?2)")?;
        let mut del_job = tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?;
        let mut del_payload = tx.prepare_cached("DELETE FROM payloads WHERE id = ?1")?;
        for change in changes {
            match change {
                Change::Job(j) => {
                    job.execute(params![j.id as i64, serde_json::to_string(j)?])?;
                }
                Change::User(u) => {
                    user.execute(params![u.limits.name, serde_json::to_string(u)?])?;
                }
                Change::Payload(id, body) => {
                    payload.execute(params![*id as i64, body.as_slice()])?;
                }
                Change::Delete(id) => {
                    del_job.execute(params![*id as i64])?;
                    del_payload.execute(params![*id as i64])?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}
