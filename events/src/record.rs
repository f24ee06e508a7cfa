//! [`Record`]: what the hub drives. Commands go in through cqrs-es's `CqrsFramework` over the
//! [`Store`] (which implements `PersistedEventRepository`); out come the positions the events
//! were given. A command retried with the same id appends nothing and returns the first result.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dinh_events::domain::{meeting::MeetingAction, Actor, ActorRole, Command};
//! use dinh_events::record::Record;
//! use dinh_events::store::Store;
//!
//! let store = Store::open("data/record.sqlite").await?;
//! let record = Record::new(store, Default::default());
//! let cmd = Command::new(
//!     time::OffsetDateTime::now_utc(),
//!     Actor::new(ActorRole::Chair, "chair"),
//!     MeetingAction::Open,
//! );
//! let outcome = record.meeting("m-2026-11-21", cmd, Some("retry-key-1".into())).await?;
//! println!("events at {:?}", outcome.appended);
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::chain::{Frontier, Signer};
use crate::domain::feedback::{Feedback, FeedbackAction, FeedbackError};
use crate::domain::loudspeakers::{LoudspeakerAction, LoudspeakerError, Loudspeakers};
use crate::domain::meeting::{Meeting, MeetingAction, MeetingError};
use crate::domain::notices::{Notice, NoticeAction, NoticeError};
use crate::domain::tokens::{TokenAction, TokenDenyList, TokenError, DENY_LIST};
use crate::domain::workdays::Calendar;
use crate::domain::Command;
use crate::store::{Append, Appended, Store, StoreError};

tokio::task_local! {
    /// Positions of the append made by the command running in this task: `persist` cannot
    /// return them through cqrs-es, so it leaves them here for [`Record`].
    static LAST_APPEND: Cell<Option<Appended>>;
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// The aggregate it went to.
    pub aggregate_id: String,
    /// Positions of its events; `None` when it changed nothing.
    pub appended: Option<Appended>,
    /// Whether this is the first result of an earlier command with the same id.
    pub replayed: bool,
}

/// How a refusal should reach the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token's role may not (403).
    Forbidden,
    /// No such meeting or item (404).
    NotFound,
    /// A field is wrong (422).
    Invalid,
    /// The step does not fit the current state (409).
    State,
}

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The rules refused it; show the message. Nothing was appended.
    #[error("{message}")]
    Refused {
        /// HTTP-ish class.
        kind: Refusal,
        /// The domain's message.
        message: String,
    },
    /// Another command changed the same meeting or item at the same moment: retry (409).
    #[error("{0} was changed by another command at the same time; try again")]
    Conflict(String),
    /// The store failed; nothing was acknowledged (503).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else cqrs-es reports (500).
    #[error("{0}")]
    Internal(String),
}

fn meeting_refusal(e: &MeetingError) -> Refusal {
    match e {
        MeetingError::Forbidden { .. } => Refusal::Forbidden,
        MeetingError::NotScheduled => Refusal::NotFound,
        MeetingError::Invalid { .. } | MeetingError::NoSuchAgendaItem(_) => Refusal::Invalid,
        _ => Refusal::State,
    }
}

fn loudspeaker_refusal(e: &LoudspeakerError) -> Refusal {
    match e {
        LoudspeakerError::Forbidden { .. } => Refusal::Forbidden,
        LoudspeakerError::Invalid { .. } => Refusal::Invalid,
        LoudspeakerError::NotPlaying(_) => Refusal::NotFound,
        _ => Refusal::State,
    }
}

fn notice_refusal(e: &NoticeError) -> Refusal {
    match e {
        NoticeError::Forbidden { .. } => Refusal::Forbidden,
        NoticeError::NotFound => Refusal::NotFound,
        NoticeError::Invalid { .. } => Refusal::Invalid,
        _ => Refusal::State,
    }
}

fn token_refusal(e: &TokenError) -> Refusal {
    match e {
        TokenError::Forbidden { .. } => Refusal::Forbidden,
        TokenError::Invalid { .. } => Refusal::Invalid,
        _ => Refusal::State,
    }
}

fn feedback_refusal(e: &FeedbackError) -> Refusal {
    match e {
        FeedbackError::Forbidden { .. } => Refusal::Forbidden,
        FeedbackError::NotFound => Refusal::NotFound,
        FeedbackError::Invalid { .. } => Refusal::Invalid,
        _ => Refusal::State,
    }
}

