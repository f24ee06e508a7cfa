//! The hub's side of the record: opening it, keeping the projections and checkpoints up to
//! date, marking overdue feedback, and turning what the SFU sees into commands.
//!
//! The SFU never imports the domain (STYLE.md): a task per room watches the room's state and
//! sends `ConnectHouse`/`DisconnectHouse` for the meeting open in that room; the signalling
//! handler turns each floor change the SFU decided into the record's commands with
//! [`floor_commands`], sent with the real actor (docs/decisions/0006: the SFU decides, the
//! record records what it decided).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dinh_events::chain::Signer;
use dinh_events::domain::feedback::FeedbackAction;
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::domain::workdays::Calendar;
use dinh_events::domain::{Actor, ActorRole, Command};
use dinh_events::projections::Views;
use dinh_events::record::{Record, RecordError};
use dinh_events::store::Store;
use time::OffsetDateTime;
use tokio::sync::{watch, RwLock};
use tokio_util::task::TaskTracker;

use crate::auth::{Claims, Role};
use crate::config::Config;
use crate::integrity::Integrity;
use dinh_sfu::floor::FloorChange;
use dinh_sfu::room::{Restored, Room};

/// The record as the hub holds it.
pub struct Recording {
    /// Commands in.
    pub record: Record,
    /// The projections. A tokio lock: the projector holds it while it writes a batch (a few
    /// milliseconds), and readers must not block a runtime thread meanwhile.
    pub views: RwLock<Views>,
    /// Position the projections have reached; SSE readers wait on it.
    pub projected: watch::Sender<u64>,
    /// Checkpoint key.
    pub signer: Arc<Signer>,
    /// The record's integrity: verified at start-up, signed and witnessed as it grows.
    pub integrity: Arc<Integrity>,
}

impl Recording {
    /// Open the store named by the config, verify the whole log (against its checkpoints
    /// and its witnesses'), and build the projections from it.
    pub async fn open(config: &Config) -> anyhow::Result<Arc<Self>> {
        let target = config.record_target();
        let store = Store::open(&target)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the record ({}): {e}", redact(&target)))?;
        let integrity = Arc::new(Integrity::open(config, &store).await?);
        // Like the projection rows below, the aggregates' snapshots are derived rows anyone
        // who can write the database could edit: the aggregates load from the verified log.
        let forgotten = store
            .forget_snapshots()
            .await
            .map_err(|e| anyhow::anyhow!("cannot drop the record's snapshots: {e}"))?;
        tracing::debug!(
            forgotten,
            "stored snapshots dropped; aggregates load from the log"
        );
        let signer = integrity.signer().clone();
        let mut holidays = Vec::new();
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        for h in &config.record.holidays {
            holidays.push(
                time::Date::parse(h, &fmt).map_err(|e| {
                    anyhow::anyhow!("record.holidays: '{h}' is not YYYY-MM-DD: {e}")
                })?,
            );
        }
        // Projection rows are served data that anyone who can write the database could
        // edit: build them from the log just verified, never load them.
        let views = Views::rebuild(&store).await?;
        let (projected, _) = watch::channel(views.position());
        Ok(Arc::new(Self {
            record: Record::new(store, Calendar::new(holidays)),
            views: RwLock::new(views),
            projected,
            signer,
            integrity,
        }))
    }

    /// Sign a checkpoint over everything not yet covered and send it to the witnesses (at
    /// shutdown).
    pub async fn checkpoint_now(&self) {
        self.integrity.tick(self.store(), true).await;
    }

    /// The append-only log underneath (reads, checkpoints, the head).
    pub fn store(&self) -> &Store {
        self.record.store()
    }

    /// The meeting open in `room`, if any (the most recently opened).
    pub async fn open_meeting(&self, room: &str) -> Option<String> {
        let views = self.views.read().await;
        views
            .minutes
            .rows()
            .filter(|m| m.room == room && m.status == "open")
            .max_by(|a, b| a.opened_at.cmp(&b.opened_at))
            .map(|m| m.meeting.clone())
    }

