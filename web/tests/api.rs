//! The record's API through the router (no sockets): a meeting from schedule to close,
//! feedback through its life, roles, idempotency, bad input, CSV, SSE, and the SFU's
//! observations (a house's screen connecting) reaching the record.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use futures::StreamExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::app::{send, state, state_with, token, token_in};
use dinh_web::auth::Role;
use dinh_web::AppState;

struct Call<'a> {
    s: &'a AppState,
    token: String,
}

impl<'a> Call<'a> {
    fn new(s: &'a AppState, role: Role, id: &str) -> Self {
        let token = token(s, role, id);
        Self { s, token }
    }

    async fn send(
        &self,
        req: axum::http::request::Builder,
        body: Body,
    ) -> (StatusCode, Value, String) {
        let req = req
            .header("authorization", format!("Bearer {}", self.token))
            .body(body)
            .unwrap();
        let a = send(self.s, req).await;
        (a.status, a.json(), a.body)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(
                Request::post(path).header("content-type", "application/json"),
                Body::from(body.to_string()),
            )
            .await;
        (s, v)
    }

    async fn post_key(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(
                Request::post(path)
                    .header("content-type", "application/json")
                    .header("idempotency-key", key),
                Body::from(body.to_string()),
            )
            .await;
        (s, v)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value, String) {
        self.send(Request::get(path), Body::empty()).await
    }
}

