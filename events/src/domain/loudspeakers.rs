//! A room's loudspeakers as the record knows them: one aggregate per room (its id is the
//! room), whether or not a meeting is open, so an emergency at night is recorded like one
//! during a meeting.
//!
//! Two kinds of facts live here:
//! - **What the room's chair decided**, which the bridge follows and rebuilds from at
//!   start-up: the relay on or off, clusters added through the API (their configuration,
//!   without secrets), announcements scheduled or cancelled, and announcement files stored
//!   or removed (their identity: size, SHA-256, duration).
//! - **What the bridge saw**: a cluster changing status, an announcement starting and
//!   ending (played, stopped, missed while the hub was off, or failed).
//!
//! The meeting's own `RelayStarted`/`RelayStopped`/`ClusterStatusChanged` events stay
//! readable in old logs; the minutes now take the relay and cluster status from here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::rules::{id, require_role, text};
use super::{domain_error, ActorRole, ClusterStatus, Command, Decide, Invalid, Services};

/// Most announcements a room may have scheduled at once.
pub const MAX_SCHEDULED: usize = 500;
/// Most clusters one announcement may name.
pub const MAX_CLUSTERS: usize = 64;
/// Largest cluster configuration kept, bytes of JSON.
pub const MAX_CONFIG_BYTES: usize = 4096;

/// Priorities of Vietnamese commune radio (Circular 39/2020/TT-BTTTT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Ordinary bulletins.
    Normal,
    /// Urgent notices.
    Priority,
    /// Disaster, fire, epidemic: interrupts everything.
    Emergency,
}

/// How an announcement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Played to its end.
    Played,
    /// Stopped while it played.
    Stopped,
    /// Scheduled, but its time passed while the hub was off: never played.
    Missed,
    /// Scheduled, but its file could not be played or its clusters were gone.
    Failed,
}

/// What can be asked of a room's loudspeakers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoudspeakerAction {
    /// Switch the relay of the room's meeting to its clusters.
    SwitchRelay {
        /// Running from now, or stopped.
        on: bool,
    },
    /// The bridge saw a cluster change status.
    ReportClusterStatus {
        /// Cluster id.
        cluster: String,
        /// The status now.
        status: ClusterStatus,
        /// The evidence, in words (at most 300 characters).
        reason: String,
    },
    /// An announcement started playing.
    StartAnnouncement {
        /// Announcement id.
        announcement: String,
        /// Its priority.
        priority: Priority,
        /// A file name, or `live:ROOM`.
        source: String,
        /// Cluster ids; empty for every output of the room.
        clusters: Vec<String>,
        /// `role:id` of who asked for it.
        requested_by: String,
    },
    /// An announcement ended, or a scheduled one will never play.
    EndAnnouncement {
        /// Announcement id.
        announcement: String,
        /// Why.
        how: Ending,
    },
    /// Keep a cluster added through the API, so that it comes back after a restart.
    AddCluster {
        /// Cluster id.
        cluster: String,
        /// Its configuration as the API took it, without its password (secrets stay out of
        /// the record, which is exported); at most [`MAX_CONFIG_BYTES`].
        config: serde_json::Value,
    },
    /// Forget a cluster added through the API.
    RemoveCluster {
        /// Cluster id.
        cluster: String,
    },
    /// Plan an announcement for a later time.
    ScheduleAnnouncement {
        /// Announcement id.
        announcement: String,
        /// When it plays; after the command's time.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// Its priority.
        priority: Priority,
        /// A file of the room's, or `live:ROOM`.
        source: String,
        /// Cluster ids; empty for every output of the room.
        clusters: Vec<String>,
        /// Whether the chime plays first.
        chime: bool,
    },
    /// Cancel a scheduled announcement before it starts.
    CancelAnnouncement {
        /// Announcement id.
        announcement: String,
    },
    /// An announcement file was stored (or replaced) in the room's folder.
    StoreFile {
        /// `NAME.wav`, `NAME.opus` or `NAME.ogg`.
        file: String,
        /// Size, bytes.
        bytes: u64,
        /// SHA-256 of the bytes, lowercase hex.
        sha256: String,
        /// Duration, milliseconds.
        millis: u64,
    },
    /// An announcement file was deleted.
    RemoveFile {
        /// File name.
        file: String,
    },
}