    /// Record a floor change the SFU decided for `ask`, asked by `actor`, in the meeting open
    /// in `room` (if any).
    pub async fn follow_floor(
        &self,
        room: &str,
        actor: &Actor,
        ask: &FloorAsk,
        change: &FloorChange,
    ) {
        for action in floor_commands(ask, change) {
            self.observe(room, actor.clone(), action).await;
        }
    }

    /// The house holding the floor in the meeting open in `room`, as the record has it.
    pub async fn floor_holder(&self, room: &str) -> Option<String> {
        let meeting = self.open_meeting(room).await?;
        let views = self.views.read().await;
        let turn = views.minutes.get(&meeting)?.floor.last()?;
        turn.revoked_at.is_none().then(|| turn.house.clone())
    }

    /// Give the SFU's room back what the record kept across a restart: the floor holder of the
    /// meeting open in it holds the floor again (and is heard once its media is back), so the
    /// minutes and the room agree from the first packet.
    pub async fn restore_room(&self, room: &Room) {
        let holder = self.floor_holder(room.name()).await;
        if holder.is_some() {
            tracing::info!(room = %room.name(), "floor holder restored from the record");
        }
        room.restore(Restored::floor(holder));
    }

    /// Send a meeting command for a fact the hub observed; refusals are expected (no meeting
    /// open) and only logged.
    pub async fn observe(&self, room: &str, actor: Actor, action: MeetingAction) {
        let Some(meeting) = self.open_meeting(room).await else {
            return;
        };
        let name = action.name();
        // A conflict with another command on the same meeting is retried by the record.
        let cmd = Command::new(OffsetDateTime::now_utc(), actor, action);
        match self.record.meeting(&meeting, cmd, None).await {
            Ok(_) => {}
            Err(RecordError::Refused { message, .. }) => {
                tracing::info!(command = %name, %message, "observation not recorded");
            }
            Err(e) => tracing::warn!(command = %name, error = %e, "observation not recorded"),
        }
    }

    /// Start the background work on `tasks`; it ends when `closing` turns true.
    pub fn spawn_tasks(
        self: &Arc<Self>,
        config: &Config,
        tasks: &TaskTracker,
        closing: watch::Receiver<bool>,
    ) {
        tasks.spawn(projector(self.clone(), closing.clone()));
        tasks.spawn(checkpointer(self.clone(), closing.clone()));
        tasks.spawn(overdue_timer(
            self.clone(),
            Duration::from_secs(config.record.overdue_check_secs.max(1)),
            closing,
        ));
    }

    /// Watch a room and record its houses connecting and leaving.
    pub fn watch_room(
        self: &Arc<Self>,
        room: Arc<Room>,
        tasks: &TaskTracker,
        closing: watch::Receiver<bool>,
    ) {
        tasks.spawn(room_watcher(self.clone(), room, closing));
    }
}

/// Hide the password of a database URL in messages.
fn redact(target: &str) -> String {
    match (target.find("://"), target.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…{}", &target[..s], &target[at..]),
        _ => target.to_owned(),
    }
}

/// What a participant asked of the floor through signalling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorAsk {
    /// A house raised its hand.
    RaiseHand(String),
    /// A house lowered its hand (yielding the floor if it held it).
    LowerHand(String),
    /// The chair gave a house the floor.
    Grant(String),
    /// The chair took the floor back.
    Revoke,
}

