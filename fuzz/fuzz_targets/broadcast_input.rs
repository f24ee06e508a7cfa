//! What the loudspeaker bridge takes from outside: datagrams arriving on an RTP output's
//! socket (RTCP reports, or anything), announcement files, cluster configurations, Opus
//! payloads from publishers, and the requests that drive the programme. None may panic; a
//! file that decodes gives finite samples, and measuring it (what an upload does) agrees
//! with decoding it; the programme keeps its invariants whatever it is asked.
#![no_main]
use libfuzzer_sys::fuzz_target;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use dinh_broadcast::clip::{inspect, Clip};
use dinh_broadcast::config::ClusterConfig;
use dinh_broadcast::engine::Priority;
use dinh_broadcast::jitter::OpusInput;
use dinh_broadcast::programme::{
    AfterLoad, Audio, Cancelled, Planned, Programme, ProgrammeSettings, Step,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 5 {
        0 => {
            for r in dinh_broadcast::rtp::reception_reports(rest) {
                assert!((0.0..1.0).contains(&r.fraction_lost));
            }
        }
        1 => {
            let measured = inspect(rest);
            match Clip::decode(rest) {
                Ok(clip) => {
                    for i in 0..clip.len().min(50) {
                        assert!(clip.frame(i).unwrap().iter().all(|s| s.is_finite()));
                    }
                    let info = measured.expect("decodes but does not measure");
                    assert_eq!(info.frames, clip.len());
                }
                Err(_) => assert!(measured.is_err(), "measures but does not decode"),
            }
        }
        2 => {
            if let Ok(c) = serde_json::from_slice::<ClusterConfig>(rest) {
                let _ = c.validate();
            }
        }
        3 => {
            // Packets of arbitrary bytes and sequence numbers through the jitter buffer.
            let mut input = OpusInput::new();
            let t = std::time::Instant::now();
            let mut out = [0f32; 960];
            for (i, chunk) in rest.chunks(7).enumerate() {
                let seq = u16::from_le_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
                input.push(seq, bytes::Bytes::copy_from_slice(chunk), t);
                if i % 2 == 0 {
                    input.pull(&mut out, t);
                    assert!(out.iter().all(|s| s.is_finite()));
                }
            }
        }
        _ => programme(rest),
    }
});

/// Drive the programme with requests of 4 bytes each (op, id, room, time) and check: an id
/// is never both planned and running, and every announcement ends at most once.
fn programme(ops: &[u8]) {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let mut p = Programme::new(ProgrammeSettings::default());
    let mut now = t0;
    let mut ended: BTreeSet<String> = BTreeSet::new();
    for op in ops.chunks_exact(4) {
        let id = format!("a{}", op[1] % 8);
        let room = if op[2] % 2 == 0 { "demo" } else { "xom-2" };
        let secs = Duration::from_secs(op[3] as u64 * 7);
        match op[0] % 7 {
            0 => {
                let _ = p.schedule(Planned {
                    id: id.clone(),
                    room: room.into(),
                    at: now + secs,
                    priority: Priority::Normal,
                    audio: if op[3] % 3 == 0 {
                        Audio::Live(room.into())
                    } else {
                        Audio::File("f.wav".into())
                    },
                    clusters: vec![],
                    chime: false,
                    requested_by: "chair:chair@demo".into(),
                });
            }
            1 => {
                if let Ok(Cancelled::Running(e)) = p.cancel(room, &id) {
                    end(&mut ended, e.id);
                }
            }
            2 => {
                if let Ok(e) = p.stop(room, &id) {
                    end(&mut ended, e.id);
                }
            }
            3 => {
                if let AfterLoad::Failed(e) = p.loaded(&id, op[3] % 2 == 0) {
                    end(&mut ended, e.id);
                }
            }
            4 => {
                if let Some(e) = p.finished(&id) {
                    end(&mut ended, e.id);
                }
            }
            5 => {
                if !p.knows(&id) {
                    p.started(&id, room, Priority::Emergency, &[], "x.wav".into(), "c");
                }
            }
            _ => {
                now += secs;
                for step in p.poll(now) {
                    match step {
                        Step::Start(planned) => {
                            assert!(now >= planned.at);
                            p.started(&planned.id, &planned.room, planned.priority, &[], planned.audio.label(), "c");
                        }
                        Step::Missed(e) => end(&mut ended, e.id),
                        Step::Load { .. } => {}
                    }
                }
            }
        }
        // Once ended, an id may come back only as a new announcement: forget it then.
        if op[0] % 7 == 0 || op[0] % 7 == 5 {
            ended.remove(&id);
        }
        for room in ["demo", "xom-2"] {
            for v in p.scheduled(room) {
                assert!(p.running_room(&v.id).is_none(), "{} planned and running", v.id);
            }
        }
    }
}

fn end(ended: &mut BTreeSet<String>, id: String) {
    assert!(ended.insert(id.clone()), "{id} ended twice");
}
