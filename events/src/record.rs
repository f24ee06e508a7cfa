//! [`Record`]: what the hub drives. Commands go in through cqrs-es's `CqrsFramework`; out come
//! the positions their events were given. A command retried with the same id appends nothing
//! and returns the first result.
//!
//! Each aggregate's state is kept in memory behind its own lock ([`Cached`], cqrs-es's
//! `EventStore`): a command finds its aggregate loaded, decides, and hands its events to the
//! store's single writer, which commits many commands' events in one transaction and answers
//! each only after that commit. A command reads nothing from the database unless its aggregate
//! is not in memory yet (then a snapshot and the events after it), or was refused with a
//! command id (then the first result of that id). What must stay true:
//! - the state in memory is the state of the committed events, never ahead: it moves only
//!   after the store acknowledged the append;
//! - commands on one aggregate run one at a time (its lock is held from load to commit), so
//!   they never conflict with each other; a conflict means another writer changed the
//!   aggregate (another hub on the same PostgreSQL): the state is dropped, loaded again and
//!   the command decided again;
//! - the cache is bounded ([`Record::with_capacity`]): the least recently used aggregates are
//!   dropped and loaded again on their next command.
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

use std::any::{Any, TypeId};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_es::{AggregateContext, AggregateError, CqrsFramework, DomainEvent, EventEnvelope};
use futures::Stream;
use hashlink::LruCache;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::OwnedMutexGuard;

use crate::chain::{Frontier, Signer, StoredEvent};
use crate::domain::feedback::{Feedback, FeedbackAction};
use crate::domain::loudspeakers::{LoudspeakerAction, Loudspeakers};
use crate::domain::meeting::{Meeting, MeetingAction};
use crate::domain::notices::{Notice, NoticeAction};
use crate::domain::tokens::{TokenAction, TokenDenyList, DENY_LIST};
use crate::domain::workdays::Calendar;
use crate::domain::{Command, Decide, Refuse, Services};
use crate::store::{Append, Appended, Store, StoreError};

pub use crate::domain::Refusal;

tokio::task_local! {
    /// Positions of the append made by the command running in this task: `commit` cannot
    /// return them through cqrs-es, so it leaves them here for [`Record`].
    static LAST_APPEND: Cell<Option<Appended>>;
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// The aggregate it went to (for a replayed command, the aggregate of its first run).
    pub aggregate_id: String,
    /// Positions of its events; `None` when it changed nothing.
    pub appended: Option<Appended>,
    /// Whether this is the first result of an earlier command with the same id.
    pub replayed: bool,
}

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The rules refused it; show the message. Nothing was appended.
    #[error("{message}")]
    Refused {
        /// How to show it (403, 404, 422, 409).
        kind: Refusal,
        /// The domain's message.
        message: String,
    },
    /// Another writer kept changing the same meeting or item: retry (409).
    #[error("{0} was changed by another command at the same time; try again")]
    Conflict(String),
    /// The store failed; nothing was acknowledged (503).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event or snapshot does not fit the domain (500).
    #[error("{0}")]
    Internal(String),
}

/// A snapshot is kept each time an aggregate passes a multiple of this many events, so that
/// loading a long meeting reads its snapshot and fewer than this many events.
const SNAPSHOT_EVERY: u64 = 32;

/// Aggregates of one type kept in memory when none is given.
pub const DEFAULT_CAPACITY: usize = 4096;

/// How often a command is decided again after a conflict before the caller is told.
const ATTEMPTS: usize = 3;

/// An aggregate the record can run: a [`Decide`] made a `cqrs_es::Aggregate` by
/// [`crate::aggregate!`].
pub trait Runnable:
    Decide
    + cqrs_es::Aggregate<
        Command = Command<<Self as Decide>::Action>,
        Event = <Self as Decide>::Event,
        Error = <Self as Decide>::Error,
        Services = Services,
    >
{
}

impl<T> Runnable for T where
    T: Decide
        + cqrs_es::Aggregate<
            Command = Command<<T as Decide>::Action>,
            Event = <T as Decide>::Event,
            Error = <T as Decide>::Error,
            Services = Services,
        >
{
}

