//! What the loudspeakers are to play and when: scheduled announcements, the running ones'
//! bookkeeping, announcement ids, and the chime when a relay starts. Pure: the wall clock
//! comes in as `now`, and what to do comes out as [`Step`]s and events, so "a bulletin plays
//! at its time" is a unit test in virtual time (STYLE habit 1). The driver (`bridge.rs`) owns
//! the engine, the files and the 20 ms tick, and only moves data between them and this.
//!
//! # A scheduled announcement's life
//! ```text
//! schedule ─► waiting ─(prepare_ahead before its time, a file)─► Step::Load ─► loading
//!   loading ─(the driver: loaded)─► ready ─(its time)─► Step::Start ─► running ─► Ended
//!   any stage ─(its time + late_grace passed: the hub was off)─► Step::Missed
//!   loading ─(the file would not decode)─► Ended { how: Failed }
//! ```
//! A live source (a room's voice) needs no loading and starts at its time.
//!
//! # Invariants
//! - An id is planned or running, never both, and never twice; a new one is refused.
//! - Every announcement belongs to one room, and a request naming another room finds
//!   nothing: a chair can neither see, stop nor cancel another room's announcements.
//! - Every started announcement ends exactly once (played, stopped, missed or failed); the
//!   chime is no announcement of its own and has no events.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::clip::Clip;
use crate::engine::{Announcement, Priority, Source, Targets};

/// How the programme behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgrammeSettings {
    /// Play the chime on a room's clusters when its relay starts.
    pub chime: bool,
    /// Decode a scheduled file this long before its time, so that it starts on time.
    pub prepare_ahead: Duration,
    /// A scheduled announcement found this late (the hub was off at its time) still plays;
    /// later than this it is missed: a morning bulletin is not played at night.
    pub late_grace: Duration,
}

impl Default for ProgrammeSettings {
    fn default() -> Self {
        Self {
            chime: true,
            prepare_ahead: Duration::from_secs(30),
            late_grace: Duration::from_secs(300),
        }
    }
}

/// Where a planned announcement's audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    /// A file of the room's, by name; decoded shortly before it plays.
    File(String),
    /// A room's live voice.
    Live(String),
}

impl Audio {
    /// As the record and the API name it: the file name, or `live:ROOM`.
    pub fn label(&self) -> String {
        match self {
            Audio::File(f) => f.clone(),
            Audio::Live(r) => format!("live:{r}"),
        }
    }
}

/// An announcement to play at a given time.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Unique among planned and running announcements (see [`announcement_id`]).
    pub id: String,
    /// The room it belongs to; it plays only on that room's outputs.
    pub room: String,
    /// When to play it (wall clock).
    pub at: SystemTime,
    /// Its priority over the meeting and other announcements.
    pub priority: Priority,
    /// What it plays.
    pub audio: Audio,
    /// Cluster ids of the room; empty for every output of the room.
    pub clusters: Vec<String>,
    /// Whether the chime plays first.
    pub chime: bool,
    /// Who asked for it, as the record names actors (`role:id`).
    pub requested_by: String,
}

impl Planned {
    /// The outputs it plays on.
    pub fn targets(&self) -> Targets {
        targets(&self.room, &self.clusters)
    }
}

/// The outputs an announcement of `room` naming `clusters` plays on.
pub fn targets(room: &str, clusters: &[String]) -> Targets {
    if clusters.is_empty() {
        Targets::Room(room.to_owned())
    } else {
        Targets::Outputs(clusters.to_vec())
    }
}

/// How an announcement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// It played to its end.
    Played,
    /// Someone stopped or cancelled it while it played.
    Stopped,
    /// Its time passed more than `late_grace` ago: it never played.
    Missed,
    /// Its file could not be decoded, or its clusters are gone: it never played.
    Failed,
}

impl How {
    /// Lowercase name, as the record stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            How::Played => "played",
            How::Stopped => "stopped",
            How::Missed => "missed",
            How::Failed => "failed",
        }
    }
}

/// An announcement that started: what the record is told.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Started {
    /// Announcement id.
    pub id: String,
    /// The room whose outputs it plays on.
    pub room: String,
    /// Its priority.
    pub priority: Priority,
    /// Cluster ids; empty for every output of the room.
    pub clusters: Vec<String>,
    /// A file name, or `live:ROOM`.
    pub source: String,
    /// Who asked for it (`role:id`).
    pub requested_by: String,
}

