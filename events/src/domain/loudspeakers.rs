//! The loudspeaker log of a room: the relay switched on and off, clusters changing status,
//! announcements started and ended (who asked for them, at what priority, on which clusters).
//! One aggregate per room, whether or not a meeting is open: an emergency at night is recorded
//! like one during a meeting. The meeting keeps its own relay and cluster events for its
//! minutes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::rules::{id, require_role, text};
use super::{
    ActorRole, ClusterStatus, Command, Decide, Forbidden, Invalid, Refusal, Refuse, Services,
};

/// How urgent an announcement is (Circular 39/2020/TT-BTTTT): an emergency interrupts
/// everything on every cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Ordinary bulletins.
    Normal,
    /// Urgent notices.
    Priority,
    /// Disaster, fire, epidemic.
    Emergency,
}

/// How an announcement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// It played to its end.
    Played,
    /// Someone stopped it, or a more urgent one took its place.
    Stopped,
}

/// What can be asked of a room's loudspeaker log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoudspeakerAction {
    /// The relay to the room's clusters was switched.
    SwitchRelay {
        /// On or off.
        on: bool,
    },
    /// The bridge saw a cluster change status.
    ReportClusterStatus {
        /// Cluster id.
        cluster: String,
        /// What the bridge sees now.
        status: ClusterStatus,
        /// Why, as the bridge saw it.
        reason: String,
    },
    /// An announcement started playing.
    StartAnnouncement {
        /// Announcement id.
        announcement: String,
        /// How urgent it is.
        priority: Priority,
        /// A file name, or `live:ROOM`.
        source: String,
        /// Cluster ids; empty for every output.
        clusters: Vec<String>,
        /// `role:id` of who asked for it.
        requested_by: String,
    },
    /// An announcement ended.
    EndAnnouncement {
        /// Announcement id.
        announcement: String,
        /// How it ended.
        how: Ending,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LoudspeakerEvent {
    /// The relay was switched.
    RelaySwitched {
        /// On or off.
        on: bool,
    },
    /// A cluster changed status.
    ClusterStatusReported {
        /// Cluster id.
        cluster: String,
        /// What the bridge sees now.
        status: ClusterStatus,
        /// Why, as the bridge saw it (may be empty).
        reason: String,
    },
    /// An announcement started.
    AnnouncementStarted {
        /// Announcement id, unique while it plays.
        announcement: String,
        /// How urgent it is.
        priority: Priority,
        /// A file name, or `live:ROOM`.
        source: String,
        /// Cluster ids (empty: every output).
        clusters: Vec<String>,
        /// `role:id` of who asked for it.
        requested_by: String,
    },
    /// An announcement ended.
    AnnouncementEnded {
        /// Announcement id.
        announcement: String,
        /// How it ended.
        how: Ending,
    },
}

crate::event!(LoudspeakerEvent);

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoudspeakerError {
    /// Fix the field named.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Nothing changes: the log has it already.
    #[error("{0}")]
    Already(String),
    /// No such announcement is playing.
    #[error("announcement {0} is not playing")]
    NotPlaying(String),
    /// The token's role may not do this.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
}

impl Refuse for LoudspeakerError {
    fn refusal(&self) -> Refusal {
        match self {
            Self::Forbidden(_) => Refusal::Forbidden,
            Self::Invalid(_) => Refusal::Invalid,
            Self::NotPlaying(_) => Refusal::NotFound,
            _ => Refusal::State,
        }
    }
}

/// A room's loudspeaker log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Loudspeakers {
    relay: bool,
    clusters: BTreeMap<String, ClusterStatus>,
    playing: BTreeSet<String>,
}

impl Decide for Loudspeakers {
    const TYPE: &'static str = "loudspeakers";
    type Action = LoudspeakerAction;
    type Event = LoudspeakerEvent;
    type Error = LoudspeakerError;

