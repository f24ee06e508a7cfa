//! The loudspeaker log of a room: the relay switched on and off, clusters changing status,
//! announcements started and ended (who asked for them, at what priority, on which clusters).
//! One aggregate per room, whether or not a meeting is open: an emergency at night is recorded
//! like one during a meeting. The meeting keeps its own relay and cluster events for its
//! minutes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Actor, ActorRole, Command, EVENT_VERSION};

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
        /// `up`, `down` or `unknown`.
        status: String,
        /// Why, as the bridge saw it.
        reason: String,
    },
    /// An announcement started playing.
    StartAnnouncement {
        /// Announcement id.
        announcement: String,
        /// `normal`, `priority` or `emergency`.
        priority: String,
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
        /// `played` (to its end) or `stopped`.
        how: String,
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
        /// Cluster.
        cluster: String,
        /// New status.
        status: String,
        /// Why.
        reason: String,
    },
    /// An announcement started.
    AnnouncementStarted {
        /// Id.
        announcement: String,
        /// Priority.
        priority: String,
        /// What it played.
        source: String,
        /// Clusters (empty: all).
        clusters: Vec<String>,
        /// Who asked.
        requested_by: String,
    },
    /// An announcement ended.
    AnnouncementEnded {
        /// Id.
        announcement: String,
        /// How.
        how: String,
    },
}

impl cqrs_es::DomainEvent for LoudspeakerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::RelaySwitched { .. } => "RelaySwitched",
            Self::ClusterStatusReported { .. } => "ClusterStatusReported",
            Self::AnnouncementStarted { .. } => "AnnouncementStarted",
            Self::AnnouncementEnded { .. } => "AnnouncementEnded",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoudspeakerError {
    /// Fix the field named.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Nothing changes: the log has it already.
    #[error("{0}")]
    Already(String),
    /// No such announcement is playing.
    #[error("announcement {0} is not playing")]
    NotPlaying(String),
    /// The token's role may not do this.
    #[error("{} {role} may not {action}", super::meeting::article(role))]
    Forbidden {
        /// Role.
        role: &'static str,
        /// Action.
        action: &'static str,
    },
}

/// A room's loudspeaker log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Loudspeakers {
    relay: bool,
    clusters: BTreeMap<String, String>,
    playing: BTreeSet<String>,
}

fn require(
    actor: &Actor,
    roles: &[ActorRole],
    action: &'static str,
) -> Result<(), LoudspeakerError> {
    if roles.contains(&actor.role) {
        return Ok(());
    }
    let role = match actor.role {
        ActorRole::Chair => "chair",
        ActorRole::House => "house",
        ActorRole::Official => "official",
        ActorRole::System => "system",
    };
    Err(LoudspeakerError::Forbidden { role, action })
}

fn id_field(field: &'static str, v: &str) -> Result<(), LoudspeakerError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LoudspeakerError::Invalid {
            field,
            reason: "1 to 64 letters, digits, '-' or '_'".into(),
        })
    }
}

fn text_field(field: &'static str, v: &str, max: usize) -> Result<(), LoudspeakerError> {
    if v.chars().count() > max {
        return Err(LoudspeakerError::Invalid {
            field,
            reason: format!("longer than {max} characters"),
        });
    }
    Ok(())
}

