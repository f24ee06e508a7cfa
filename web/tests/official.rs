//! The officials' API through the router (no sockets): the register's filters, paging and
//! counts, an item's history, attendance across meetings, the minutes with the checkpoint that
//! covers them, the verification run and the log export; every route against a matrix of roles
//! and rooms; bad input named and refused with nothing appended.
//!
//! The hub's commune here has two rooms, `demo` and `ben-do`, so that "another room" is a real
//! room with meetings of its own.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use clap::ValueEnum;
use common::app::{self, state_in, token_in as token, Answer};
use serde_json::{json, Value};
use time::OffsetDateTime;

use dinh_events::domain::feedback::{FeedbackAction, FeedbackKind};
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::domain::{Actor, ActorRole, Command};
use dinh_web::auth::Role;
use dinh_web::AppState;

/// A hub whose commune has rooms `demo` (houses 1-3) and, with `two_rooms`, `ben-do`.
async fn hub(two_rooms: bool) -> AppState {
    let data = app::data_dir("official");
    std::fs::create_dir_all(&data).unwrap();
    let room = |id: &str, n: usize| {
        json!({"id": id, "title": format!("Phòng {id}"), "houses": (1..=n)
            .map(|i| json!({"id": format!("house-{i}"), "name": format!("Thôn {i}")}))
            .collect::<Vec<_>>()})
    };
    let mut rooms = vec![room("demo", 3)];
    if two_rooms {
        rooms.push(room("ben-do", 2));
    }
    std::fs::write(
        data.join("commune.json"),
        json!({"name": "Xã Thử", "rooms": rooms}).to_string(),
    )
    .unwrap();
    state_in(&data).await
}

async fn call(s: &AppState, method: &str, path: &str, tok: &str) -> Answer {
    app::call(s, method, path, Some(tok), None).await
}

fn actor(role: ActorRole, id: &str) -> Actor {
    Actor::new(role, id)
}

async fn meeting(s: &AppState, id: &str, room: &str, starts_at: OffsetDateTime, agenda: &[&str]) {
    let rec = &s.recording.record;
    let chair = actor(ActorRole::Chair, "chair");
    let schedule = MeetingAction::Schedule {
        room: room.into(),
        title: format!("Họp {id}"),
        starts_at,
        agenda: agenda.iter().map(|a| a.to_string()).collect(),
    };
    rec.meeting(id, Command::new(starts_at, chair.clone(), schedule), None)
        .await
        .unwrap();
    rec.meeting(
        id,
        Command::new(starts_at, chair, MeetingAction::Open),
        None,
    )
    .await
    .unwrap();
}

async fn in_meeting(s: &AppState, id: &str, who: Actor, action: MeetingAction) {
    let now = OffsetDateTime::now_utc();
    s.recording
        .record
        .meeting(id, Command::new(now, who, action), None)
        .await
        .unwrap();
}

async fn raise(s: &AppState, id: &str, meeting: &str, house: &str, content: &str) {
    let action = FeedbackAction::Raise {
        meeting: meeting.into(),
        agenda_item: Some(0),
        house: house.into(),
        content: content.into(),
    };
    let cmd = Command::new(
        OffsetDateTime::now_utc(),
        actor(ActorRole::House, house),
        action,
    );
    s.recording.record.feedback(id, cmd, None).await.unwrap();
}

async fn act(s: &AppState, id: &str, who: Actor, at: OffsetDateTime, action: FeedbackAction) {
    s.recording
        .record
        .feedback(id, Command::new(at, who, action), None)
        .await
        .unwrap();
}

/// Let the projections reach the log's head.
async fn projected(s: &AppState) {
    let head = s.recording.store().head();
    let mut rx = s.recording.projected.subscribe();
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|p| *p >= head))
        .await
        .expect("projections catch up")
        .unwrap();
}

const OFFICIAL: ActorRole = ActorRole::Official;