    fn decide(
        &self,
        cmd: &Command<LoudspeakerAction>,
        _: &Services,
    ) -> Result<Vec<LoudspeakerEvent>, LoudspeakerError> {
        use LoudspeakerAction as A;
        use LoudspeakerEvent as E;
        let chair_or_system = [ActorRole::Chair, ActorRole::System];
        match &cmd.action {
            A::SwitchRelay { on } => {
                require_role(&cmd.actor, &chair_or_system, "switch the relay")?;
                if self.relay == *on {
                    let state = if *on { "running" } else { "stopped" };
                    return Err(LoudspeakerError::Already(format!(
                        "the relay is already {state}"
                    )));
                }
                Ok(vec![E::RelaySwitched { on: *on }])
            }
            A::ReportClusterStatus {
                cluster,
                status,
                reason,
            } => {
                require_role(&cmd.actor, &[ActorRole::System], "report a cluster status")?;
                id("cluster", cluster)?;
                text("reason", reason, 0..=300)?;
                if self.clusters.get(cluster) == Some(status) {
                    return Err(LoudspeakerError::Already(format!(
                        "cluster {cluster} is already {}",
                        status.as_str()
                    )));
                }
                Ok(vec![E::ClusterStatusReported {
                    cluster: cluster.clone(),
                    status: *status,
                    reason: reason.clone(),
                }])
            }
            A::StartAnnouncement {
                announcement,
                priority,
                source,
                clusters,
                requested_by,
            } => {
                require_role(&cmd.actor, &chair_or_system, "start an announcement")?;
                id("announcement", announcement)?;
                text("source", source, 0..=200)?;
                text("requested_by", requested_by, 0..=200)?;
                for c in clusters {
                    id("clusters", c)?;
                }
                if self.playing.contains(announcement) {
                    return Err(LoudspeakerError::Already(format!(
                        "announcement {announcement} is already playing"
                    )));
                }
                Ok(vec![E::AnnouncementStarted {
                    announcement: announcement.clone(),
                    priority: *priority,
                    source: source.clone(),
                    clusters: clusters.clone(),
                    requested_by: requested_by.clone(),
                }])
            }
            A::EndAnnouncement { announcement, how } => {
                require_role(&cmd.actor, &chair_or_system, "end an announcement")?;
                if !self.playing.contains(announcement) {
                    return Err(LoudspeakerError::NotPlaying(announcement.clone()));
                }
                Ok(vec![E::AnnouncementEnded {
                    announcement: announcement.clone(),
                    how: *how,
                }])
            }
        }
    }

    fn apply_event(&mut self, e: &LoudspeakerEvent) {
        use LoudspeakerEvent as E;
        match e {
            E::RelaySwitched { on } => self.relay = *on,
            E::ClusterStatusReported {
                cluster, status, ..
            } => {
                self.clusters.insert(cluster.clone(), *status);
            }
            E::AnnouncementStarted { announcement, .. } => {
                self.playing.insert(announcement.clone());
            }
            E::AnnouncementEnded { announcement, .. } => {
                self.playing.remove(announcement);
            }
        }
    }
}

crate::aggregate!(Loudspeakers);

#[cfg(test)]
mod tests {
    use super::LoudspeakerAction as A;
    use super::LoudspeakerEvent as E;
    use super::*;
    use crate::domain::testing::{chair, house, Given};
    use crate::domain::Actor;

    fn bridge() -> Actor {
        Actor::system("bridge")
    }

    fn started(id: &str) -> E {
        E::AnnouncementStarted {
            announcement: id.into(),
            priority: Priority::Emergency,
            source: "lu-lut.wav".into(),
            clusters: vec![],
            requested_by: "chair:chair".into(),
        }
    }

    fn start(id: &str) -> A {
        A::StartAnnouncement {
            announcement: id.into(),
            priority: Priority::Emergency,
            source: "lu-lut.wav".into(),
            clusters: vec![],
            requested_by: "chair:chair".into(),
        }
    }