/// The record: the aggregates over one store.
pub struct Record {
    store: Store,
    services: Services,
    capacity: usize,
    /// One [`Kind`] per aggregate type, made on first use.
    kinds: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

/// One aggregate type: its framework, and the cache the framework's event store holds.
struct Kind<A: Runnable> {
    framework: CqrsFramework<A, Cached<A>>,
    cache: Arc<Cache<A>>,
}

impl Record {
    /// A record over `store`, counting feedback deadlines with `calendar`.
    pub fn new(store: Store, calendar: Calendar) -> Self {
        Self::with_capacity(store, calendar, DEFAULT_CAPACITY)
    }

    /// [`Record::new`] keeping at most `capacity` aggregates of each type in memory.
    pub fn with_capacity(store: Store, calendar: Calendar, capacity: usize) -> Self {
        Self {
            store,
            services: Services { calendar },
            capacity: capacity.max(1),
            kinds: Mutex::default(),
        }
    }

    /// The store the record appends to and reads from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The working days the record counts feedback deadlines with (the officials' register
    /// counts what is left with the same calendar).
    pub fn calendar(&self) -> &Calendar {
        &self.services.calendar
    }

    /// Run a meeting command.
    pub async fn meeting(
        &self,
        id: &str,
        cmd: Command<MeetingAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        self.execute::<Meeting>(id, cmd, command_id).await
    }

    /// Run a feedback command.
    pub async fn feedback(
        &self,
        id: &str,
        cmd: Command<FeedbackAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        self.execute::<Feedback>(id, cmd, command_id).await
    }

    /// Run a command on a room's loudspeaker log (the aggregate id is the room).
    pub async fn loudspeakers(
        &self,
        room: &str,
        cmd: Command<LoudspeakerAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        self.execute::<Loudspeakers>(room, cmd, command_id).await
    }

    /// Run a command on a notice of the village bulletin boards.
    pub async fn notice(
        &self,
        id: &str,
        cmd: Command<NoticeAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        self.execute::<Notice>(id, cmd, command_id).await
    }

    /// Revoke a token (the one deny-list aggregate, [`DENY_LIST`]).
    pub async fn revoke_token(
        &self,
        cmd: Command<TokenAction>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        self.execute::<TokenDenyList>(DENY_LIST, cmd, command_id)
            .await
    }

    /// The deny list as the log has it.
    pub async fn load_deny_list(&self) -> Result<TokenDenyList, RecordError> {
        self.state::<TokenDenyList>(DENY_LIST).await
    }

    /// The current state of a meeting (for checks the hub makes before sending a command).
    pub async fn load_meeting(&self, id: &str) -> Result<Meeting, RecordError> {
        self.state::<Meeting>(id).await
    }

    /// The current state of any aggregate, from memory (loaded first if it is not there).
    pub async fn state<A: Runnable>(&self, id: &str) -> Result<A, RecordError> {
        let cache = self.kind::<A>().cache.clone();
        let slot = cache.loaded(id).await?;
        Ok(slot.as_ref().map(|l| l.state.clone()).unwrap_or_default())
    }