/// The record's commands for what the SFU decided when `ask` reached it: the record follows
/// the SFU's outcome, not the request (a request the SFU turned into nothing records nothing).
/// The meeting's rules derive the rest from each command as the SFU's `Floor` does: a grant
/// revokes the previous holder and lowers the new one's hand, a holder lowering its hand
/// yields. A house leaving is recorded by the room watcher's `DisconnectHouse`, which takes
/// the floor and the hand with it as `Floor::leave` does.
pub fn floor_commands(ask: &FloorAsk, change: &FloorChange) -> Vec<MeetingAction> {
    match (change, ask) {
        (FloorChange::None | FloorChange::Muted(..), _) => vec![],
        (
            FloorChange::Holder {
                to: Some(house), ..
            },
            _,
        ) => vec![MeetingAction::GrantFloor {
            house: house.clone(),
        }],
        (
            FloorChange::Holder {
                from: None,
                to: None,
            },
            _,
        ) => vec![],
        (
            FloorChange::Holder {
                from: Some(house),
                to: None,
            },
            FloorAsk::LowerHand(_),
        ) => {
            vec![MeetingAction::LowerHand {
                house: house.clone(),
            }]
        }
        (FloorChange::Holder { to: None, .. }, _) => vec![MeetingAction::RevokeFloor],
        (FloorChange::Queue, FloorAsk::RaiseHand(house)) => vec![MeetingAction::RaiseHand {
            house: house.clone(),
        }],
        (FloorChange::Queue, FloorAsk::LowerHand(house)) => vec![MeetingAction::LowerHand {
            house: house.clone(),
        }],
        // A grant or a revoke always moves the holder; the queue alone never changes by them.
        (FloorChange::Queue, FloorAsk::Grant(_) | FloorAsk::Revoke) => vec![],
    }
}

/// The actor of a token.
pub fn actor(claims: &Claims) -> Actor {
    let role = match claims.role {
        Role::Chair => ActorRole::Chair,
        Role::House => ActorRole::House,
        Role::Official => ActorRole::Official,
        // Receivers are refused by the record API and cannot act in signalling; should one
        // ever reach here it gets the least a participant may do.
        Role::Receiver => ActorRole::House,
        // A QR token raises feedback for its house (the subject), as that house.
        Role::Feedback => ActorRole::House,
    };
    // Every room's chair token has the subject "chair": the record names the room too.
    Actor::new(
        role,
        if claims.role == Role::Chair {
            format!("{}@{}", claims.sub, claims.room)
        } else {
            claims.sub.clone()
        },
    )
}

async fn projector(rec: Arc<Recording>, mut closing: watch::Receiver<bool>) {
    let mut head = rec.store().watch_head();
    loop {
        {
            let mut views = rec.views.write().await;
            match views.catch_up(rec.store()).await {
                Ok(_) => {
                    let p = views.position();
                    rec.projected.send_if_modified(|old| {
                        let changed = *old != p;
                        *old = p;
                        changed
                    });
                }
                Err(e) => tracing::error!(error = %e, "projection update failed; will retry"),
            }
        }
        tokio::select! {
            _ = head.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = closing.changed() => return,
        }
    }
}

/// Every 5 s: sign when `record.checkpoint_every` events or `checkpoint_interval_secs` have
/// passed, and retry witnesses that have not cosigned the newest checkpoint.
async fn checkpointer(rec: Arc<Recording>, mut closing: watch::Receiver<bool>) {
    loop {
        rec.integrity.tick(rec.store(), false).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = closing.changed() => return,
        }
    }
}