/// What happened to a room's loudspeakers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LoudspeakerEvent {
    /// The relay was switched.
    RelaySwitched {
        /// Running from now, or stopped.
        on: bool,
    },
    /// A cluster changed status.
    ClusterStatusReported {
        /// Cluster id.
        cluster: String,
        /// The status now.
        status: ClusterStatus,
        /// The evidence, in words.
        reason: String,
    },
    /// An announcement started.
    AnnouncementStarted {
        /// Announcement id.
        announcement: String,
        /// Its priority.
        priority: Priority,
        /// A file name, or `live:ROOM`.
        source: String,
        /// Cluster ids; empty for every output of the room.
        clusters: Vec<String>,
        /// `role:id` of who asked for it.
        requested_by: String,
    },
    /// An announcement ended, or a scheduled one will never play.
    AnnouncementEnded {
        /// Announcement id.
        announcement: String,
        /// Why.
        how: Ending,
    },
    /// A cluster added through the API.
    ClusterAdded {
        /// Cluster id.
        cluster: String,
        /// Its configuration, without its password.
        config: serde_json::Value,
    },
    /// A cluster added through the API was removed.
    ClusterRemoved {
        /// Cluster id.
        cluster: String,
    },
    /// An announcement was planned for later.
    AnnouncementScheduled {
        /// Announcement id.
        announcement: String,
        /// When it plays.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// Its priority.
        priority: Priority,
        /// A file of the room's, or `live:ROOM`.
        source: String,
        /// Cluster ids; empty for every output of the room.
        clusters: Vec<String>,
        /// Whether the chime plays first.
        chime: bool,
        /// `role:id` of who scheduled it.
        requested_by: String,
    },
    /// A scheduled announcement was cancelled before it started.
    AnnouncementCancelled {
        /// Announcement id.
        announcement: String,
    },
    /// A file was stored or replaced.
    FileStored {
        /// File name.
        file: String,
        /// Size, bytes.
        bytes: u64,
        /// SHA-256 of the bytes, lowercase hex.
        sha256: String,
        /// Duration, milliseconds.
        millis: u64,
    },
    /// A file was deleted.
    FileRemoved {
        /// File name.
        file: String,
    },
}

crate::event!(LoudspeakerEvent);

domain_error! {
    /// Why a command was refused.
    pub enum LoudspeakerError {
        /// Nothing changes: the log has it already.
        #[error("{0}")]
        Already(String) => State,
        /// No such announcement is playing (nor scheduled, for a scheduled one's end).
        #[error("announcement {0} is not playing")]
        NotPlaying(String) => NotFound,
        /// The room has no such cluster, file or scheduled announcement; the message says which.
        #[error("{0}")]
        NotFound(String) => NotFound,
        /// Still needed by a scheduled announcement; cancel that first.
        #[error("{0}")]
        InUse(String) => State,
    }
    /// The token's role may not do this.
    Forbidden
}

/// A scheduled announcement as the record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    /// When it plays.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Its priority.
    pub priority: Priority,
    /// A file of the room's, or `live:ROOM`.
    pub source: String,
    /// Cluster ids; empty for every output of the room.
    pub clusters: Vec<String>,
    /// Whether the chime plays first.
    pub chime: bool,
    /// `role:id` of who scheduled it.
    pub requested_by: String,
}

/// A stored file's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Size, bytes.
    pub bytes: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Duration, milliseconds.
    pub millis: u64,
}

/// A room's loudspeakers. `#[serde(default)]`: snapshots taken before a field existed load
/// with it empty, which is what their events had made it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Loudspeakers {
    relay: bool,
    /// Each cluster's last reported status.
    clusters: BTreeMap<String, ClusterStatus>,
    playing: BTreeSet<String>,
    // Left out of snapshots while empty, so a room without them has the state it had before
    // they existed (events/tests/replay.rs compares states with an old log's).
    /// Clusters added through the API: their configuration.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    added: BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    scheduled: BTreeMap<String, Scheduled>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    files: BTreeMap<String, StoredFile>,
}