    /// Run a command on aggregate `A` with id `id`. `command_id`, when given, makes a retry
    /// safe: the same id returns the first result and appends nothing.
    pub async fn execute<A: Runnable>(
        &self,
        id: &str,
        cmd: Command<A::Action>,
        command_id: Option<String>,
    ) -> Result<Outcome, RecordError> {
        let kind = self.kind::<A>();
        let meta = metadata(cmd.at, &cmd.actor.label(), command_id.as_deref());
        for attempt in 1..=ATTEMPTS {
            let (result, appended) = LAST_APPEND
                .scope(Cell::new(None), async {
                    let r = kind
                        .framework
                        .execute_with_metadata(id, cmd.clone(), meta.clone())
                        .await;
                    (r, LAST_APPEND.with(Cell::get))
                })
                .await;
            let outcome = match result {
                Ok(()) => Outcome {
                    aggregate_id: id.to_owned(),
                    appended,
                    replayed: false,
                },
                Err(AggregateError::UserError(e)) => {
                    // A retry of a command that went through may be refused now (the meeting
                    // is open already): the first result stands.
                    if let Some(first) = self.first_result(command_id.as_deref()).await? {
                        return Ok(first);
                    }
                    // Decided against a state another hub has since moved: decide again.
                    if attempt < ATTEMPTS && kind.cache.stale(id).await? {
                        continue;
                    }
                    return Err(RecordError::Refused {
                        kind: e.refusal(),
                        message: e.to_string(),
                    });
                }
                Err(AggregateError::AggregateConflict) if attempt < ATTEMPTS => continue,
                Err(AggregateError::AggregateConflict) => {
                    return Err(RecordError::Conflict(id.to_owned()))
                }
                Err(AggregateError::UnexpectedError(e))
                | Err(AggregateError::DatabaseConnectionError(e)) => {
                    return match e.downcast::<StoreError>() {
                        Ok(s) => match *s {
                            StoreError::DuplicateCommand(cid) => self
                                .first_result(Some(&cid))
                                .await?
                                .ok_or_else(|| RecordError::Conflict(id.to_owned())),
                            other => Err(RecordError::Store(other)),
                        },
                        Err(e) => Err(RecordError::Internal(e.to_string())),
                    };
                }
                Err(e) => return Err(RecordError::Internal(e.to_string())),
            };
            if outcome.appended.is_none() {
                // Nothing to append now; a retry of a command that appended gets its result.
                if let Some(first) = self.first_result(command_id.as_deref()).await? {
                    return Ok(first);
                }
                if attempt < ATTEMPTS && kind.cache.stale(id).await? {
                    continue;
                }
            }
            return Ok(outcome);
        }
        Err(RecordError::Conflict(id.to_owned()))
    }

    /// Every event after position `after`, in order, then the new ones as they commit, in
    /// batches (each what one read found; consumers that decide per batch take their locks
    /// once per batch). Ends when the store is dropped, or after the error of a failed read.
    pub fn subscribe(
        &self,
        after: u64,
    ) -> impl Stream<Item = Result<Vec<StoredEvent>, StoreError>> + Send + 'static {
        subscribe(self.store.clone(), after, self.store.watch_head())
    }

    /// [`Record::subscribe`], reading only up to `upto` as it moves (a reader that decides
    /// with the projections follows their position, so it reads what they have applied and
    /// after them, never racing them for the database).
    pub fn subscribe_upto(
        &self,
        after: u64,
        upto: tokio::sync::watch::Receiver<u64>,
    ) -> impl Stream<Item = Result<Vec<StoredEvent>, StoreError>> + Send + 'static {
        subscribe(self.store.clone(), after, upto)
    }

    async fn first_result(&self, command_id: Option<&str>) -> Result<Option<Outcome>, StoreError> {
        let Some(cid) = command_id else {
            return Ok(None);
        };
        Ok(self
            .store
            .command_result(cid)
            .await?
            .map(|(aggregate_id, a)| Outcome {
                aggregate_id,
                appended: Some(a),
                replayed: true,
            }))
    }

    fn kind<A: Runnable>(&self) -> Arc<Kind<A>> {
        // A std Mutex: held only to look up or insert, never across an await.
        let mut kinds = self
            .kinds
            .lock()
            .expect("never poisoned: nothing panics under it");
        let any = kinds.entry(TypeId::of::<A>()).or_insert_with(|| {
            let cache = Arc::new(Cache::<A>::new(self.store.clone(), self.capacity));
            let store = Cached {
                cache: cache.clone(),
            };
            let framework = CqrsFramework::new(store, vec![], self.services.clone());
            Arc::new(Kind { framework, cache }) as Arc<dyn Any + Send + Sync>
        });
        any.clone()
            .downcast::<Kind<A>>()
            .expect("each entry is keyed by its own type")
    }
}

/// One aggregate's slot: its state once loaded. The tokio lock is held from a command's load
/// to its commit (across the append's await), so commands on one aggregate run one at a time.
type Slot<A> = Arc<tokio::sync::Mutex<Option<Loaded<A>>>>;

/// An aggregate's state and the sequence of the last event in it.
struct Loaded<A> {
    state: A,
    sequence: u64,
}

/// The aggregates of one type in memory, least recently used dropped first.
struct Cache<A> {
    store: Store,
    // A std Mutex: held only to find or insert a slot, never across an await.
    slots: Mutex<LruCache<String, Slot<A>>>,
}