async fn overdue_timer(rec: Arc<Recording>, every: Duration, mut closing: watch::Receiver<bool>) {
    loop {
        let now = OffsetDateTime::now_utc();
        let due: Vec<String> = {
            let views = rec.views.read().await;
            views
                .feedback
                .rows()
                .filter(|f| {
                    f.status == "assigned"
                        && !f.overdue
                        && f.deadline.is_some_and(|d| Calendar::is_past(d, now))
                })
                .map(|f| f.id.clone())
                .collect()
        };
        for id in due {
            let cmd = Command::new(now, Actor::system("timer"), FeedbackAction::MarkOverdue);
            if let Err(e) = rec.record.feedback(&id, cmd, None).await {
                tracing::warn!(error = %e, "could not mark feedback overdue");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closing.changed() => return,
        }
    }
}

/// Reconcile the connected houses of a room with what the open meeting has recorded.
async fn room_watcher(rec: Arc<Recording>, room: Arc<Room>, mut closing: watch::Receiver<bool>) {
    let mut state = room.watch_state();
    let mut projected = rec.projected.subscribe();
    // meeting -> house -> the connection id recorded for its current presence.
    let mut recorded: HashMap<String, HashMap<String, String>> = HashMap::new();
    loop {
        if let Some(meeting) = rec.open_meeting(room.name()).await {
            let connected: Vec<String> = state
                .borrow_and_update()
                .houses
                .iter()
                .filter(|h| h.connected)
                .map(|h| h.id.clone())
                .collect();
            recorded.retain(|m, _| *m == meeting);
            let mine = recorded.entry(meeting.clone()).or_default();
            for house in &connected {
                if !mine.contains_key(house) {
                    let connection = uuid::Uuid::new_v4().to_string();
                    let action = MeetingAction::ConnectHouse {
                        house: house.clone(),
                        connection: connection.clone(),
                    };
                    rec.observe(room.name(), Actor::system("sfu"), action).await;
                    mine.insert(house.clone(), connection);
                }
            }
            let gone: Vec<String> = mine
                .keys()
                .filter(|h| !connected.contains(h))
                .cloned()
                .collect();
            for house in gone {
                if let Some(connection) = mine.remove(&house) {
                    let action = MeetingAction::DisconnectHouse { house, connection };
                    rec.observe(room.name(), Actor::system("sfu"), action).await;
                }
            }
        } else {
            recorded.clear();
        }
        tokio::select! {
            r = state.changed() => if r.is_err() { return },
            // A meeting opening or closing shows up in the projections.
            _ = projected.changed() => {}
            _ = closing.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(from: Option<&str>, to: Option<&str>) -> FloorChange {
        FloorChange::Holder {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        }
    }

    #[test]
    fn the_record_follows_what_the_sfu_decided() {
        let h = |s: &str| s.to_owned();
        let grant = |s: &str| MeetingAction::GrantFloor { house: h(s) };
        // The holder lowering its hand: the SFU gave the floor up; the record yields it.
        assert_eq!(
            floor_commands(
                &FloorAsk::LowerHand(h("house-1")),
                &holder(Some("house-1"), None)
            ),
            vec![MeetingAction::LowerHand {
                house: h("house-1")
            }]
        );
        // Granted to another: one grant, whose rule revokes the first holder.
        assert_eq!(
            floor_commands(
                &FloorAsk::Grant(h("house-2")),
                &holder(Some("house-1"), Some("house-2"))
            ),
            vec![grant("house-2")]
        );
        assert_eq!(
            floor_commands(
                &FloorAsk::Grant(h("house-1")),
                &holder(None, Some("house-1"))
            ),
            vec![grant("house-1")]
        );
        assert_eq!(
            floor_commands(&FloorAsk::Revoke, &holder(Some("house-1"), None)),
            vec![MeetingAction::RevokeFloor]
        );
        assert_eq!(
            floor_commands(&FloorAsk::RaiseHand(h("house-3")), &FloorChange::Queue),
            vec![MeetingAction::RaiseHand {
                house: h("house-3")
            }]
        );
        assert_eq!(
            floor_commands(&FloorAsk::LowerHand(h("house-3")), &FloorChange::Queue),
            vec![MeetingAction::LowerHand {
                house: h("house-3")
            }]
        );
        // What the SFU turned into nothing records nothing.
        for ask in [
            FloorAsk::RaiseHand(h("house-1")),
            FloorAsk::LowerHand(h("house-1")),
            FloorAsk::Grant(h("house-1")),
        ] {
            assert_eq!(floor_commands(&ask, &FloorChange::None), vec![]);
        }
        assert_eq!(
            floor_commands(
                &FloorAsk::Grant(h("house-1")),
                &FloorChange::Muted(h("house-1"), true)
            ),
            vec![]
        );
    }
}