impl Loudspeakers {
    /// Check a command; the events it causes.
    pub fn decide(
        &self,
        cmd: &Command<LoudspeakerAction>,
    ) -> Result<Vec<LoudspeakerEvent>, LoudspeakerError> {
        use LoudspeakerAction as A;
        use LoudspeakerEvent as E;
        let chair_or_system = [ActorRole::Chair, ActorRole::System];
        match &cmd.action {
            A::SwitchRelay { on } => {
                require(&cmd.actor, &chair_or_system, "switch the relay")?;
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
                require(&cmd.actor, &[ActorRole::System], "report a cluster status")?;
                id_field("cluster", cluster)?;
                if !matches!(status.as_str(), "up" | "down" | "unknown") {
                    return Err(LoudspeakerError::Invalid {
                        field: "status",
                        reason: "up, down or unknown".into(),
                    });
                }
                text_field("reason", reason, 300)?;
                if self.clusters.get(cluster) == Some(status) {
                    return Err(LoudspeakerError::Already(format!(
                        "cluster {cluster} is already {status}"
                    )));
                }
                Ok(vec![E::ClusterStatusReported {
                    cluster: cluster.clone(),
                    status: status.clone(),
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
                require(&cmd.actor, &chair_or_system, "start an announcement")?;
                id_field("announcement", announcement)?;
                if !matches!(priority.as_str(), "normal" | "priority" | "emergency") {
                    return Err(LoudspeakerError::Invalid {
                        field: "priority",
                        reason: "normal, priority or emergency".into(),
                    });
                }
                text_field("source", source, 200)?;
                text_field("requested_by", requested_by, 200)?;
                for c in clusters {
                    id_field("clusters", c)?;
                }
                if self.playing.contains(announcement) {
                    return Err(LoudspeakerError::Already(format!(
                        "announcement {announcement} is already playing"
                    )));
                }
                Ok(vec![E::AnnouncementStarted {
                    announcement: announcement.clone(),
                    priority: priority.clone(),
                    source: source.clone(),
                    clusters: clusters.clone(),
                    requested_by: requested_by.clone(),
                }])
            }
            A::EndAnnouncement { announcement, how } => {
                require(&cmd.actor, &chair_or_system, "end an announcement")?;
                if !matches!(how.as_str(), "played" | "stopped") {
                    return Err(LoudspeakerError::Invalid {
                        field: "how",
                        reason: "played or stopped".into(),
                    });
                }
                if !self.playing.contains(announcement) {
                    return Err(LoudspeakerError::NotPlaying(announcement.clone()));
                }
                Ok(vec![E::AnnouncementEnded {
                    announcement: announcement.clone(),
                    how: how.clone(),
                }])
            }
        }
    }

    /// Change state by one event.
    pub fn apply_event(&mut self, e: &LoudspeakerEvent) {
        use LoudspeakerEvent as E;
        match e {
            E::RelaySwitched { on } => self.relay = *on,
            E::ClusterStatusReported {
                cluster, status, ..
            } => {
                self.clusters.insert(cluster.clone(), status.clone());
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

impl cqrs_es::Aggregate for Loudspeakers {
    const TYPE: &'static str = "loudspeakers";
    type Command = Command<LoudspeakerAction>;
    type Event = LoudspeakerEvent;
    type Error = LoudspeakerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), LoudspeakerError> {
        for event in self.decide(&command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: LoudspeakerEvent) {
        self.apply_event(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::LoudspeakerAction as A;
    use super::LoudspeakerEvent as E;
    use super::*;
    use crate::domain::testing::{chair, house, Given};

    fn bridge() -> Actor {
        Actor::system("bridge")
    }

    fn started(id: &str) -> E {
        E::AnnouncementStarted {
            announcement: id.into(),
            priority: "emergency".into(),
            source: "lu-lut.wav".into(),
            clusters: vec![],
            requested_by: "chair:chair".into(),
        }
    }

    fn start(id: &str) -> A {
        A::StartAnnouncement {
            announcement: id.into(),
            priority: "emergency".into(),
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
        let report = |s: &str| A::ReportClusterStatus {
            cluster: "thon-3".into(),
            status: s.into(),
            reason: "unreachable".into(),
        };
        Given::<Loudspeakers>::events(vec![])
            .when(bridge(), report("down"))
            .then(vec![E::ClusterStatusReported {
                cluster: "thon-3".into(),
                status: "down".into(),
                reason: "unreachable".into(),
            }]);
        Given::<Loudspeakers>::events(vec![E::ClusterStatusReported {
            cluster: "thon-3".into(),
            status: "down".into(),
            reason: "x".into(),
        }])
        .when(bridge(), report("down"))
        .then_error("cluster thon-3 is already down");
        Given::<Loudspeakers>::events(vec![])
            .when(chair(), report("up"))
            .then_error("a chair may not report a cluster status");
        Given::<Loudspeakers>::events(vec![])
            .when(bridge(), report("sideways"))
            .then_error("invalid status: up, down or unknown");
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
                    how: "played".into(),
                },
            )
            .then(vec![E::AnnouncementEnded {
                announcement: "flood-1".into(),
                how: "played".into(),
            }]);
        Given::<Loudspeakers>::events(vec![])
            .when(
                bridge(),
                A::EndAnnouncement {
                    announcement: "flood-1".into(),
                    how: "played".into(),
                },
            )
            .then_error("announcement flood-1 is not playing");
        Given::<Loudspeakers>::events(vec![])
            .when(
                bridge(),
                A::StartAnnouncement {
                    announcement: "x".into(),
                    priority: "loud".into(),
                    source: "a.wav".into(),
                    clusters: vec![],
                    requested_by: "chair:chair".into(),
                },
            )
            .then_error("invalid priority: normal, priority or emergency");
    }
}