type Framework<A> = CqrsFramework<A, PersistedEventStore<Store, A>>;

/// A snapshot every this many events of an aggregate: a meeting of a few hundred events then
/// loads from its snapshot and at most this many events. cqrs-es places snapshots on
/// multiples of this size, which is how `persist` knows the sequence a snapshot covers.
const SNAPSHOT_EVERY: usize = 32;

/// The record: the aggregates over one store.
pub struct Record {
    store: Store,
    meetings: Framework<Meeting>,
    feedback: Framework<Feedback>,
    loudspeakers: Framework<Loudspeakers>,
    notices: Framework<Notice>,
    tokens: Framework<TokenDenyList>,
}

impl Record {
    /// A record over `store`, counting feedback deadlines with `calendar`.
    pub fn new(store: Store, calendar: Calendar) -> Self {
        Self {
            meetings: CqrsFramework::new(
                PersistedEventStore::new_snapshot_store(store.clone(), SNAPSHOT_EVERY),
                vec![],
                (),
            ),
            feedback: CqrsFramework::new(
                PersistedEventStore::new_snapshot_store(store.clone(), SNAPSHOT_EVERY),
                vec![],
                calendar,
            ),
            loudspeakers: CqrsFramework::new(
                PersistedEventStore::new_snapshot_store(store.clone(), SNAPSHOT_EVERY),
                vec![],
                (),
            ),
            notices: CqrsFramework::new(
                PersistedEventStore::new_snapshot_store(store.clone(), SNAPSHOT_EVERY),
                vec![],
                (),
            ),
            tokens: CqrsFramework::new(
                PersistedEventStore::new_snapshot_store(store.clone(), SNAPSHOT_EVERY),
                vec![],
                (),
            ),
            store,
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Run a meeting command.
    pub async fn meeting(
        &self,
        id: &str,
        cmd: Command<MeetingAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        let meta = metadata(cmd.at, &cmd.actor.label(), command_id.as_deref());
        self.run(&self.meetings, id, cmd, meta, command_id, |e| {
            (meeting_refusal(e), e.to_string())
        })
        .await
    }

    /// Run a feedback command.
    pub async fn feedback(
        &self,
        id: &str,
        cmd: Command<FeedbackAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        let meta = metadata(cmd.at, &cmd.actor.label(), command_id.as_deref());
        self.run(&self.feedback, id, cmd, meta, command_id, |e| {
            (feedback_refusal(e), e.to_string())
        })
        .await
    }

    /// Run a command on a room's loudspeaker log (the aggregate id is the room).
    pub async fn loudspeakers(
        &self,
        room: &str,
        cmd: Command<LoudspeakerAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        let meta = metadata(cmd.at, &cmd.actor.label(), command_id.as_deref());
        self.run(&self.loudspeakers, room, cmd, meta, command_id, |e| {
            (loudspeaker_refusal(e), e.to_string())
        })
        .await
    }

    /// Run a command on a notice of the village bulletin boards.
    pub async fn notice(
        &self,
        id: &str,
        cmd: Command<NoticeAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        let meta = metadata(cmd.at, &cmd.actor.label(), command_id.as_deref());
        self.run(&self.notices, id, cmd, meta, command_id, |e| {
            (notice_refusal(e), e.to_string())
        })
        .await
    }

    /// Revoke a token (the one deny-list aggregate, [`DENY_LIST`]).
    pub async fn revoke_token(
        &self,
        cmd: Command<TokenAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        let meta = metadata(cmd.at, &cmd.actor.label(), command_id.as_deref());
        self.run(&self.tokens, DENY_LIST, cmd, meta, command_id, |e| {
            (token_refusal(e), e.to_string())
        })
        .await
    }

    /// The deny list as the log has it.
    pub async fn load_deny_list(&self) -> Result<TokenDenyList, RecordError> {
        let mut list = TokenDenyList::default();
        for ev in self
            .store
            .aggregate_events(TokenDenyList::TYPE, DENY_LIST, 0)
            .await?
        {
            let e = serde_json::from_value(ev.payload)
                .map_err(|e| RecordError::Internal(e.to_string()))?;
            list.apply_event(&e);
        }
        Ok(list)
    }

    /// The current state of a meeting (for checks the hub makes before sending a command).
    pub async fn load_meeting(&self, id: &str) -> Result<Meeting, RecordError> {
        let mut m = Meeting::default();
        for ev in self.store.aggregate_events(Meeting::TYPE, id, 0).await? {
            let e = serde_json::from_value(ev.payload)
                .map_err(|e| RecordError::Internal(e.to_string()))?;
            m.apply_event(&e);
        }
        Ok(m)
    }

    async fn run<A>(
        &self,
        framework: &Framework<A>,
        id: &str,
        cmd: A::Command,
        meta: HashMap<String, String>,
        command_id: Option<String>,
        refusal: impl Fn(&A::Error) -> (Refusal, String),
    ) -> Result<Outcome, RecordError>
    where
        A: Aggregate,
    {
        if let Some(cid) = &command_id {
            if let Some((aggregate_id, a)) = self.store.command_result(cid).await? {
                return Ok(Outcome {
                    aggregate_id,
                    appended: Some(a),
                    replayed: true,
                });
            }
        }
        let result = LAST_APPEND
            .scope(Cell::new(None), async {
                let r = framework.execute_with_metadata(id, cmd, meta).await;
                (r, LAST_APPEND.with(Cell::get))
            })
            .await;
        match result {
            (Ok(()), appended) => Ok(Outcome {
                aggregate_id: id.to_owned(),
                appended,
                replayed: false,
            }),
            (Err(AggregateError::UserError(e)), _) => {
                let (kind, message) = refusal(&e);
                Err(RecordError::Refused { kind, message })
            }
            (Err(AggregateError::AggregateConflict), _) => {
                Err(RecordError::Conflict(id.to_owned()))
            }
            (Err(AggregateError::UnexpectedError(e)), _) => {
                match e.downcast::<StoreError>() {
                    Ok(store_error) => match *store_error {
                        StoreError::DuplicateCommand(cid) => {
                            // The same command id committed between our check and our append.
                            match self.store.command_result(&cid).await? {
                                Some((aggregate_id, a)) => Ok(Outcome {
                                    aggregate_id,
                                    appended: Some(a),
                                    replayed: true,
                                }),
                                None => Err(RecordError::Conflict(id.to_owned())),
                            }
                        }
                        other => Err(RecordError::Store(other)),
                    },
                    Err(e) => Err(RecordError::Internal(e.to_string())),
                }
            }
            (Err(AggregateError::DatabaseConnectionError(e)), _) => {
                match e.downcast::<StoreError>() {
                    Ok(s) => Err(RecordError::Store(*s)),
                    Err(e) => Err(RecordError::Internal(e.to_string())),
                }
            }
            (Err(e), _) => Err(RecordError::Internal(e.to_string())),
        }
    }
}

/// Format a time as the log stores it: RFC 3339, UTC.
pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .expect("every time after year 0 formats as RFC 3339")
}

fn metadata(at: OffsetDateTime, actor: &str, command_id: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("at".to_owned(), format_time(at));
    m.insert("actor".to_owned(), actor.to_owned());
    if let Some(id) = command_id {
        m.insert("command_id".to_owned(), id.to_owned());
    }
    m
}

fn serialized(ev: crate::chain::StoredEvent) -> SerializedEvent {
    SerializedEvent {
        aggregate_id: ev.aggregate_id,
        sequence: ev.sequence as usize,
        aggregate_type: ev.aggregate_type,
        event_type: ev.event_type,
        event_version: ev.event_version,
        payload: ev.payload,
        metadata: serde_json::json!({
            "position": ev.position.to_string(),
            "actor": ev.actor,
            "at": ev.recorded_at,
        }),
    }
}

fn persistence(e: StoreError) -> PersistenceError {
    match e {
        StoreError::Conflict { .. } => PersistenceError::OptimisticLockError,
        StoreError::Database(_) | StoreError::Closed => {
            PersistenceError::ConnectionError(Box::new(e))
        }
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}

impl PersistedEventRepository for Store {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.get_last_events::<A>(aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self
            .aggregate_events(A::TYPE, aggregate_id, last_sequence as u64)
            .await
            .map_err(persistence)?
            .into_iter()
            .map(serialized)
            .collect())
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(self
            .snapshot(A::TYPE, aggregate_id)
            .await
            .map_err(persistence)?
            .map(|(aggregate, seq, version)| SerializedSnapshot {
                aggregate_id: aggregate_id.to_owned(),
                aggregate,
                current_sequence: seq as usize,
                current_snapshot: version as usize,
            }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let last_seq = events.last().map_or(0, |e| e.sequence);
        let snapshot = snapshot.map(|(_, state, version)| {
            (
                state,
                (last_seq / SNAPSHOT_EVERY * SNAPSHOT_EVERY) as u64,
                version as u64,
            )
        });
        let meta = |k: &str| {
            first
                .metadata
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let append = Append {
            aggregate_type: first.aggregate_type.clone(),
            aggregate_id: first.aggregate_id.clone(),
            first_sequence: first.sequence as u64,
            events: events
                .iter()
                .map(|e| {
                    (
                        e.event_type.clone(),
                        e.event_version.clone(),
                        e.payload.clone(),
                    )
                })
                .collect(),
            command_id: meta("command_id"),
            actor: meta("actor").unwrap_or_else(|| "system:unknown".to_owned()),
            recorded_at: meta("at").unwrap_or_else(|| format_time(OffsetDateTime::now_utc())),
            snapshot,
        };
        let appended = self.append(append).await.map_err(persistence)?;
        let _ = LAST_APPEND.try_with(|c| c.set(Some(appended)));
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.get_events::<A>(aggregate_id).await?;
        Ok(replay(events))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let (mut feed, stream) = ReplayStream::new(1024);
        let store = self.clone();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                match store.read(after, 1000).await {
                    Ok(batch) if batch.is_empty() => return,
                    Ok(batch) => {
                        after = batch.last().map_or(after, |e| e.position);
                        for ev in batch.into_iter().filter(|e| e.aggregate_type == A::TYPE) {
                            if feed.push(Ok(serialized(ev))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = feed.push(Err(persistence(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }
}

fn replay(events: Vec<SerializedEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    tokio::spawn(async move {
        for e in events {
            if feed.push(Ok(e)).await.is_err() {
                return;
            }
        }
    });
    stream
}

/// Sign a checkpoint over the whole log when `every_events` events or `every` time have
/// passed since the last one. Returns the new tree size, if one was signed.
pub async fn checkpoint_if_due(
    store: &Store,
    signer: &Signer,
    every_events: u64,
    every: Duration,
    force: bool,
) -> Result<Option<u64>, StoreError> {
    let head = store.head();
    let last = store.last_checkpoint().await?;
    let (done, mut frontier, mut chain, age) = match &last {
        Some((cp, f)) => {
            let age = OffsetDateTime::parse(&cp.signed_at, &Rfc3339)
                .map(|t| (OffsetDateTime::now_utc() - t).unsigned_abs())
                .unwrap_or(Duration::MAX);
            let mut chain = [0u8; 32];
            hex::decode_to_slice(&cp.chain_hash, &mut chain).map_err(|e| StoreError::Corrupt {
                position: cp.tree_size,
                reason: e.to_string(),
            })?;
            (cp.tree_size, f.clone(), chain, age)
        }
        None => (0, Frontier::default(), [0u8; 32], Duration::MAX),
    };
    if head <= done || !(force || head - done >= every_events || age >= every) {
        return Ok(None);
    }
    let mut after = done;
    while after < head {
        let batch = store.read(after, 5000).await?;
        if batch.is_empty() {
            break;
        }
        for ev in batch.into_iter().take_while(|e| e.position <= head) {
            if ev.position != after + 1 {
                return Err(StoreError::Corrupt {
                    position: after + 1,
                    reason: "missing from the log; refusing to sign".into(),
                });
            }
            let canonical = ev.canonical();
            let h = crate::chain::chain_hash(&chain, &canonical);
            if hex::encode(h) != ev.hash {
                return Err(StoreError::Corrupt {
                    position: ev.position,
                    reason: "hash does not match its contents; refusing to sign".into(),
                });
            }
            frontier.push(&canonical);
            chain = h;
            after = ev.position;
        }
    }
    let cp = signer.sign(
        after,
        &frontier.root(),
        &chain,
        &format_time(OffsetDateTime::now_utc()),
    );
    store.put_checkpoint(&cp, &frontier).await?;
    Ok(Some(after))
}