/// `NAME.wav`, `NAME.opus` or `NAME.ogg`, NAME an [`id`]: safe as a file name.
fn file_field(v: &str) -> Result<(), Invalid> {
    let (stem, ext) = v.rsplit_once('.').unwrap_or((v, ""));
    id("file", stem)?;
    if matches!(ext, "wav" | "opus" | "ogg") {
        Ok(())
    } else {
        Err(Invalid {
            field: "file",
            reason: "NAME.wav, NAME.opus or NAME.ogg".into(),
        })
    }
}

/// At most [`MAX_CLUSTERS`] cluster ids.
fn clusters_field(clusters: &[String]) -> Result<(), Invalid> {
    if clusters.len() > MAX_CLUSTERS {
        return Err(Invalid {
            field: "clusters",
            reason: format!("at most {MAX_CLUSTERS}"),
        });
    }
    clusters.iter().try_for_each(|c| id("clusters", c))
}

impl Loudspeakers {
    /// Whether the relay runs.
    pub fn relay(&self) -> bool {
        self.relay
    }

    /// Clusters added through the API (and not removed): id and configuration.
    pub fn added_clusters(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.added
    }

    /// Announcements scheduled and not yet started, cancelled or ended.
    pub fn scheduled(&self) -> &BTreeMap<String, Scheduled> {
        &self.scheduled
    }

    /// The room's files and their identity.
    pub fn files(&self) -> &BTreeMap<String, StoredFile> {
        &self.files
    }

    /// Announcements playing, as the bridge last reported.
    pub fn playing(&self) -> &BTreeSet<String> {
        &self.playing
    }