async fn open_meeting(chair: &Call<'_>) {
    let (st, v) = chair
        .post(
            "/api/meetings",
            json!({"id": "m1", "title": "Họp dân quý IV", "starts_at": "2026-11-23T08:00:00+07:00",
                   "agenda": ["Giao thông nông thôn", "Thủy lợi"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = chair
        .post("/api/meetings/m1/commands", json!({"type": "open"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_and_its_feedback_from_start_to_end() {
    let s = state().await;
    let chair = Call::new(&s, Role::Chair, "chair");
    let house1 = Call::new(&s, Role::House, "house-1");
    let house2 = Call::new(&s, Role::House, "house-2");
    let official = Call::new(&s, Role::Official, "can-bo-1");

    // Only the chair opens meetings.
    let (st, v) = house1
        .post(
            "/api/meetings",
            json!({"title": "x", "starts_at": "2026-11-23T08:00:00+07:00"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["message"], "a house may not schedule a meeting");
    open_meeting(&chair).await;
    let (st, _) = chair
        .post(
            "/api/meetings/m1/commands",
            json!({"type": "start_agenda_item", "index": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = house1
        .post("/api/meetings/m1/commands", json!({"type": "close"}))
        .await;
    assert_eq!(
        (st, v["message"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("a house may not close a meeting")
        )
    );

    // A house reports its headcount; the latest counts.
    for n in [30, 42] {
        let (st, v) = house1
            .post(
                "/api/meetings/m1/commands",
                json!({"type": "report_headcount", "house": "house-1", "count": n}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }

    // House 1 raises feedback; retried with the same key, the same item comes back.
    let raise = json!({"meeting": "m1", "agenda_item": 0, "content": "Đường liên thôn sạt lở"});
    let (st, first) = house1.post_key("/api/feedback", "k-1", raise.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    let (st, again) = house1.post_key("/api/feedback", "k-1", raise).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(again["aggregate_id"], first["aggregate_id"]);
    assert_eq!(again["replayed"], true);
    let id = first["aggregate_id"].as_str().unwrap().to_owned();

    // House 2 cannot see it (protects whoever raised it); the official can.
    let (_, list, _) = house2.get("/api/feedback").await;
    assert_eq!(list["total"], 0);
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (st, _, _) = house2.get(&format!("/api/feedback/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, list, _) = official.get("/api/feedback?status=received").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], id.as_str());

    let cmd = |body: Value| (format!("/api/feedback/{id}/commands"), body);
    let (p, b) = cmd(json!({"type": "classify", "kind": "complaint"}));
    assert_eq!(
        official.post_key(&p, "k-cls", b.clone()).await.0,
        StatusCode::OK
    );
    // The official's key does not let a house replay the official's 200: it is refused.
    assert_eq!(
        house1.post_key(&p, "k-cls", b).await.0,
        StatusCode::FORBIDDEN
    );
    let (p, b) = cmd(json!({"type": "assign", "official": "can-bo-1", "working_days": 10}));
    assert_eq!(official.post(&p, b).await.0, StatusCode::OK);
    // A house may not answer; answering needs the assignee.
    let (p, b) = cmd(json!({"type": "answer", "answer": "x"}));
    assert_eq!(house1.post(&p, b).await.0, StatusCode::FORBIDDEN);
    let (p, b) = cmd(json!({"type": "answer", "answer": "Đã gia cố taluy"}));
    assert_eq!(official.post(&p, b).await.0, StatusCode::OK);
    // House 1 reopens: not fixed.
    let (p, b) = cmd(json!({"type": "reopen", "reason": "Vẫn sạt"}));
    let (st, v) = house1.post(&p, b).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, row, _) = official.get(&format!("/api/feedback/{id}")).await;
    assert_eq!(row["status"], "assigned");
    assert_eq!(row["reopened"], 1);
    assert!(row["deadline"].as_str().is_some());

    // Withdrawn, it cannot be answered: 409 naming the state.
    let (p, b) = cmd(json!({"type": "withdraw"}));
    assert_eq!(house1.post(&p, b).await.0, StatusCode::OK);
    let (p, b) = cmd(json!({"type": "answer", "answer": "x"}));
    let (st, v) = official.post(&p, b).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(v["message"], "cannot answer an item that is withdrawn");

    // CSV exports, for staff only.
    let (st, _, csv) = official.get("/api/feedback.csv").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        csv.contains("Đường liên thôn sạt lở") && csv.contains("withdrawn"),
        "{csv}"
    );
    assert_eq!(
        house1.get("/api/feedback.csv").await.0,
        StatusCode::FORBIDDEN
    );
    let (st, _, csv) = chair.get("/api/meetings/m1/attendance.csv").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        csv.lines()
            .any(|l| l.starts_with("m1,house-1,") && l.contains(",42,")),
        "{csv}"
    );

    // Close; then nothing more is accepted.
    assert_eq!(
        chair
            .post("/api/meetings/m1/commands", json!({"type": "close"}))
            .await
            .0,
        StatusCode::OK
    );
    let (st, v) = house1
        .post(
            "/api/meetings/m1/commands",
            json!({"type": "report_headcount", "house": "house-1", "count": 1}),
        )
        .await;
    assert_eq!(
        (st, v["message"].as_str()),
        (StatusCode::CONFLICT, Some("the meeting is closed"))
    );
    let (_, m, _) = official.get("/api/meetings/m1").await;
    assert_eq!(m["minutes"]["status"], "closed");
    assert_eq!(m["minutes"]["feedback"][0], id.as_str());

    // The record verifies.
    let report = dinh_events::verify::verify_store(
        s.recording.store(),
        Some(s.recording.signer.public_hex()),
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_appends_nothing() {
    let s = state().await;
    let chair = Call::new(&s, Role::Chair, "chair");
    open_meeting(&chair).await;
    let head = s.recording.store().head();
    let cases = [
        (
            json!({"type": "dance"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown variant `dance`",
        ),
        (
            json!({"type": "grant_floor"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `house`",
        ),
        (
            json!({"type": "report_headcount", "house": "house-1", "count": "many"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid type",
        ),
        (
            json!({"type": "start_agenda_item", "index": 9}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no agenda item 9",
        ),
        (
            json!({"type": "open"}),
            StatusCode::CONFLICT,
            "already open",
        ),
    ];
    for (body, status, needle) in cases {
        let (st, v) = chair.post("/api/meetings/m1/commands", body.clone()).await;
        assert_eq!(st, status, "{body} -> {v}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{body} -> {v}"
        );
    }
    // Not JSON, wrong content type, oversized, unknown meeting, no token.
    let (st, _, _) = chair
        .send(
            Request::post("/api/meetings/m1/commands").header("content-type", "application/json"),
            Body::from("{not json"),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, _) = chair
        .send(
            Request::post("/api/meetings/m1/commands").header("content-type", "text/plain"),
            Body::from("{}"),
        )
        .await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (st, v) = chair
        .post(
            "/api/feedback",
            json!({"meeting": "m1", "house": "house-1", "agenda_item": 999_999, "content": "x"}),
        )
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_body")),
        "an agenda item the meeting does not have"
    );
    let huge = json!({"meeting": "m1", "house": "house-1", "content": "x".repeat(200_000)});
    let (st, _) = chair.post("/api/feedback", huge).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    let (st, v) = chair
        .post("/api/meetings/nope/commands", json!({"type": "open"}))
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_meeting"))
    );
    let res = dinh_web::app(s.clone())
        .oneshot(Request::get("/api/feedback").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A token of another room sees nothing of this one.
    let other = Call {
        s: &s,
        token: token_in(&s, Role::Chair, "chair", "other"),
    };
    // Another room's meeting answers as a missing one does (no probing of ids across rooms).
    let (st, v, _) = other.get("/api/meetings/m1").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_meeting"))
    );
    let (st, v) = other
        .post("/api/meetings/m1/commands", json!({"type": "close"}))
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_meeting"))
    );
    assert_eq!(s.recording.store().head(), head, "nothing appended");
    let (st, doc, _) = chair.get("/api/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["paths"]["/api/meetings/{id}/commands"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_visible_events_and_resumes_from_last_event_id() {
    let s = state().await;
    let chair = Call::new(&s, Role::Chair, "chair");
    open_meeting(&chair).await;
    let house1 = Call::new(&s, Role::House, "house-1");
    house1
        .post("/api/feedback", json!({"meeting": "m1", "content": "Một"}))
        .await;
    // Raised by the chair for house 2: house 1 must not see it.
    chair
        .post(
            "/api/feedback",
            json!({"meeting": "m1", "house": "house-2", "content": "Hai"}),
        )
        .await;

    let read = |tok: String, last: Option<&'static str>| {
        let s = s.clone();
        async move {
            let mut req =
                Request::get("/api/events?from=0").header("authorization", format!("Bearer {tok}"));
            if let Some(l) = last {
                req = req.header("last-event-id", l);
            }
            let res = dinh_web::app(s)
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let mut body = res.into_body().into_data_stream();
            let mut text = String::new();
            // Read until the stream has been quiet for a moment: it is live and never ends.
            while let Ok(Some(Ok(chunk))) =
                tokio::time::timeout(Duration::from_millis(500), body.next()).await
            {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            text.lines()
                .filter_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
                .map(|v| v.trim().parse::<u64>().unwrap())
                .collect::<Vec<u64>>()
        }
    };
    let all = read(token(&s, Role::Chair, "chair"), None).await;
    assert_eq!(all, vec![1, 2, 3, 4]);
    let resumed = read(token(&s, Role::Chair, "chair"), Some("2")).await;
    assert_eq!(resumed, vec![3, 4]);
    let house_view = read(token(&s, Role::House, "house-1"), None).await;
    assert_eq!(house_view, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_scoped_to_the_caller_and_the_route() {
    let s = state().await;
    let chair = Call::new(&s, Role::Chair, "chair");
    open_meeting(&chair).await;
    let house1 = Call::new(&s, Role::House, "house-1");
    let house2 = Call::new(&s, Role::House, "house-2");
    let (st, first) = house1
        .post_key(
            "/api/feedback",
            "k",
            json!({"meeting": "m1", "content": "Một"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    // The same key from another house is that house's own new item, not house 1's outcome.
    let (st, second) = house2
        .post_key(
            "/api/feedback",
            "k",
            json!({"meeting": "m1", "content": "Hai"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{second}");
    assert_eq!(second["replayed"], false);
    assert_ne!(second["aggregate_id"], first["aggregate_id"]);
    // The same key on another route of the same caller is a new command too.
    let (st, v) = chair
        .post_key(
            "/api/meetings/m1/commands",
            "k",
            json!({"type": "start_agenda_item", "index": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["replayed"], false);
    // Another room's chair reusing the key gets its own refusal (404), not this room's 200.
    let other = Call {
        s: &s,
        token: token_in(&s, Role::Chair, "chair", "other"),
    };
    let head = s.recording.store().head();
    let (st, _) = other
        .post_key(
            "/api/meetings/m1/commands",
            "k",
            json!({"type": "start_agenda_item", "index": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        s.recording.store().head(),
        head,
        "a refused request appends nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_writing_faster_than_its_rate_gets_429_and_appends_nothing() {
    let s = state_with(|c| {
        c.limits.write_burst = 5;
        c.limits.writes_per_minute = 1;
    })
    .await;
    let chair = Call::new(&s, Role::Chair, "chair");
    open_meeting(&chair).await; // two writes
    let house = Call::new(&s, Role::House, "house-1");
    // A house spamming feedback: its burst passes, then it is refused with a wait.
    for i in 0..5 {
        let (st, v) = house
            .post(
                "/api/feedback",
                json!({"meeting": "m1", "content": format!("Ý kiến {i}")}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let head = s.recording.store().head();
    let req = Request::post("/api/feedback")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", house.token))
        .body(Body::from(
            json!({"meeting": "m1", "content": "thêm"}).to_string(),
        ))
        .unwrap();
    let res = dinh_web::app(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        s.recording.store().head(),
        head,
        "a refused request appends nothing"
    );
    // Reads are not counted, and another token keeps its own rate.
    assert_eq!(house.get("/api/feedback").await.0, StatusCode::OK);
    let (st, v) = chair
        .post(
            "/api/meetings/m1/commands",
            json!({"type": "start_agenda_item", "index": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}