impl<A: Runnable> Cache<A> {
    fn new(store: Store, capacity: usize) -> Self {
        Self {
            store,
            slots: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The slot of `id`, locked and loaded. An evicted slot still held by a command is
    /// dropped when that command ends; a new slot loads from the store, and if it loaded
    /// before that command committed, its own append conflicts and it loads again.
    async fn loaded(&self, id: &str) -> Result<OwnedMutexGuard<Option<Loaded<A>>>, Loading> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .expect("never poisoned: nothing panics under it");
            match slots.get(id) {
                Some(s) => s.clone(),
                None => {
                    let s = Slot::<A>::default();
                    slots.insert(id.to_owned(), s.clone());
                    s
                }
            }
        };
        let mut guard = slot.lock_owned().await;
        if guard.is_none() {
            *guard = Some(self.load(id).await?);
        }
        Ok(guard)
    }

    /// Whether another writer (another hub on the same database) appended to `id` since it
    /// was loaded; if so it is dropped, to load again. Asked only when a command was refused
    /// or changed nothing, so an accepted command still reads nothing.
    async fn stale(&self, id: &str) -> Result<bool, StoreError> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .expect("never poisoned: nothing panics under it");
            slots.get(id).cloned()
        };
        let Some(slot) = slot else { return Ok(false) };
        let mut guard = slot.lock_owned().await;
        let Some(loaded) = guard.as_ref() else {
            return Ok(false);
        };
        let stored = self.store.last_sequence(<A as Decide>::TYPE, id).await?;
        if stored != loaded.sequence {
            *guard = None;
            return Ok(true);
        }
        Ok(false)
    }

    /// Rebuild from the store: the latest snapshot, then the events after it.
    async fn load(&self, id: &str) -> Result<Loaded<A>, Loading> {
        let snapshot = self.store.snapshot(<A as Decide>::TYPE, id).await?;
        let (mut state, mut sequence) = snapshot
            .and_then(|(v, seq, _)| Some((serde_json::from_value::<A>(v).ok()?, seq)))
            .unwrap_or_default();
        for ev in self
            .store
            .aggregate_events(<A as Decide>::TYPE, id, sequence)
            .await?
        {
            let event: <A as Decide>::Event = serde_json::from_value(ev.payload).map_err(|e| {
                Loading::Event(format!(
                    "position {} ({} {id}) does not decode: {e}",
                    ev.position,
                    <A as Decide>::TYPE
                ))
            })?;
            state.apply_event(&event);
            sequence = ev.sequence;
        }
        Ok(Loaded { state, sequence })
    }
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
enum Loading {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Event(String),
}

impl From<Loading> for RecordError {
    fn from(e: Loading) -> Self {
        match e {
            Loading::Store(s) => RecordError::Store(s),
            Loading::Event(m) => RecordError::Internal(m),
        }
    }
}

/// cqrs-es's event store over the [`Store`], keeping each aggregate in memory.
struct Cached<A: Runnable> {
    cache: Arc<Cache<A>>,
}

/// A command's hold on its aggregate: the slot stays locked until the context is dropped, and
/// the state goes back into it (unchanged after a refusal, advanced after a commit).
struct Context<A: Runnable> {
    slot: OwnedMutexGuard<Option<Loaded<A>>>,
    id: String,
    state: A,
    sequence: u64,
    /// Set when the state must not go back (it took events that were not committed).
    spoilt: bool,
}

impl<A: Runnable> AggregateContext<A> for Context<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.state
    }
}

impl<A: Runnable> Drop for Context<A> {
    fn drop(&mut self) {
        if !self.spoilt {
            *self.slot = Some(Loaded {
                state: std::mem::take(&mut self.state),
                sequence: self.sequence,
            });
        }
    }
}