    #[test]
    fn the_relay_switches_only_when_it_changes() {
        Given::<Loudspeakers>::events(vec![])
            .when(chair(), A::SwitchRelay { on: true })
            .then(vec![E::RelaySwitched { on: true }]);
        Given::<Loudspeakers>::events(vec![E::RelaySwitched { on: true }])
            .when(bridge(), A::SwitchRelay { on: true })
            .then_error("the relay is already running");
        Given::<Loudspeakers>::events(vec![])
            .when(house("house-1"), A::SwitchRelay { on: true })
            .then_error("a house may not switch the relay");
    }

    #[test]
    fn only_the_bridge_reports_cluster_status_and_only_changes() {
        let report = |status| A::ReportClusterStatus {
            cluster: "thon-3".into(),
            status,
            reason: "unreachable".into(),
        };
        Given::<Loudspeakers>::events(vec![])
            .when(bridge(), report(ClusterStatus::Down))
            .then(vec![E::ClusterStatusReported {
                cluster: "thon-3".into(),
                status: ClusterStatus::Down,
                reason: "unreachable".into(),
            }]);
        Given::<Loudspeakers>::events(vec![E::ClusterStatusReported {
            cluster: "thon-3".into(),
            status: ClusterStatus::Down,
            reason: "x".into(),
        }])
        .when(bridge(), report(ClusterStatus::Down))
        .then_error("cluster thon-3 is already down");
        Given::<Loudspeakers>::events(vec![])
            .when(chair(), report(ClusterStatus::Up))
            .then_error("a chair may not report a cluster status");
    }

    #[test]
    fn an_announcement_starts_once_and_ends_once() {
        Given::<Loudspeakers>::events(vec![])
            .when(bridge(), start("flood-1"))
            .then(vec![started("flood-1")]);
        Given::<Loudspeakers>::events(vec![started("flood-1")])
            .when(bridge(), start("flood-1"))
            .then_error("announcement flood-1 is already playing");
        Given::<Loudspeakers>::events(vec![started("flood-1")])
            .when(
                bridge(),
                A::EndAnnouncement {
                    announcement: "flood-1".into(),
                    how: Ending::Played,
                },
            )
            .then(vec![E::AnnouncementEnded {
                announcement: "flood-1".into(),
                how: Ending::Played,
            }]);
        Given::<Loudspeakers>::events(vec![])
            .when(
                bridge(),
                A::EndAnnouncement {
                    announcement: "flood-1".into(),
                    how: Ending::Played,
                },
            )
            .then_error("announcement flood-1 is not playing");
        Given::<Loudspeakers>::events(vec![])
            .when(
                bridge(),
                A::StartAnnouncement {
                    announcement: "x/../y".into(),
                    priority: Priority::Normal,
                    source: "a.wav".into(),
                    clusters: vec![],
                    requested_by: "chair:chair".into(),
                },
            )
            .then_error("invalid announcement: 1 to 64 letters, digits, '-' or '_'");
    }

    #[test]
    fn priorities_statuses_and_endings_outside_the_lists_do_not_parse() {
        let cases = [
            (
                serde_json::json!({"type": "start_announcement", "announcement": "x",
                    "priority": "loud", "source": "a.wav", "clusters": [], "requested_by": "c"}),
                "unknown variant `loud`, expected one of `normal`, `priority`, `emergency`",
            ),
            (
                serde_json::json!({"type": "report_cluster_status", "cluster": "thon-3",
                    "status": "sideways", "reason": ""}),
                "unknown variant `sideways`, expected one of `unknown`, `up`, `down`",
            ),
            (
                serde_json::json!({"type": "end_announcement", "announcement": "x",
                    "how": "faded"}),
                "unknown variant `faded`, expected `played` or `stopped`",
            ),
        ];
        for (json, message) in cases {
            let err = serde_json::from_value::<LoudspeakerAction>(json).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }
}
