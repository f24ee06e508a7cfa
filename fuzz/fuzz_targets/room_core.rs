//! The room's core as a state machine fed by outsiders (sessions joining and leaving, media
//! connecting, publishers' streams and packets, floor commands, the clock): whatever the
//! order, it never panics, and what it decides stays consistent with a small model of it:
//! - a house is shown connected exactly when its newest session's media came up;
//! - a packet goes only onto the slot its source feeds, the floor's audio only for the holder
//!   while it is not muted;
//! - a keyframe request names a stream its source has sent or opened;
//! - once the time it asked for has been handed over, nothing is due before it again.
#![no_main]
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use dinh_sfu::forward::{InHeader, SourceId};
use dinh_sfu::keyframe::VideoCodec;
use dinh_sfu::room::{FloorCommand, KeyframeRequest, Restored, Role, RoomCore, Slot};
use libfuzzer_sys::fuzz_target;

const MEMBERS: [&str; 4] = ["chair", "h1", "h2", "h3"];
const RIDS: [Option<&str>; 5] = [None, Some("q"), Some("h"), Some("f"), Some("x")];

struct Model {
    /// member -> (newest conn, media up)
    members: HashMap<&'static str, (u64, bool)>,
    /// source -> (conn, owner, streams seen or opened)
    sources: HashMap<SourceId, (u64, &'static str, HashSet<u32>)>,
    conns: Vec<u64>,
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut core = RoomCore::new(VideoCodec::Vp8, Duration::from_millis(500));
    let mut m = Model {
        members: HashMap::new(),
        sources: HashMap::new(),
        conns: Vec::new(),
    };
    let mut next_conn = 1u64;
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    let check_requests = |m: &Model, requests: &[KeyframeRequest]| {
        for r in requests {
            let (_, _, streams) = m.sources.get(&r.source).expect("a request for a known source");
            assert!(streams.contains(&r.ssrc), "a request for a stream never seen");
        }
    };
    while let Some(op) = next() {
        let a = next().unwrap_or(0);
        let b = next().unwrap_or(0);
        let member = MEMBERS[usize::from(a) % MEMBERS.len()];
        let conn_of = |m: &Model, i: u8| m.conns.get(usize::from(i) % m.conns.len().max(1)).copied();
        let source_of = |m: &Model, i: u8| {
            let mut ids: Vec<SourceId> = m.sources.keys().copied().collect();
            ids.sort_unstable();
            ids.get(usize::from(i) % ids.len().max(1)).copied()
        };
        match op % 12 {
            0 => {
                let conn = next_conn;
                next_conn += 1;
                let role = if member == "chair" { Role::Chair } else { Role::House };
                let old = core.join(member, conn, member, role);
                let expected = m.members.get(member).map(|(c, _)| *c);
                assert_eq!(old, expected, "the replaced session is the previous one");
                m.members.insert(member, (conn, false));
                m.conns.push(conn);
            }
            1 => {
                if let Some(conn) = conn_of(&m, b) {
                    let changed = core.media_connected(conn);
                    let entry = m.members.values_mut().find(|(c, _)| *c == conn);
                    let expected = entry.as_ref().is_some_and(|(_, up)| !up);
                    assert_eq!(changed, expected);
                    if let Some((_, up)) = entry {
                        *up = true;
                    }
                }
            }
            2 => {
                if let Some(conn) = conn_of(&m, b) {
                    let (_, requests) = core.leave(member, conn, now);
                    if m.members.get(member).is_some_and(|(c, _)| *c == conn) {
                        m.members.remove(member);
                    }
                    m.sources.retain(|_, (c, _, _)| *c != conn);
                    check_requests(&m, &requests);
                }
            }
            3 => {
                if let Some(conn) = conn_of(&m, b) {
                    let role = if member == "chair" { Role::Chair } else { Role::House };
                    let (id, requests) = core.add_source(conn, member, role, a & 0x10 != 0, now);
                    assert!(!m.sources.contains_key(&id), "source ids are not reused");
                    m.sources.insert(id, (conn, member, HashSet::new()));
                    check_requests(&m, &requests);
                }
            }
            4 => {
                if let Some(id) = source_of(&m, a) {
                    let ssrc = u32::from(b % 8) + 100;
                    let rid = RIDS[usize::from(next().unwrap_or(0)) % RIDS.len()];
                    let requests = core.open_layer(id, ssrc, rid, now);
                    if let Some((_, _, streams)) = m.sources.get_mut(&id) {
                        streams.insert(ssrc);
                    }
                    check_requests(&m, &requests);
                }
            }
            5 => {
                if let Some(id) = source_of(&m, a) {
                    let requests = core.remove_source(id, now);
                    m.sources.remove(&id);
                    check_requests(&m, &requests);
                }
            }
            6 => {
                if let Some(id) = source_of(&m, a) {
                    let ssrc = u32::from(b % 8) + 100;
                    let seq = u16::from_be_bytes([next().unwrap_or(0), next().unwrap_or(0)]);
                    let len = usize::from(next().unwrap_or(0) % 4);
                    let payload: Vec<u8> = (0..len).map(|_| next().unwrap_or(0)).collect();
                    let h = InHeader {
                        ssrc,
                        seq,
                        ts: u32::from(seq).wrapping_mul(960),
                    };
                    let routed = core.on_rtp(id, h, &payload, now);
                    // Without simulcast a new SSRC from a source becomes its stream.
                    if let Some((_, _, streams)) = m.sources.get_mut(&id) {
                        streams.insert(ssrc);
                    }
                    if let Some(r) = routed {
                        assert!(!payload.is_empty(), "padding is not forwarded");
                        assert_eq!(core.slot_source(r.slot), Some(id), "onto its own slot");
                        if r.slot == Slot::FloorAudio {
                            let state = core.state();
                            let owner = m.sources[&id].1;
                            assert_eq!(state.floor.as_deref(), Some(owner), "only the holder");
                            let muted = state.houses.iter().any(|h| h.id == owner && h.muted);
                            assert!(!muted, "never a muted holder");
                        }
                    }
                }
            }
            7 => {
                let house = MEMBERS[1 + usize::from(a) % 3].to_owned();
                let command = match b % 5 {
                    0 => FloorCommand::RaiseHand(house),
                    1 => FloorCommand::LowerHand(house),
                    2 => FloorCommand::Grant(house),
                    3 => FloorCommand::Revoke,
                    _ => FloorCommand::Mute(house, a & 0x80 != 0),
                };
                if let Ok((_, requests)) = core.floor(command, now) {
                    check_requests(&m, &requests);
                }
            }
            8 => {
                let slot = Slot::ALL[usize::from(a) % 4];
                if let Some(r) = core.request_keyframe(slot, b % 4, now) {
                    check_requests(&m, &[r]);
                }
            }
            9 => {
                let requests = core.handle_timeout(now);
                check_requests(&m, &requests);
                if let Some(t) = core.poll_timeout() {
                    assert!(t > now, "nothing due is left behind");
                }
            }
            10 => {
                let floor = (a & 1 == 1).then(|| member.to_owned());
                let muted = vec![MEMBERS[usize::from(b) % 4].to_owned()];
                let requests = core.restore(Restored::floor(floor).with_muted(muted), now);
                check_requests(&m, &requests);
            }
            _ => {
                now += Duration::from_millis(u64::from(a) * 8 + u64::from(b));
            }
        }
        // Connected exactly when the newest session's media came up.
        let state = core.state();
        for h in &state.houses {
            let expected = m
                .members
                .get(h.id.as_str())
                .is_some_and(|(_, up)| *up);
            assert_eq!(h.connected, expected, "{}", h.id);
        }
        assert_eq!(core.member_count(), m.members.len());
    }
});