    fn needed_by(&self, what: impl Fn(&Scheduled) -> bool) -> Option<&String> {
        self.scheduled
            .iter()
            .find(|(_, s)| what(s))
            .map(|(id, _)| id)
    }
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
        let chair = [ActorRole::Chair];
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
                clusters_field(clusters)?;
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
                // A playing announcement ends played or stopped; one that never started
                // (still scheduled) is missed or failed.
                let playing = self.playing.contains(announcement);
                let never_played = matches!(how, Ending::Missed | Ending::Failed);
                if playing && never_played {
                    return Err(Invalid {
                        field: "how",
                        reason: "a playing announcement ends played or stopped".into(),
                    }
                    .into());
                }
                let scheduled = self.scheduled.contains_key(announcement);
                if !(playing || never_played && scheduled) {
                    return Err(LoudspeakerError::NotPlaying(announcement.clone()));
                }
                Ok(vec![E::AnnouncementEnded {
                    announcement: announcement.clone(),
                    how: *how,
                }])
            }
            A::AddCluster { cluster, config } => {
                require_role(&cmd.actor, &chair, "add a cluster")?;
                id("cluster", cluster)?;
                let invalid = |reason: &str| Invalid {
                    field: "config",
                    reason: reason.into(),
                };
                let obj = config.as_object().ok_or_else(|| invalid("a JSON object"))?;
                if obj.get("id").and_then(|v| v.as_str()) != Some(cluster.as_str()) {
                    return Err(invalid("its id must be the cluster's").into());
                }
                if obj.contains_key("password") {
                    return Err(invalid("no password: secrets stay out of the record").into());
                }
                if config.to_string().len() > MAX_CONFIG_BYTES {
                    return Err(invalid(&format!("at most {MAX_CONFIG_BYTES} bytes")).into());
                }
                if self.added.contains_key(cluster) {
                    return Err(LoudspeakerError::Already(format!(
                        "cluster {cluster} is already added"
                    )));
                }
                Ok(vec![E::ClusterAdded {
                    cluster: cluster.clone(),
                    config: config.clone(),
                }])
            }
            A::RemoveCluster { cluster } => {
                require_role(&cmd.actor, &chair, "remove a cluster")?;
                if !self.added.contains_key(cluster) {
                    return Err(LoudspeakerError::NotFound(format!(
                        "there is no cluster '{cluster}' added through the API"
                    )));
                }
                if let Some(id) = self.needed_by(|s| s.clusters.contains(cluster)) {
                    return Err(LoudspeakerError::InUse(format!(
                        "cluster {cluster} is named by scheduled announcement {id}; cancel it first"
                    )));
                }
                Ok(vec![E::ClusterRemoved {
                    cluster: cluster.clone(),
                }])
            }
            A::ScheduleAnnouncement {
                announcement,
                at,
                priority,
                source,
                clusters,
                chime,
            } => {
                require_role(&cmd.actor, &chair, "schedule an announcement")?;
                id("announcement", announcement)?;
                clusters_field(clusters)?;
                if *at <= cmd.at {
                    return Err(Invalid {
                        field: "at",
                        reason: "in the past: play it now instead".into(),
                    }
                    .into());
                }
                match source.strip_prefix("live:") {
                    Some(room) => id("source", room)?,
                    None => {
                        file_field(source)?;
                        if !self.files.contains_key(source) {
                            return Err(LoudspeakerError::NotFound(format!(
                                "there is no file '{source}'; upload it first"
                            )));
                        }
                    }
                }
                if self.scheduled.contains_key(announcement) || self.playing.contains(announcement)
                {
                    return Err(LoudspeakerError::Already(format!(
                        "there is already an announcement {announcement}"
                    )));
                }
                if self.scheduled.len() >= MAX_SCHEDULED {
                    return Err(LoudspeakerError::InUse(format!(
                        "the room has {MAX_SCHEDULED} announcements scheduled; cancel some first"
                    )));
                }
                Ok(vec![E::AnnouncementScheduled {
                    announcement: announcement.clone(),
                    at: *at,
                    priority: *priority,
                    source: source.clone(),
                    clusters: clusters.clone(),
                    chime: *chime,
                    requested_by: cmd.actor.label(),
                }])
            }
            A::CancelAnnouncement { announcement } => {
                require_role(&cmd.actor, &chair, "cancel an announcement")?;
                if !self.scheduled.contains_key(announcement) {
                    return Err(LoudspeakerError::NotFound(format!(
                        "there is no scheduled announcement {announcement}"
                    )));
                }
                Ok(vec![E::AnnouncementCancelled {
                    announcement: announcement.clone(),
                }])
            }
            A::StoreFile {
                file,
                bytes,
                sha256,
                millis,
            } => {
                require_role(&cmd.actor, &chair_or_system, "store a file")?;
                file_field(file)?;
                let hex = sha256.len() == 64
                    && sha256
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
                if !hex {
                    return Err(Invalid {
                        field: "sha256",
                        reason: "64 lowercase hex digits".into(),
                    }
                    .into());
                }
                if *bytes == 0 {
                    return Err(Invalid {
                        field: "bytes",
                        reason: "an empty file".into(),
                    }
                    .into());
                }
                let new = StoredFile {
                    bytes: *bytes,
                    sha256: sha256.clone(),
                    millis: *millis,
                };
                if self.files.get(file) == Some(&new) {
                    return Err(LoudspeakerError::Already(format!(
                        "file {file} is already stored with these bytes"
                    )));
                }
                Ok(vec![E::FileStored {
                    file: file.clone(),
                    bytes: *bytes,
                    sha256: sha256.clone(),
                    millis: *millis,
                }])
            }
            A::RemoveFile { file } => {
                require_role(&cmd.actor, &chair, "remove a file")?;
                if !self.files.contains_key(file) {
                    return Err(LoudspeakerError::NotFound(format!(
                        "there is no file '{file}'"
                    )));
                }
                if let Some(id) = self.needed_by(|s| s.source == *file) {
                    return Err(LoudspeakerError::InUse(format!(
                        "file {file} is scheduled to play in announcement {id}; cancel it first"
                    )));
                }
                Ok(vec![E::FileRemoved { file: file.clone() }])
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
                self.scheduled.remove(announcement);
                self.playing.insert(announcement.clone());
            }
            E::AnnouncementEnded { announcement, .. } => {
                self.scheduled.remove(announcement);
                self.playing.remove(announcement);
            }
            E::ClusterAdded { cluster, config } => {
                self.added.insert(cluster.clone(), config.clone());
            }
            E::ClusterRemoved { cluster } => {
                self.added.remove(cluster);
                self.clusters.remove(cluster);
            }
            E::AnnouncementScheduled {
                announcement,
                at,
                priority,
                source,
                clusters,
                chime,
                requested_by,
            } => {
                self.scheduled.insert(
                    announcement.clone(),
                    Scheduled {
                        at: *at,
                        priority: *priority,
                        source: source.clone(),
                        clusters: clusters.clone(),
                        chime: *chime,
                        requested_by: requested_by.clone(),
                    },
                );
            }
            E::AnnouncementCancelled { announcement } => {
                self.scheduled.remove(announcement);
            }
            E::FileStored {
                file,
                bytes,
                sha256,
                millis,
            } => {
                self.files.insert(
                    file.clone(),
                    StoredFile {
                        bytes: *bytes,
                        sha256: sha256.clone(),
                        millis: *millis,
                    },
                );
            }
            E::FileRemoved { file } => {
                self.files.remove(file);
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
    use crate::domain::testing::{chair, house, official, Given, NOW};
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

    fn stored(file: &str) -> E {
        E::FileStored {
            file: file.into(),
            bytes: 16_044,
            sha256: "ab".repeat(32),
            millis: 1000,
        }
    }

    fn schedule(id: &str, source: &str, clusters: &[&str]) -> A {
        A::ScheduleAnnouncement {
            announcement: id.into(),
            at: NOW + time::Duration::hours(1),
            priority: Priority::Normal,
            source: source.into(),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            chime: true,
        }
    }

    fn scheduled(id: &str, source: &str, clusters: &[&str]) -> E {
        E::AnnouncementScheduled {
            announcement: id.into(),
            at: NOW + time::Duration::hours(1),
            priority: Priority::Normal,
            source: source.into(),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            chime: true,
            requested_by: "chair:chair".into(),
        }
    }

    fn config(id: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "kind": "http"})
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
        let report = |s: ClusterStatus| A::ReportClusterStatus {
            cluster: "thon-3".into(),
            status: s,
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
        let end = |how| A::EndAnnouncement {
            announcement: "flood-1".into(),
            how,
        };
        Given::<Loudspeakers>::events(vec![started("flood-1")])
            .when(bridge(), end(Ending::Played))
            .then(vec![E::AnnouncementEnded {
                announcement: "flood-1".into(),
                how: Ending::Played,
            }]);
        Given::<Loudspeakers>::events(vec![])
            .when(bridge(), end(Ending::Played))
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
    fn words_the_record_does_not_know_are_refused_when_the_command_is_read() {
        for (json, word) in [
            (
                r#"{"type":"start_announcement","announcement":"x","priority":"loud","source":"a.wav","clusters":[],"requested_by":"c"}"#,
                "emergency",
            ),
            (
                r#"{"type":"report_cluster_status","cluster":"x","status":"sideways","reason":""}"#,
                "`down`",
            ),
            (
                r#"{"type":"end_announcement","announcement":"x","how":"vanished"}"#,
                "missed",
            ),
        ] {
            let e = serde_json::from_str::<A>(json).unwrap_err().to_string();
            assert!(e.contains(word), "{json}: {e}");
        }
        // The words of logs written before these were enums still read.
        let old: E = serde_json::from_str(
            r#"{"type":"announcement_ended","announcement":"x","how":"stopped"}"#,
        )
        .unwrap();
        assert_eq!(
            old,
            E::AnnouncementEnded {
                announcement: "x".into(),
                how: Ending::Stopped
            }
        );
    }

    #[test]
    fn a_cluster_added_through_the_api_is_kept_without_its_secrets_until_removed() {
        Given::<Loudspeakers>::events(vec![])
            .when(
                chair(),
                A::AddCluster {
                    cluster: "loa-1".into(),
                    config: config("loa-1"),
                },
            )
            .then(vec![E::ClusterAdded {
                cluster: "loa-1".into(),
                config: config("loa-1"),
            }]);
        let with_password = serde_json::json!({"id": "ice", "kind": "icecast", "password": "x"});
        Given::<Loudspeakers>::events(vec![])
            .when(
                chair(),
                A::AddCluster {
                    cluster: "ice".into(),
                    config: with_password,
                },
            )
            .then_error("invalid config: no password: secrets stay out of the record");
        Given::<Loudspeakers>::events(vec![])
            .when(
                chair(),
                A::AddCluster {
                    cluster: "loa-1".into(),
                    config: config("loa-2"),
                },
            )
            .then_error("invalid config: its id must be the cluster's");
        Given::<Loudspeakers>::events(vec![])
            .when(
                official("can-bo-1"),
                A::AddCluster {
                    cluster: "loa-1".into(),
                    config: config("loa-1"),
                },
            )
            .then_error("an official may not add a cluster");
        let added = E::ClusterAdded {
            cluster: "loa-1".into(),
            config: config("loa-1"),
        };
        Given::<Loudspeakers>::events(vec![added.clone()])
            .when(
                chair(),
                A::RemoveCluster {
                    cluster: "loa-1".into(),
                },
            )
            .then(vec![E::ClusterRemoved {
                cluster: "loa-1".into(),
            }]);
        Given::<Loudspeakers>::events(vec![])
            .when(
                chair(),
                A::RemoveCluster {
                    cluster: "loa-1".into(),
                },
            )
            .then_error("there is no cluster 'loa-1' added through the API");
        // Not while a scheduled announcement names it.
        Given::<Loudspeakers>::events(vec![
            added,
            stored("a.wav"),
            scheduled("sang", "a.wav", &["loa-1"]),
        ])
        .when(
            chair(),
            A::RemoveCluster {
                cluster: "loa-1".into(),
            },
        )
        .then_error("cluster loa-1 is named by scheduled announcement sang; cancel it first");
    }

    #[test]
    fn a_chair_schedules_a_stored_file_for_later_and_the_record_says_who() {
        Given::<Loudspeakers>::events(vec![stored("ban-tin.wav")])
            .when(chair(), schedule("sang", "ban-tin.wav", &["thon-1"]))
            .then(vec![scheduled("sang", "ban-tin.wav", &["thon-1"])]);
        Given::<Loudspeakers>::events(vec![])
            .when(chair(), schedule("sang", "live:demo", &[]))
            .then(vec![scheduled("sang", "live:demo", &[])]);
        Given::<Loudspeakers>::events(vec![])
            .when(chair(), schedule("sang", "ban-tin.wav", &[]))
            .then_error("there is no file 'ban-tin.wav'; upload it first");
        Given::<Loudspeakers>::events(vec![stored("ban-tin.wav")])
            .when_at(
                NOW + time::Duration::hours(2),
                chair(),
                schedule("sang", "ban-tin.wav", &[]),
            )
            .then_error("invalid at: in the past: play it now instead");
        Given::<Loudspeakers>::events(vec![
            stored("ban-tin.wav"),
            scheduled("sang", "ban-tin.wav", &[]),
        ])
        .when(chair(), schedule("sang", "ban-tin.wav", &[]))
        .then_error("there is already an announcement sang");
        Given::<Loudspeakers>::events(vec![stored("ban-tin.wav")])
            .when(house("house-1"), schedule("sang", "ban-tin.wav", &[]))
            .then_error("a house may not schedule an announcement");
    }

    #[test]
    fn a_room_holds_a_bounded_number_of_scheduled_announcements() {
        let mut past = vec![stored("a.wav")];
        past.extend((0..MAX_SCHEDULED).map(|i| scheduled(&format!("s{i}"), "a.wav", &[])));
        Given::<Loudspeakers>::events(past)
            .when(chair(), schedule("one-more", "a.wav", &[]))
            .then_error("the room has 500 announcements scheduled; cancel some first");
    }

    #[test]
    fn a_scheduled_announcement_is_cancelled_or_starts_or_is_missed_once() {
        let past = || vec![stored("a.wav"), scheduled("sang", "a.wav", &[])];
        Given::<Loudspeakers>::events(past())
            .when(
                chair(),
                A::CancelAnnouncement {
                    announcement: "sang".into(),
                },
            )
            .then(vec![E::AnnouncementCancelled {
                announcement: "sang".into(),
            }]);
        let cancelled = E::AnnouncementCancelled {
            announcement: "sang".into(),
        };
        Given::<Loudspeakers>::events([past(), vec![cancelled]].concat())
            .when(
                chair(),
                A::CancelAnnouncement {
                    announcement: "sang".into(),
                },
            )
            .then_error("there is no scheduled announcement sang");
        // Missed while the hub was off: ended without having started.
        let missed = A::EndAnnouncement {
            announcement: "sang".into(),
            how: Ending::Missed,
        };
        Given::<Loudspeakers>::events(past())
            .when(bridge(), missed.clone())
            .then(vec![E::AnnouncementEnded {
                announcement: "sang".into(),
                how: Ending::Missed,
            }]);
        // Once started it is no longer scheduled: it cannot be missed nor cancelled.
        Given::<Loudspeakers>::events([past(), vec![started("sang")]].concat())
            .when(bridge(), missed)
            .then_error("invalid how: a playing announcement ends played or stopped");
        Given::<Loudspeakers>::events([past(), vec![started("sang")]].concat())
            .when(
                chair(),
                A::CancelAnnouncement {
                    announcement: "sang".into(),
                },
            )
            .then_error("there is no scheduled announcement sang");
    }

    #[test]
    fn files_are_stored_with_their_identity_and_not_removed_while_scheduled() {
        let store = |sha: &str| A::StoreFile {
            file: "a.wav".into(),
            bytes: 16_044,
            sha256: sha.into(),
            millis: 1000,
        };
        Given::<Loudspeakers>::events(vec![])
            .when(chair(), store(&"ab".repeat(32)))
            .then(vec![stored("a.wav")]);
        Given::<Loudspeakers>::events(vec![stored("a.wav")])
            .when(chair(), store(&"ab".repeat(32)))
            .then_error("file a.wav is already stored with these bytes");
        Given::<Loudspeakers>::events(vec![])
            .when(chair(), store("ABC"))
            .then_error("invalid sha256: 64 lowercase hex digits");
        Given::<Loudspeakers>::events(vec![])
            .when(
                chair(),
                A::StoreFile {
                    file: "../a.wav".into(),
                    bytes: 1,
                    sha256: "ab".repeat(32),
                    millis: 1,
                },
            )
            .then_error("invalid file: 1 to 64 letters, digits, '-' or '_'");
        let remove = A::RemoveFile {
            file: "a.wav".into(),
        };
        Given::<Loudspeakers>::events(vec![stored("a.wav")])
            .when(chair(), remove.clone())
            .then(vec![E::FileRemoved {
                file: "a.wav".into(),
            }]);
        Given::<Loudspeakers>::events(vec![stored("a.wav"), scheduled("sang", "a.wav", &[])])
            .when(chair(), remove.clone())
            .then_error("file a.wav is scheduled to play in announcement sang; cancel it first");
        Given::<Loudspeakers>::events(vec![])
            .when(chair(), remove)
            .then_error("there is no file 'a.wav'");
    }

    #[test]
    fn a_snapshot_from_before_the_new_facts_still_loads() {
        // The shape snapshots had before clusters, schedules and files were kept.
        let old = r#"{"relay":true,"clusters":{"thon-1":"down"},"playing":["lu"]}"#;
        let s: Loudspeakers = serde_json::from_str(old).unwrap();
        assert!(s.relay());
        assert!(s.playing().contains("lu"));
        assert!(s.scheduled().is_empty() && s.files().is_empty());
    }
}