/// An announcement that ended (or will never play): what the record is told.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ended {
    /// Announcement id.
    pub id: String,
    /// The room it belonged to.
    pub room: String,
    /// Why it ended.
    pub how: How,
}

/// What the driver must do after [`Programme::poll`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Decode this file of the room's now (off the tick), then call [`Programme::loaded`].
    Load {
        /// Announcement id.
        id: String,
        /// The room whose file it is.
        room: String,
        /// File name.
        file: String,
    },
    /// Start this announcement now: its time has come and its audio is ready. Call
    /// [`Programme::started`] once the engine took it, [`Programme::failed`] otherwise.
    Start(Planned),
    /// It will not play; tell the record.
    Missed(Ended),
}

/// Why the programme refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProgrammeError {
    /// The id is taken by a planned or running announcement; choose another.
    #[error("there is already an announcement '{0}'")]
    Exists(String),
    /// No announcement of that id in that room (another room's are not seen).
    #[error("there is no announcement '{0}'")]
    NotFound(String),
}

/// What [`Programme::loaded`] says to do with a decoded file.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterLoad {
    /// Keep the clip until the announcement starts.
    Keep,
    /// The announcement was cancelled meanwhile: drop the clip.
    Discard,
    /// The file could not be decoded: tell the record.
    Failed(Ended),
}

/// What [`Programme::cancel`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    /// It had not started: it is gone, and the driver drops any clip loaded for it.
    Planned(Planned),
    /// It was playing: stop it in the engine and tell the record.
    Running(Ended),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Waiting,
    Loading,
    Ready,
}

/// A scheduled announcement as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledView {
    /// Announcement id.
    pub id: String,
    /// When it plays, seconds since the Unix epoch.
    pub at_unix: u64,
    /// Its priority.
    pub priority: Priority,
    /// Cluster ids; empty for every output of the room.
    pub clusters: Vec<String>,
    /// A file name, or `live:ROOM`.
    pub source: String,
}

/// An id for an announcement asked for with none: `a` + milliseconds since the epoch + a
/// counter, unique across restarts as long as the clock does not go back.
pub fn announcement_id(now: SystemTime, n: u64) -> String {
    let ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("a{ms}-{n}")
}

/// The programme of every room.
#[derive(Debug)]
pub struct Programme {
    settings: ProgrammeSettings,
    planned: BTreeMap<String, (Planned, Stage)>,
    running: BTreeMap<String, String>,
    chimes: u64,
}

impl Programme {
    /// An empty programme.
    pub fn new(settings: ProgrammeSettings) -> Self {
        Self {
            settings,
            planned: BTreeMap::new(),
            running: BTreeMap::new(),
            chimes: 0,
        }
    }

    /// Whether the id is planned or running.
    pub fn knows(&self, id: &str) -> bool {
        self.planned.contains_key(id) || self.running.contains_key(id)
    }

    /// Plan an announcement for its time.
    pub fn schedule(&mut self, p: Planned) -> Result<(), ProgrammeError> {
        if self.knows(&p.id) {
            return Err(ProgrammeError::Exists(p.id));
        }
        self.planned.insert(p.id.clone(), (p, Stage::Waiting));
        Ok(())
    }

    /// Cancel a planned announcement of `room`, or stop a running one.
    pub fn cancel(&mut self, room: &str, id: &str) -> Result<Cancelled, ProgrammeError> {
        if self.planned.get(id).is_some_and(|(p, _)| p.room == room) {
            let (p, _) = self.planned.remove(id).expect("checked above");
            return Ok(Cancelled::Planned(p));
        }
        self.stop(room, id).map(Cancelled::Running)
    }

    /// Stop a running announcement of `room`; the driver stops it in the engine.
    pub fn stop(&mut self, room: &str, id: &str) -> Result<Ended, ProgrammeError> {
        if self.running.get(id).is_some_and(|r| r == room) {
            self.running.remove(id);
            return Ok(Ended {
                id: id.to_owned(),
                room: room.to_owned(),
                how: How::Stopped,
            });
        }
        Err(ProgrammeError::NotFound(id.to_owned()))
    }