/// Room `demo`: meeting m1 with twelve items from three houses in known states, one of them
/// overdue since a month; room `ben-do` (when there): meeting b1 with one item.
async fn seed(s: &AppState) {
    let now = OffsetDateTime::now_utc();
    meeting(s, "m1", "demo", now, &["Giao thông", "Thủy lợi"]).await;
    for i in 0..12 {
        let house = format!("house-{}", i % 3 + 1);
        let content = format!(
            "Ý kiến số {i}: đường liên thôn {}",
            ["sạt lở", "ngập", "hỏng"][i % 3]
        );
        raise(s, &format!("f{i:02}"), "m1", &house, &content).await;
    }
    in_meeting(
        s,
        "m1",
        Actor::system("sfu"),
        MeetingAction::ConnectHouse {
            house: "house-1".into(),
            connection: "c1".into(),
        },
    )
    .await;
    let o = || actor(OFFICIAL, "can-bo-1");
    for i in 0..8 {
        let kind = [FeedbackKind::Feedback, FeedbackKind::Complaint][i % 2];
        act(
            s,
            &format!("f{i:02}"),
            o(),
            now,
            FeedbackAction::Classify { kind },
        )
        .await;
    }
    for i in 0..6 {
        let official = format!("can-bo-{}", i % 2 + 1);
        act(
            s,
            &format!("f{i:02}"),
            o(),
            now,
            FeedbackAction::Assign {
                official,
                working_days: Some(10),
            },
        )
        .await;
    }
    // f05 was assigned a month ago with two working days: overdue now.
    let month_ago = now - time::Duration::days(30);
    act(
        s,
        "f05",
        o(),
        month_ago,
        FeedbackAction::Assign {
            official: "can-bo-2".into(),
            working_days: Some(2),
        },
    )
    .await;
    act(
        s,
        "f05",
        Actor::system("timer"),
        now,
        FeedbackAction::MarkOverdue,
    )
    .await;
    act(
        s,
        "f00",
        actor(OFFICIAL, "can-bo-1"),
        now,
        FeedbackAction::Answer {
            answer: "Đã sửa".into(),
        },
    )
    .await;
    if s.commune.room("ben-do").is_some() {
        meeting(s, "b1", "ben-do", now, &[]).await;
        raise(s, "g1", "b1", "house-1", "Bến đò hỏng").await;
    }
    projected(s).await;
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_filters_pages_and_counts_on_the_hub() {
    let s = hub(true).await;
    seed(&s).await;
    let o = token(&s, Role::Official, "can-bo-1", "demo");
    let get = |q: &'static str| {
        let (s, o) = (s.clone(), o.clone());
        async move {
            let r = call(&s, "GET", &format!("/api/feedback{q}"), &o).await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
            r.json()
        }
    };
    // Everything of room demo, none of ben-do; newest first; the log position it reflects.
    let all = get("").await;
    assert_eq!(all["total"], 12);
    assert_eq!(all["counts"]["visible"], 12);
    assert!(
        !all.to_string().contains("Bến đò"),
        "another room's item leaked"
    );
    assert_eq!(all["position"], s.recording.store().head());
    assert_eq!(all["counts"]["status"]["assigned"], 5);
    assert_eq!(all["counts"]["status"]["answered"], 1);
    assert_eq!(all["counts"]["kind"]["none"], 4);
    assert_eq!(all["counts"]["overdue"], 1);
    assert_eq!(all["counts"]["assignees"], json!(["can-bo-1", "can-bo-2"]));
    // Filters, alone and together; facets keep counting the other choices.
    let v = get("?status=assigned&assignee=can-bo-2").await;
    assert_eq!(ids(&v).len(), 3);
    assert!(
        v["counts"]["status"]["answered"].is_null(),
        "can-bo-2 answered nothing"
    );
    assert_eq!(v["counts"]["status"]["assigned"], 3);
    let v = get("?overdue=true").await;
    assert_eq!(ids(&v), ["f05"]);
    assert!(v["items"][0]["past_deadline"].as_bool().unwrap());
    assert!(v["items"][0]["working_days_left"].as_i64().unwrap() < 0);
    // house-2 raised f01, f04, f07, f10: f01 and f07 are complaints, f10 is not classified.
    assert_eq!(
        ids(&get("?house=house-2&kind=complaint&sort=oldest").await),
        ["f01", "f07"]
    );
    let v = get("?kind=none&sort=oldest").await;
    assert_eq!(ids(&v), ["f08", "f09", "f10", "f11"]);
    assert_eq!(get("?meeting=m1&status=open").await["total"], 11);
    assert_eq!(
        get("?meeting=b1").await["total"],
        0,
        "another room's meeting"
    );
    assert_eq!(
        get("?q=NG%E1%BA%ACP").await["total"],
        4,
        "NGẬP: case and accents as typed"
    );
    // Pages of 5 cover the twelve once, in order.
    let mut seen = Vec::new();
    for offset in [0, 5, 10] {
        let v = call(
            &s,
            "GET",
            &format!("/api/feedback?sort=oldest&limit=5&offset={offset}"),
            &o,
        )
        .await
        .json();
        assert_eq!(v["total"], 12);
        seen.extend(ids(&v));
    }
    let expected: Vec<String> = (0..12).map(|i| format!("f{i:02}")).collect();
    assert_eq!(seen, expected);
    // A house sees its own items only, counts included.
    let h1 = token(&s, Role::House, "house-1", "demo");
    let v = call(&s, "GET", "/api/feedback", &h1).await.json();
    assert_eq!(v["total"], 4);
    assert_eq!(v["counts"]["visible"], 4);
    assert_eq!(v["counts"]["assignees"], json!(["can-bo-1", "can-bo-2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_refused_naming_the_parameter_and_append_nothing() {
    let s = hub(false).await;
    seed(&s).await;
    let o = token(&s, Role::Official, "can-bo-1", "demo");
    let head = s.recording.store().head();
    let cases = [
        (
            "/api/feedback?status=lost",
            "invalid status: 'lost' is not one of",
        ),
        ("/api/feedback?kind=rumour", "invalid kind"),
        (
            "/api/feedback?overdue=maybe",
            "invalid overdue: must be true or false",
        ),
        (
            "/api/feedback?limit=0",
            "invalid limit: must be between 1 and 500",
        ),
        ("/api/feedback?limit=abc", "invalid limit"),
        ("/api/feedback?offset=-3", "invalid offset"),
        ("/api/feedback?sort=random", "invalid sort"),
        ("/api/feedback?stauts=open", "unknown field `stauts`"),
        (
            "/api/attendance?limit=0",
            "invalid limit: must be between 1 and 200",
        ),
        ("/api/attendance?from=2026-01-01", "unknown field `from`"),
        (
            "/api/stats/overdue?days=1000",
            "invalid days: must be between 1 and 730",
        ),
        ("/api/stats/overdue?days=x", "invalid days"),
    ];
    for (path, needle) in cases {
        let r = call(&s, "GET", path, &o).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        let v = r.json();
        assert_eq!(v["error"], "bad_query", "{path}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{path}: {v}"
        );
    }
    let long = format!("/api/feedback?q={}", "a".repeat(201));
    assert_eq!(
        call(&s, "GET", &long, &o).await.status,
        StatusCode::BAD_REQUEST
    );
    for path in ["/api/feedback/nope/history", "/api/meetings/nope/minutes"] {
        let r = call(&s, "GET", path, &o).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
    }
    let r = call(&s, "GET", "/api/directory", "not-a-token").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.recording.store().head(), head, "nothing appended");
}

/// Every new route for every role of room `demo`, and for the staff of room `ben-do`:
/// allowed where the route says, refused (403/404) everywhere else, nothing of room `demo`
/// shown to another room, nothing appended. Roles are taken from `Role` itself, so a role
/// added later (the QR code's) is checked here too: it is refused by every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_role_and_room() {
    let s = hub(true).await;
    seed(&s).await;
    let head = s.recording.store().head();
    struct Route {
        path: &'static str,
        /// Roles of room demo that may call it.
        allowed: &'static [Role],
        /// A string only room demo's answer contains.
        demo_only: &'static str,
    }
    let staff: &[Role] = &[Role::Official, Role::Chair];
    let routes = [
        Route {
            path: "/api/feedback/f00/history",
            allowed: &[Role::Official, Role::Chair, Role::House],
            demo_only: "Đã sửa",
        },
        Route {
            path: "/api/directory",
            allowed: staff,
            demo_only: "Thôn 3",
        },
        Route {
            path: "/api/attendance",
            allowed: staff,
            demo_only: "Họp m1",
        },
        Route {
            path: "/api/attendance.csv",
            allowed: staff,
            demo_only: "Họp m1",
        },
        Route {
            path: "/api/stats/overdue?days=3",
            allowed: staff,
            demo_only: "\"overdue\":1",
        },
        Route {
            path: "/api/meetings/m1/minutes",
            allowed: staff,
            demo_only: "Họp m1",
        },
        Route {
            path: "/api/log/export.jsonl",
            allowed: &[Role::Official],
            demo_only: "",
        },
    ];
    for r in &routes {
        for role in Role::value_variants() {
            // house-1 raised f00: the one house allowed its history.
            let tok = token(
                &s,
                *role,
                if *role == Role::House { "house-1" } else { "x" },
                "demo",
            );
            let got = call(&s, "GET", r.path, &tok).await;
            if r.allowed.contains(role) {
                // The export of this two-room log is refused to everyone: see below.
                if r.path.ends_with(".jsonl") {
                    assert_eq!(
                        got.status,
                        StatusCode::CONFLICT,
                        "{} as {role:?}: {}",
                        r.path,
                        got.body
                    );
                    continue;
                }
                assert_eq!(
                    got.status,
                    StatusCode::OK,
                    "{} as {role:?}: {}",
                    r.path,
                    got.body
                );
                assert!(
                    got.body.contains(r.demo_only),
                    "{} as {role:?}: {}",
                    r.path,
                    got.body
                );
            } else {
                // Refused for its role (a role whose tokens carry more, like the QR code's,
                // may already be refused as a token the route cannot use).
                assert!(
                    matches!(got.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
                    "{} as {role:?}: {} {}",
                    r.path,
                    got.status,
                    got.body
                );
                if got.status == StatusCode::FORBIDDEN {
                    assert_eq!(got.json()["error"], "wrong_role", "{}", r.path);
                }
                assert!(!got.body.contains("Ý kiến số"), "{}: {}", r.path, got.body);
            }
        }
        // Another house of room demo: not its item.
        let h2 = call(
            &s,
            "GET",
            r.path,
            &token(&s, Role::House, "house-2", "demo"),
        )
        .await;
        assert!(
            matches!(h2.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
            "{}: {}",
            r.path,
            h2.status
        );
        // The staff of room ben-do: refused, or shown their own room only.
        for role in [Role::Official, Role::Chair] {
            let got = call(&s, "GET", r.path, &token(&s, role, "x", "ben-do")).await;
            if !r.demo_only.is_empty() {
                assert!(
                    !got.body.contains(r.demo_only),
                    "{} as {role:?} of ben-do: {}",
                    r.path,
                    got.body
                );
            }
            assert!(
                !got.body.contains("Thôn 3") && !got.body.contains("Ý kiến số"),
                "{}: {}",
                r.path,
                got.body
            );
            if r.path.contains("/m1/") || r.path.contains("/f00/") {
                assert!(
                    matches!(got.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
                    "{}: {}",
                    r.path,
                    got.status
                );
            }
        }
    }
    // The verification run: staff only, then spaced out.
    for role in Role::value_variants().iter().filter(|r| !staff.contains(r)) {
        let r = call(
            &s,
            "POST",
            "/api/log/verify",
            &token(&s, *role, "x", "demo"),
        )
        .await;
        assert!(
            matches!(r.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
            "{role:?}: {}",
            r.status
        );
    }
    // A token for a room the commune does not have sees nothing.
    let r = call(
        &s,
        "GET",
        "/api/attendance",
        &token(&s, Role::Official, "x", "nowhere"),
    )
    .await;
    assert!(!r.body.contains("Họp m1"));
    assert_eq!(s.recording.store().head(), head, "nothing appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_items_history_says_who_did_what_and_when() {
    let s = hub(false).await;
    seed(&s).await;
    let o = token(&s, Role::Official, "can-bo-1", "demo");
    let v = call(&s, "GET", "/api/feedback/f00/history", &o)
        .await
        .json();
    let steps: Vec<(&str, &str)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("FeedbackReceived", "house:house-1"),
            ("FeedbackClassified", "official:can-bo-1"),
            ("FeedbackAssigned", "official:can-bo-1"),
            ("FeedbackAnswered", "official:can-bo-1"),
        ]
    );
    let e = &v["events"][2];
    assert_eq!(e["data"]["official"], "can-bo-1");
    assert_eq!(e["data"]["working_days"], 10);
    assert!(e["at"].as_str().unwrap().ends_with('Z'));
    // Positions rise, and each hash is the log's.
    let stored = s
        .recording
        .store()
        .aggregate_events("feedback", "f00", 0)
        .await
        .unwrap();
    for (e, st) in v["events"].as_array().unwrap().iter().zip(&stored) {
        assert_eq!(e["position"], st.position);
        assert_eq!(e["hash"], st.hash.as_str());
    }
    // The house that raised it reads it too; the others do not.
    let h1 = call(
        &s,
        "GET",
        "/api/feedback/f00/history",
        &token(&s, Role::House, "house-1", "demo"),
    )
    .await;
    assert_eq!(h1.status, StatusCode::OK);
    let h2 = call(
        &s,
        "GET",
        "/api/feedback/f00/history",
        &token(&s, Role::House, "house-2", "demo"),
    )
    .await;
    assert_eq!(h2.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendance_across_meetings_lists_every_house_and_its_time() {
    let s = hub(false).await;
    let sfu = || Actor::system("sfu");
    let chair = || actor(ActorRole::Chair, "chair");
    let day = time::Duration::days(1);
    let now = OffsetDateTime::now_utc();
    meeting(&s, "a1", "demo", now - day * 14, &[]).await;
    meeting(&s, "a2", "demo", now - day, &[]).await;
    for (m, houses) in [
        ("a1", &["house-1", "house-2"][..]),
        ("a2", &["house-1"][..]),
    ] {
        for h in houses {
            in_meeting(
                &s,
                m,
                sfu(),
                MeetingAction::ConnectHouse {
                    house: (*h).into(),
                    connection: format!("{m}{h}"),
                },
            )
            .await;
            in_meeting(
                &s,
                m,
                chair(),
                MeetingAction::ReportHeadcount {
                    house: (*h).into(),
                    count: 20,
                },
            )
            .await;
        }
        in_meeting(
            &s,
            m,
            chair(),
            MeetingAction::CheckIn {
                house: "house-1".into(),
                name: "Lò Văn Páo".into(),
            },
        )
        .await;
    }
    in_meeting(
        &s,
        "a1",
        sfu(),
        MeetingAction::DisconnectHouse {
            house: "house-1".into(),
            connection: "a1house-1".into(),
        },
    )
    .await;
    projected(&s).await;
    let o = token(&s, Role::Chair, "chair", "demo");
    let v = call(&s, "GET", "/api/attendance", &o).await.json();
    let meetings: Vec<&str> = v["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(meetings, ["a1", "a2"], "oldest first");
    let house = |id: &str| {
        v["houses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(house("house-1")["meetings_attended"], 2);
    assert_eq!(house("house-1")["headcount_total"], 40);
    assert_eq!(house("house-1")["checked_in"], 2);
    assert_eq!(house("house-1")["name"], "Thôn 1");
    assert_eq!(house("house-2")["meetings_attended"], 1);
    assert_eq!(
        house("house-3")["meetings_attended"],
        0,
        "absent, still listed"
    );
    let cell = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["meeting"] == "a2" && c["house"] == "house-1")
        .unwrap();
    assert_eq!(cell["connected_now"], true);
    assert!(
        !v.to_string().contains("Lò Văn Páo"),
        "names stay with the meeting"
    );
    let v1 = call(&s, "GET", "/api/attendance?limit=1", &o).await.json();
    assert_eq!(v1["meetings"].as_array().unwrap().len(), 1);
    let csv = call(&s, "GET", "/api/attendance.csv", &o).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(
        csv.body
            .lines()
            .any(|l| l.starts_with("a1,Họp a1,") && l.contains(",house-2,Thôn 2,")),
        "{}",
        csv.body
    );
    assert_eq!(csv.body.lines().count(), 1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minutes_carry_the_position_and_the_checkpoint_that_cover_them() {
    let s = hub(false).await;
    seed(&s).await;
    // f03 is a denunciation: its author and content stay out of the minutes.
    act(
        &s,
        "f11",
        actor(OFFICIAL, "can-bo-1"),
        OffsetDateTime::now_utc(),
        FeedbackAction::Classify {
            kind: FeedbackKind::Denunciation,
        },
    )
    .await;
    in_meeting(
        &s,
        "m1",
        actor(ActorRole::Chair, "chair"),
        MeetingAction::Close,
    )
    .await;
    projected(&s).await;
    let o = token(&s, Role::Official, "can-bo-1", "demo");
    // Before any checkpoint: none, and the key to check a later one.
    let v = call(&s, "GET", "/api/meetings/m1/minutes", &o).await.json();
    assert!(v["checkpoint"].is_null(), "{v}");
    assert_eq!(v["public_key"], s.recording.signer.public_hex());
    s.recording.checkpoint_now().await;
    let v = call(&s, "GET", "/api/meetings/m1/minutes", &o).await.json();
    // The position covers every meeting event and every item raised in it.
    let store = s.recording.store();
    let meeting_last = store
        .aggregate_events("meeting", "m1", 0)
        .await
        .unwrap()
        .last()
        .unwrap()
        .position;
    let raised_last = store.aggregate_events("feedback", "f11", 0).await.unwrap()[0].position;
    let position = v["log"]["position"].as_u64().unwrap();
    assert_eq!(position, meeting_last.max(raised_last));
    let at = store.read(position - 1, 1).await.unwrap();
    assert_eq!(v["log"]["hash"], at[0].hash.as_str());
    let cp = &v["checkpoint"];
    assert!(cp["tree_size"].as_u64().unwrap() >= position);
    assert_eq!(cp["signature_ok"], true);
    assert_eq!(cp["key"], s.recording.signer.public_hex());
    let stored = store.checkpoints().await.unwrap();
    let first = stored.iter().find(|c| c.tree_size >= position).unwrap();
    assert_eq!(cp["root_hash"], first.root_hash.as_str());
    // Attendance lists every house of the room; feedback as raised, the denunciation withheld.
    assert_eq!(v["attendance"].as_array().unwrap().len(), 3);
    assert_eq!(v["minutes"]["status"], "closed");
    let fb = v["feedback"].as_array().unwrap();
    assert_eq!(fb.len(), 12);
    let protected = fb.iter().find(|f| f["id"] == "f11").unwrap();
    assert_eq!(protected["protected"], true);
    assert!(protected["content"].is_null() && protected["house"].is_null());
    assert!(!v.to_string().contains("Ý kiến số 11"));
    assert_eq!(v["commune"], "Xã Thử");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_items_are_counted_per_day_from_the_log() {
    let s = hub(true).await;
    seed(&s).await;
    let o = token(&s, Role::Official, "can-bo-1", "demo");
    let v = call(&s, "GET", "/api/stats/overdue?days=40", &o)
        .await
        .json();
    let days = v["days"].as_array().unwrap();
    assert_eq!(days.len(), 40);
    assert_eq!(days.last().unwrap()["overdue"], 1, "f05 today");
    assert_eq!(days[0]["overdue"], 0, "before f05 was assigned");
    // Room ben-do has none.
    let b = call(
        &s,
        "GET",
        "/api/stats/overdue?days=40",
        &token(&s, Role::Official, "x", "ben-do"),
    )
    .await
    .json();
    assert!(b["days"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["overdue"] == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_runs_on_request_at_most_once_a_minute() {
    let s = hub(false).await;
    seed(&s).await;
    // The hub's own facts in the log (the token deny list) do not stop a one-room export.
    let chair = token(&s, Role::Chair, "chair", "demo");
    let jti = json!({"jti": "0123456789abcdef0123456789abcdef"});
    let res = app::call(&s, "POST", "/api/tokens/revoke", Some(&chair), Some(jti)).await;
    assert_eq!(res.status, StatusCode::OK);
    s.recording.checkpoint_now().await;
    let o = token(&s, Role::Official, "can-bo-1", "demo");
    let head = s.recording.store().head();
    // The page reads what the hub checked at start-up (an empty log) from /api/integrity.
    let st = call(&s, "GET", "/api/integrity", &o).await.json();
    assert_eq!(st["last_verification"]["events"], 0, "{st}");
    assert_eq!(st["last_checkpoint"]["size"], head);
    assert_eq!(st["head"], head);
    let r = call(&s, "POST", "/api/log/verify", &o).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run = r.json();
    // The start-up check made again, answered as /api/integrity.
    assert_eq!(run["ok"], true);
    assert_eq!(run["signing"], true);
    assert_eq!(run["last_verification"]["ok"], true);
    assert_eq!(run["last_verification"]["events"], head);
    assert_eq!(run["last_verification"]["checkpoints"], 1);
    assert_eq!(run["public_key"], st["public_key"]);
    let again = call(
        &s,
        "POST",
        "/api/log/verify",
        &token(&s, Role::Chair, "chair", "demo"),
    )
    .await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(again.json()["error"], "rate_limited");
    let retry: u64 = again.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let st = call(&s, "GET", "/api/integrity", &o).await.json();
    assert_eq!(st["last_verification"]["events"], head);
    assert_eq!(s.recording.store().head(), head, "nothing appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_on_request_finds_an_edited_log_and_stops_the_signing() {
    let s = hub(false).await;
    seed(&s).await;
    s.recording.checkpoint_now().await;
    let o = token(&s, Role::Official, "can-bo-1", "demo");
    // Someone with the database edits an event under the running hub.
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            s.config.data.join("record.sqlite").display()
        ))
        .await
        .unwrap();
        // The store's append-only trigger is in the way of such a person, but theirs to drop.
        for sql in [
            "DROP TRIGGER events_no_update",
            "UPDATE events SET payload = replace(payload, 'Họp', 'Hop') WHERE position = 1",
        ] {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
    let r = call(&s, "POST", "/api/log/verify", &o).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let st = r.json();
    assert_eq!(st["ok"], false, "{st}");
    assert_eq!(st["signing"], false);
    assert_eq!(st["last_verification"]["ok"], false);
    assert_eq!(st["problem"]["position"], 1, "{st}");
    // The hub says so everywhere the start-up check would.
    let h = call(&s, "GET", "/healthz", &o).await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{}", h.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_export_is_dinh_log_export_for_a_one_room_hub() {
    let s = hub(false).await;
    seed(&s).await;
    s.recording.checkpoint_now().await;
    let o = token(&s, Role::Official, "can-bo-1", "demo");
    let r = call(&s, "GET", "/api/log/export.jsonl", &o).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let head = s.recording.store().head();
    assert_eq!(
        r.headers["content-disposition"],
        format!("attachment; filename=\"dinh-log-demo-{head}.jsonl\"").as_str()
    );
    let report = dinh_events::verify::verify_export(
        std::io::Cursor::new(r.body.as_bytes()),
        Some(s.recording.signer.public_hex()),
    )
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.events, head);
    assert_eq!(report.checkpoints, 1);
    // Nothing is left beside the record.
    let left: Vec<_> = std::fs::read_dir(&s.config.data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("export-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The chair may not take the log away.
    assert_eq!(
        call(
            &s,
            "GET",
            "/api/log/export.jsonl",
            &token(&s, Role::Chair, "chair", "demo")
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_shared_by_two_rooms_is_not_exported_to_one_room() {
    let s = hub(true).await;
    seed(&s).await;
    for room in ["demo", "ben-do"] {
        let r = call(
            &s,
            "GET",
            "/api/log/export.jsonl",
            &token(&s, Role::Official, "x", room),
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{room}: {}", r.body);
        assert_eq!(r.json()["error"], "log_shared");
        assert!(!r.body.contains("Bến đò") && !r.body.contains("Ý kiến số"));
    }
}