fn store_error<E: std::error::Error>(e: StoreError) -> AggregateError<E> {
    match e {
        StoreError::Conflict { .. } => AggregateError::AggregateConflict,
        StoreError::Database(_) | StoreError::Closed => {
            AggregateError::DatabaseConnectionError(Box::new(e))
        }
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}

impl<A: Runnable> cqrs_es::EventStore<A> for Cached<A> {
    type AC = Context<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<<A as Decide>::Error>> {
        let stored = self
            .cache
            .store
            .aggregate_events(<A as Decide>::TYPE, aggregate_id, 0)
            .await
            .map_err(store_error)?;
        stored
            .into_iter()
            .map(|ev| {
                Ok(EventEnvelope {
                    aggregate_id: ev.aggregate_id,
                    sequence: ev.sequence as usize,
                    payload: serde_json::from_value(ev.payload)
                        .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?,
                    metadata: HashMap::from([
                        ("position".to_owned(), ev.position.to_string()),
                        ("actor".to_owned(), ev.actor),
                        ("at".to_owned(), ev.recorded_at),
                    ]),
                })
            })
            .collect()
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Context<A>, AggregateError<<A as Decide>::Error>> {
        let mut slot = self.cache.loaded(aggregate_id).await.map_err(|e| match e {
            Loading::Store(s) => store_error(s),
            Loading::Event(m) => AggregateError::UnexpectedError(m.into()),
        })?;
        let Loaded { state, sequence } = slot.take().expect("loaded() leaves the slot full");
        Ok(Context {
            slot,
            id: aggregate_id.to_owned(),
            state,
            sequence,
            spoilt: false,
        })
    }

    async fn commit(
        &self,
        events: Vec<<A as Decide>::Event>,
        mut context: Context<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<<A as Decide>::Error>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let last = context.sequence + events.len() as u64;
        // The state already holds the events (cqrs-es's sink applied them): a snapshot
        // taken now is the state after exactly `last`.
        let snapshot = if context.sequence / SNAPSHOT_EVERY != last / SNAPSHOT_EVERY {
            let state = serde_json::to_value(&context.state)
                .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
            Some((state, last, last / SNAPSHOT_EVERY))
        } else {
            None
        };
        let mut payloads = Vec::with_capacity(events.len());
        for e in &events {
            let v = serde_json::to_value(e)
                .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
            // DomainEvent::event_type would serialise the event a second time.
            let kind = crate::domain::event_type(v["type"].as_str().unwrap_or_default());
            payloads.push((kind, e.event_version(), v));
        }
        let meta = |k: &str| metadata.get(k).cloned();
        let append = Append {
            aggregate_type: <A as Decide>::TYPE.to_owned(),
            aggregate_id: context.id.clone(),
            first_sequence: context.sequence + 1,
            events: payloads,
            command_id: meta("command_id"),
            actor: meta("actor").unwrap_or_else(|| "system:unknown".to_owned()),
            recorded_at: meta("at").unwrap_or_else(|| format_time(OffsetDateTime::now_utc())),
            snapshot,
        };
        match self.cache.store.append(append).await {
            Ok(appended) => {
                let _ = LAST_APPEND.try_with(|c| c.set(Some(appended)));
                let first = context.sequence as usize + 1;
                context.sequence = last;
                Ok(events
                    .into_iter()
                    .enumerate()
                    .map(|(i, payload)| EventEnvelope {
                        aggregate_id: context.id.clone(),
                        sequence: first + i,
                        payload,
                        metadata: metadata.clone(),
                    })
                    .collect())
            }
            Err(StoreError::DuplicateCommand(cid)) => {
                // Nothing was written, but the state took this command's events: drop it, the
                // next command loads it again.
                context.spoilt = true;
                Err(AggregateError::UnexpectedError(Box::new(
                    StoreError::DuplicateCommand(cid),
                )))
            }
            Err(e) => {
                // A conflict (another writer changed it) or a failed batch (which may or may
                // not have reached the disk when the connection broke): load it again.
                context.spoilt = true;
                Err(store_error(e))
            }
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

/// The events after `after` up to `upto` in batches of at most 500, in order, then more as
/// `upto` moves: a batch is what one read found, never empty.
fn subscribe(
    store: Store,
    after: u64,
    upto: tokio::sync::watch::Receiver<u64>,
) -> impl Stream<Item = Result<Vec<StoredEvent>, StoreError>> + Send + 'static {
    futures::stream::unfold(Some((store, upto, after)), |st| async move {
        let (store, mut upto, mut after) = st?;
        loop {
            let limit = *upto.borrow_and_update();
            if limit > after {
                let want = (limit - after).min(500) as usize;
                match store.read(after, want).await {
                    Ok(batch) if batch.is_empty() => {}
                    Ok(batch) => {
                        after = batch.last().map_or(after, |e| e.position);
                        return Some((Ok(batch), Some((store, upto, after))));
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
            if upto.changed().await.is_err() {
                return None;
            }
        }
    })
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