    /// What to do now: files to decode, announcements to start, ones missed.
    pub fn poll(&mut self, now: SystemTime) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut done = Vec::new();
        for (id, (p, stage)) in &mut self.planned {
            if now >= p.at + self.settings.late_grace {
                done.push(id.clone());
                steps.push(Step::Missed(Ended {
                    id: id.clone(),
                    room: p.room.clone(),
                    how: How::Missed,
                }));
                continue;
            }
            let ready = match &p.audio {
                Audio::Live(_) => true,
                Audio::File(file) => {
                    if *stage == Stage::Waiting && now + self.settings.prepare_ahead >= p.at {
                        *stage = Stage::Loading;
                        steps.push(Step::Load {
                            id: id.clone(),
                            room: p.room.clone(),
                            file: file.clone(),
                        });
                    }
                    *stage == Stage::Ready
                }
            };
            if ready && now >= p.at {
                done.push(id.clone());
                steps.push(Step::Start(p.clone()));
            }
        }
        for id in done {
            self.planned.remove(&id);
        }
        steps
    }

    /// The driver decoded (`ok`) or failed to decode the file of a planned announcement.
    pub fn loaded(&mut self, id: &str, ok: bool) -> AfterLoad {
        let Some((p, stage)) = self.planned.get_mut(id) else {
            return AfterLoad::Discard;
        };
        if ok {
            *stage = Stage::Ready;
            return AfterLoad::Keep;
        }
        let ended = Ended {
            id: id.to_owned(),
            room: p.room.clone(),
            how: How::Failed,
        };
        self.planned.remove(id);
        AfterLoad::Failed(ended)
    }

    /// The engine took an announcement (a started [`Step::Start`], or one asked for now):
    /// it is running until [`Programme::finished`] or [`Programme::stop`].
    pub fn started(
        &mut self,
        id: &str,
        room: &str,
        priority: Priority,
        clusters: &[String],
        source: String,
        requested_by: &str,
    ) -> Started {
        self.running.insert(id.to_owned(), room.to_owned());
        Started {
            id: id.to_owned(),
            room: room.to_owned(),
            priority,
            clusters: clusters.to_vec(),
            source,
            requested_by: requested_by.to_owned(),
        }
    }

    /// A [`Step::Start`] the engine refused (its clusters are gone).
    pub fn failed(&mut self, p: &Planned) -> Ended {
        Ended {
            id: p.id.clone(),
            room: p.room.clone(),
            how: How::Failed,
        }
    }

    /// The engine played an announcement to its end; `None` for what was not one of ours
    /// (a chime).
    pub fn finished(&mut self, id: &str) -> Option<Ended> {
        let room = self.running.remove(id)?;
        Some(Ended {
            id: id.to_owned(),
            room,
            how: How::Played,
        })
    }

    /// A room's relay was switched: the chime to play on its clusters, if any.
    pub fn relay_switched(
        &mut self,
        room: &str,
        on: bool,
        clusters: Vec<String>,
    ) -> Option<Announcement> {
        if !on || !self.settings.chime || clusters.is_empty() {
            return None;
        }
        self.chimes += 1;
        Some(Announcement {
            id: format!("chime-{room}-{}", self.chimes),
            priority: Priority::Normal,
            source: Source::Clip(Clip::from_samples(&[])),
            targets: Targets::Outputs(clusters),
            chime: true,
        })
    }

    /// The room of a running announcement.
    pub fn running_room(&self, id: &str) -> Option<&str> {
        self.running.get(id).map(String::as_str)
    }

    /// A room's planned announcements, soonest first.
    pub fn scheduled(&self, room: &str) -> Vec<ScheduledView> {
        let mut v: Vec<ScheduledView> = self
            .planned
            .values()
            .filter(|(p, _)| p.room == room)
            .map(|(p, _)| ScheduledView {
                id: p.id.clone(),
                at_unix: p
                    .at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                priority: p.priority,
                clusters: p.clusters.clone(),
                source: p.audio.label(),
            })
            .collect();
        v.sort_by(|a, b| (a.at_unix, &a.id).cmp(&(b.at_unix, &b.id)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_900_000_000;

    fn t(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_secs_f64(secs)
    }

    fn bulletin(id: &str, room: &str, at: f64) -> Planned {
        Planned {
            id: id.into(),
            room: room.into(),
            at: t(at),
            priority: Priority::Normal,
            audio: Audio::File("ban-tin.wav".into()),
            clusters: vec![],
            chime: false,
            requested_by: "chair:chair@demo".into(),
        }
    }

    fn programme() -> Programme {
        Programme::new(ProgrammeSettings::default())
    }

    /// `id` started in `room` by its chair: `lu.wav`, an emergency, on every cluster.
    fn started_by_chair(p: &mut Programme, id: &str, room: &str) -> Started {
        let by = format!("chair:chair@{room}");
        p.started(id, room, Priority::Emergency, &[], "lu.wav".into(), &by)
    }

    fn load(id: &str) -> Step {
        Step::Load {
            id: id.into(),
            room: "demo".into(),
            file: "ban-tin.wav".into(),
        }
    }

    #[test]
    fn a_bulletin_is_decoded_ahead_and_starts_at_its_time_not_a_tick_before() {
        let mut p = programme();
        p.schedule(bulletin("sang", "demo", 3600.0)).unwrap();
        // Nothing an hour ahead, nor 31 s ahead.
        assert_eq!(p.poll(t(0.0)), []);
        assert_eq!(p.poll(t(3568.9)), []);
        // 30 s ahead: decode its file, once.
        assert_eq!(p.poll(t(3570.0)), [load("sang")]);
        assert_eq!(p.poll(t(3571.0)), []);
        assert_eq!(p.loaded("sang", true), AfterLoad::Keep);
        // Ready, but not yet its time: 20 ms before, nothing.
        assert_eq!(p.poll(t(3599.98)), []);
        assert_eq!(
            p.poll(t(3600.0)),
            [Step::Start(bulletin("sang", "demo", 3600.0))]
        );
        // Started once only.
        assert_eq!(p.poll(t(3600.02)), []);
        assert!(!p.knows("sang"));
    }

    #[test]
    fn a_file_that_loads_late_starts_as_soon_as_it_is_ready() {
        let mut p = programme();
        p.schedule(bulletin("sang", "demo", 10.0)).unwrap();
        assert_eq!(p.poll(t(0.0)), [load("sang")]);
        assert_eq!(p.poll(t(10.0)), []);
        p.loaded("sang", true);
        assert!(matches!(p.poll(t(12.5))[..], [Step::Start(_)]));
    }

    #[test]
    fn a_file_that_does_not_decode_fails_and_is_told_once() {
        let mut p = programme();
        p.schedule(bulletin("sang", "demo", 10.0)).unwrap();
        p.poll(t(0.0));
        assert_eq!(
            p.loaded("sang", false),
            AfterLoad::Failed(Ended {
                id: "sang".into(),
                room: "demo".into(),
                how: How::Failed
            })
        );
        assert_eq!(p.poll(t(10.0)), []);
        assert_eq!(p.loaded("sang", true), AfterLoad::Discard);
    }

    #[test]
    fn found_late_after_a_restart_it_plays_within_the_grace_and_is_missed_after() {
        let mut p = programme();
        // The hub comes back 2 minutes after a bulletin's time: it still plays.
        p.schedule(bulletin("late", "demo", 0.0)).unwrap();
        assert_eq!(p.poll(t(120.0)), [load("late")]);
        p.loaded("late", true);
        assert!(matches!(p.poll(t(121.0))[..], [Step::Start(_)]));
        // Six minutes late: missed, never loaded.
        p.schedule(bulletin("old", "demo", 0.0)).unwrap();
        assert_eq!(
            p.poll(t(360.0)),
            [Step::Missed(Ended {
                id: "old".into(),
                room: "demo".into(),
                how: How::Missed
            })]
        );
        assert!(!p.knows("old"));
    }

    #[test]
    fn a_live_announcement_needs_no_loading() {
        let mut p = programme();
        let mut live = bulletin("loa", "demo", 5.0);
        live.audio = Audio::Live("demo".into());
        p.schedule(live.clone()).unwrap();
        assert_eq!(p.poll(t(4.9)), []);
        assert_eq!(p.poll(t(5.0)), [Step::Start(live)]);
    }

    #[test]
    fn ids_are_unique_among_planned_and_running() {
        let mut p = programme();
        p.schedule(bulletin("x", "demo", 5.0)).unwrap();
        assert_eq!(
            p.schedule(bulletin("x", "demo", 9.0)),
            Err(ProgrammeError::Exists("x".into()))
        );
        started_by_chair(&mut p, "y", "demo");
        assert_eq!(
            p.schedule(bulletin("y", "demo", 9.0)),
            Err(ProgrammeError::Exists("y".into()))
        );
        let a = announcement_id(t(0.0), 1);
        assert_eq!(a, format!("a{}-1", T0 * 1000));
        assert_ne!(a, announcement_id(t(0.001), 1));
        assert!(crate::config::valid_id(&a));
    }

    #[test]
    fn another_room_can_neither_see_nor_cancel_nor_stop_an_announcement() {
        let mut p = programme();
        p.schedule(bulletin("sang", "xom-2", 60.0)).unwrap();
        started_by_chair(&mut p, "lu", "xom-2");
        assert_eq!(p.scheduled("demo"), []);
        assert_eq!(p.scheduled("xom-2").len(), 1);
        assert_eq!(
            p.cancel("demo", "sang"),
            Err(ProgrammeError::NotFound("sang".into()))
        );
        assert_eq!(
            p.stop("demo", "lu"),
            Err(ProgrammeError::NotFound("lu".into()))
        );
        assert!(p.knows("sang") && p.running_room("lu") == Some("xom-2"));
        // Its own room's chair can.
        assert!(matches!(
            p.cancel("xom-2", "sang"),
            Ok(Cancelled::Planned(_))
        ));
        assert_eq!(
            p.cancel("xom-2", "lu"),
            Ok(Cancelled::Running(Ended {
                id: "lu".into(),
                room: "xom-2".into(),
                how: How::Stopped
            }))
        );
    }

    #[test]
    fn a_cancelled_bulletin_never_starts_and_its_clip_is_dropped() {
        let mut p = programme();
        p.schedule(bulletin("sang", "demo", 10.0)).unwrap();
        p.poll(t(0.0));
        p.cancel("demo", "sang").unwrap();
        assert_eq!(p.loaded("sang", true), AfterLoad::Discard);
        assert_eq!(p.poll(t(10.0)), []);
    }

    #[test]
    fn every_announcement_ends_once_and_the_chime_is_not_one() {
        let mut p = programme();
        started_by_chair(&mut p, "lu", "demo");
        assert_eq!(
            p.finished("lu"),
            Some(Ended {
                id: "lu".into(),
                room: "demo".into(),
                how: How::Played
            })
        );
        assert_eq!(p.finished("lu"), None);
        assert_eq!(
            p.stop("demo", "lu"),
            Err(ProgrammeError::NotFound("lu".into()))
        );
        let chime = p
            .relay_switched("demo", true, vec!["thon-1".into()])
            .expect("a chime");
        assert_eq!(chime.targets, Targets::Outputs(vec!["thon-1".into()]));
        assert!(chime.chime);
        assert_eq!(p.finished(&chime.id), None);
    }

    #[test]
    fn the_chime_plays_when_a_relay_starts_on_a_room_with_clusters_if_wanted() {
        let mut p = programme();
        assert!(p.relay_switched("demo", false, vec!["a".into()]).is_none());
        assert!(p.relay_switched("demo", true, vec![]).is_none());
        let a = p.relay_switched("demo", true, vec!["a".into()]).unwrap();
        let b = p.relay_switched("demo", true, vec!["a".into()]).unwrap();
        assert_ne!(a.id, b.id);
        let mut quiet = Programme::new(ProgrammeSettings {
            chime: false,
            ..Default::default()
        });
        assert!(quiet
            .relay_switched("demo", true, vec!["a".into()])
            .is_none());
    }

    #[test]
    fn the_list_is_soonest_first_and_names_files_and_live_rooms() {
        let mut p = programme();
        p.schedule(bulletin("b", "demo", 20.0)).unwrap();
        let mut live = bulletin("a", "demo", 30.0);
        live.audio = Audio::Live("demo".into());
        p.schedule(live).unwrap();
        p.schedule(bulletin("c", "demo", 10.0)).unwrap();
        let v = p.scheduled("demo");
        let ids: Vec<&str> = v.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(v[0].at_unix, T0 + 10);
        assert_eq!(v[2].source, "live:demo");
    }
}
