//! The house screen's QR code and the phone page behind it, over a real hub on loopback: the
//! `feedback` token raises feedback for its house in its meeting and reads its own items back;
//! every other route refuses it (the WebSocket, WHIP/WHEP, the streams and every API route);
//! it stops working when the meeting closes; it is rate-limited. No refusal appends anything.
//! Then the bulletin board and the notices it shows.

mod common;

use std::time::Duration;

use common::Hub;
use dinh_web::auth::Role;
use serde_json::{json, Value};

/// A hub with meeting `m1` (two agenda items) open in room `demo`.
async fn hub_with_meeting() -> Hub {
    let hub = Hub::start(|_| {}).await;
    hub.open_meeting_with("m1", &["Đường liên thôn", "Vệ sinh môi trường"])
        .await;
    hub
}

/// The house screen asks for its QR link; the token is in the address's fragment.
async fn qr_token(hub: &Hub, house: &str) -> (String, Value) {
    qr_token_of(hub, &hub.token(Role::House, house)).await
}

/// The QR link shown by the screen whose token is `t`.
async fn qr_token_of(hub: &Hub, t: &str) -> (String, Value) {
    let base = hub.base.clone();
    let r = hub
        .request(
            "POST",
            "/api/house/feedback-link",
            vec![
                ("authorization".into(), format!("Bearer {t}")),
                ("content-type".into(), "application/json".into()),
            ],
            Some(json!({ "base": base }).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let url = v["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/phone#token=", hub.base)),
        "{url}"
    );
    (url.split("#token=").nth(1).unwrap().to_owned(), v)
}

async fn raise(hub: &Hub, token: &str, content: &str) -> (u16, Value, Option<String>) {
    let r = hub
        .request(
            "POST",
            "/api/phone/feedback",
            vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("content-type".into(), "application/json".into()),
            ],
            Some(
                json!({ "content": content, "agenda_item": 1 })
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    let retry = r.header("retry-after").map(str::to_owned);
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
        retry,
    )
}

/// Today in Vietnam.
fn today() -> time::Date {
    time::OffsetDateTime::now_utc()
        .to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap())
        .date()
}

fn head(hub: &Hub) -> u64 {
    hub.state.recording.store().head()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qr_token_raises_feedback_for_its_house_and_reads_it_back() {
    let hub = hub_with_meeting().await;
    let (token, link) = qr_token(&hub, "house-1").await;
    assert!(link["svg"].as_str().unwrap().contains("<svg"));
    assert_eq!(link["meeting"], "m1");

    let (st, v, _) = raise(
        &hub,
        &token,
        "Đường thôn 3 hỏng nặng, xin sửa trước mùa mưa",
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    // In the record: raised by the house, in the meeting, on the agenda item chosen.
    let events = hub.state.recording.store().read(0, 1000).await.unwrap();
    let e = events.iter().find(|e| e.aggregate_id == id).unwrap();
    assert_eq!(e.event_type, "FeedbackReceived");
    assert_eq!(e.actor, "house:house-1");
    assert_eq!(e.payload["meeting"], "m1");
    assert_eq!(e.payload["agenda_item"], 1);

    // The phone reads back its own item, and not another phone's of the same house.
    let (other, _) = qr_token(&hub, "house-1").await;
    let (st, _, _) = raise(&hub, &other, "Một ý kiến khác").await;
    assert_eq!(st, 201);
    let (st, v) = hub.json("GET", "/api/phone", &token, Value::Null).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["house"]["id"], "house-1");
    assert_eq!(v["meeting"]["title"], "Họp dân");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["status"], "received");

    // A retry with the same Idempotency-Key answers the first result and appends nothing.
    let retry = |key: &'static str| {
        hub.request(
            "POST",
            "/api/phone/feedback",
            vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("content-type".into(), "application/json".into()),
                ("idempotency-key".into(), key.into()),
            ],
            Some(json!({"content": "Gửi lại"}).to_string().into_bytes()),
        )
    };
    assert_eq!(retry("k1").await.status, 201);
    let before = head(&hub);
    let again = retry("k1").await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(head(&hub), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qr_token_is_refused_by_every_other_route() {
    let hub = hub_with_meeting().await;
    let (token, _) = qr_token(&hub, "house-1").await;
    let (st, v, _) = raise(&hub, &token, "Ý kiến có thật").await;
    assert_eq!(st, 201);
    let item = v["id"].as_str().unwrap().to_owned();
    // A notice and a picture exist, so their routes reach their checks.
    let chair = hub.token(Role::Chair, "chair");
    let (st, v) = hub
        .json(
            "POST",
            "/api/notices",
            &chair,
            json!({"title": "Tiêm phòng", "text": "Thứ Bảy", "valid_from": today().to_string(),
                   "valid_until": (today() + time::Duration::days(7)).to_string()}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let notice = v["id"].as_str().unwrap().to_owned();

    // Every route of the hub, read from its source, with the ids it needs filled in.
    let src = [
        include_str!("../src/api.rs"),
        include_str!("../src/loudspeakers.rs"),
        include_str!("../src/whip.rs"),
        include_str!("../src/notices.rs"),
        include_str!("../src/board.rs"),
        include_str!("../src/phone.rs"),
        include_str!("../src/tokens.rs"),
        include_str!("../src/lib.rs"),
    ]
    .concat();
    let mut paths: Vec<String> = src
        .split(".route(")
        .skip(1)
        .filter_map(|r| {
            let r = r.trim_start();
            let r = r.strip_prefix('"')?;
            Some(r[..r.find('"')?].to_owned())
        })
        .filter(|p| p.starts_with('/'))
        .collect();
    paths.sort();
    paths.dedup();
    assert!(paths.len() >= 25, "{paths:?}");
    assert!(paths.iter().any(|p| p == "/ws/{room}"), "{paths:?}");
    let phone_routes = ["/api/phone", "/api/phone/feedback"];
    // Open to anyone: health, the API's description and the hub's CA certificate. (/metrics
    // needs an official's token, which a QR token is not: it is tried below.)
    let open = ["/healthz", "/api/openapi.json", "/ca.pem"];
    let before = head(&hub);
    let mut tried = 0;
    for p in &paths {
        // The WebSocket is tried below, with a real upgrade.
        if phone_routes.contains(&p.as_str()) || open.contains(&p.as_str()) || p.starts_with("/ws/")
        {
            continue;
        }
        let path = p
            .replace("{room}", "demo")
            .replace("{name}", "a.wav")
            .replace("/api/meetings/{id}", "/api/meetings/m1")
            .replace("/api/feedback/{id}", &format!("/api/feedback/{item}"))
            .replace("/api/notices/{id}", &format!("/api/notices/{notice}"))
            .replace("{id}", "x");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            for how in ["header", "query"] {
                let (url, headers) = match how {
                    "header" => (
                        path.clone(),
                        vec![
                            ("authorization".to_owned(), format!("Bearer {token}")),
                            ("content-type".to_owned(), "application/json".to_owned()),
                        ],
                    ),
                    _ => (
                        format!("{path}?token={token}"),
                        vec![("content-type".to_owned(), "application/json".to_owned())],
                    ),
                };
                let body = (method != "GET").then(|| {
                    json!({"type": "open", "on": true, "content": "x", "meeting": "m1", "title": "x",
                           "text": "x", "valid_from": "2026-01-01", "valid_until": "2099-01-01",
                           "starts_at": "2026-11-23T09:00:00+07:00", "base": hub.base})
                    .to_string()
                    .into_bytes()
                });
                let r = hub.request(method, &url, headers, body).await;
                if r.status == 405 {
                    continue;
                }
                tried += 1;
                assert!(
                    r.status == 401 || r.status == 403,
                    "{method} {url} ({how}) answered {}: {}",
                    r.status,
                    r.body
                );
            }
        }
    }
    assert!(tried >= 40, "only {tried} requests reached a route");
    // The WebSocket refuses it before the upgrade.
    let ws = format!(
        "{}/ws/demo?token={token}",
        hub.base.replace("http://", "ws://")
    );
    match tokio_tungstenite::connect_async(ws).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!(
            "the WebSocket accepted a feedback token: {:?}",
            other.map(|_| ())
        ),
    }
    assert_eq!(head(&hub), before, "a refused request appended something");

    // A forged role change is a different token: the signature says no.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1].pop();
    let (st, v) = hub
        .json("GET", "/api/phone", &parts.join("."), Value::Null)
        .await;
    assert_eq!((st, v["error"].as_str()), (401, Some("token_invalid")));
    // And the house's own token is no feedback token.
    let house = hub.token(Role::House, "house-1");
    let (st, _, _) = raise(&hub, &house, "x").await;
    assert_eq!(st, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qr_token_stops_when_the_meeting_closes() {
    let hub = hub_with_meeting().await;
    let (token, _) = qr_token(&hub, "house-2").await;
    hub.command("m1", json!({"type": "close"})).await;
    let before = head(&hub);
    let (st, v, _) = raise(&hub, &token, "Muộn mất rồi").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (403, Some("meeting_closed")),
        "{v}"
    );
    let (st, v) = hub.json("GET", "/api/phone", &token, Value::Null).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (403, Some("meeting_closed")),
        "{v}"
    );
    assert_eq!(head(&hub), before);
    // And no new QR code once it is closed.
    let house = hub.token(Role::House, "house-2");
    let (st, _) = hub
        .post(
            "/api/house/feedback-link",
            &house,
            json!({ "base": hub.base }),
        )
        .await;
    assert_eq!(st, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qr_token_is_rate_limited_and_bounded() {
    let hub = hub_with_meeting().await;
    let (token, _) = qr_token(&hub, "house-3").await;
    for i in 0..dinh_web::phone::PER_MINUTE {
        let (st, v, _) = raise(&hub, &token, &format!("Ý kiến số {i}")).await;
        assert_eq!(st, 201, "{v}");
    }
    let before = head(&hub);
    let (st, v, retry) = raise(&hub, &token, "Một ý kiến nữa").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    assert_eq!(head(&hub), before, "the refusal appended nothing");
    // Another phone (another token) of the same house is not held back.
    let (other, _) = qr_token(&hub, "house-3").await;
    let (st, _, _) = raise(&hub, &other, "Ý kiến từ điện thoại khác").await;
    assert_eq!(st, 201);
    // Bad input is refused with the field named, and costs nothing of the rate.
    let (third, _) = qr_token(&hub, "house-3").await;
    let (st, v, _) = raise(&hub, &third, "   ").await;
    assert_eq!(
        (st, v["message"].as_str()),
        (422, Some("invalid content: must not be empty"))
    );
    let (st, v) = hub
        .post(
            "/api/phone/feedback",
            &third,
            json!({"content": "x", "house": "house-1"}),
        )
        .await;
    assert_eq!(st, 422, "another house cannot be named: {v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("unknown field `house`"));
    let (st, v) = hub
        .post(
            "/api/phone/feedback",
            &third,
            json!({"content": "x", "agenda_item": 7}),
        )
        .await;
    assert_eq!(
        (st, v["message"].as_str()),
        (
            422,
            Some("invalid agenda_item: not an item of this meeting's agenda")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_qr_token_is_refused() {
    let hub = hub_with_meeting().await;
    let t = hub
        .state
        .keys
        .issue_feedback("house-1", "demo", "m1", "p", Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (st, v, _) = raise(&hub, &t, "x").await;
    assert_eq!((st, v["error"].as_str()), (401, Some("token_expired")));
    // A token for another room's meeting finds no meeting.
    let t = hub
        .state
        .keys
        .issue_feedback("house-1", "other", "m1", "p", Duration::from_secs(60));
    let (st, _, _) = raise(&hub, &t, "x").await;
    assert_eq!(st, 404);
}

/// Revoking a QR token stops it at once; revoking the house screen's token stops the codes
/// that screen showed as well. Nothing is appended for a refused code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_qr_token_and_the_codes_of_a_revoked_screen_are_refused() {
    let hub = hub_with_meeting().await;
    let chair = hub.token(Role::Chair, "chair");
    let (qr, _) = qr_token(&hub, "house-1").await;
    let (st, v, _) = raise(&hub, &qr, "Một").await;
    assert!((200..300).contains(&st), "{v}");
    let (st, v) = hub
        .json("POST", "/api/tokens/revoke", &chair, json!({ "token": qr }))
        .await;
    assert_eq!(st, 200, "{v}");
    let before = head(&hub);
    let (st, v, _) = raise(&hub, &qr, "Hai").await;
    assert_eq!((st, v["error"].as_str()), (401, Some("token_revoked")));
    let screen = hub.token(Role::House, "house-1");
    let (qr2, _) = qr_token_of(&hub, &screen).await;
    let (st, v) = hub
        .post("/api/tokens/revoke", &chair, json!({ "token": screen }))
        .await;
    assert_eq!(st, 200, "{v}");
    let before = before.max(head(&hub));
    let (st, v, _) = raise(&hub, &qr2, "Ba").await;
    assert_eq!((st, v["error"].as_str()), (401, Some("token_revoked")));
    let (st, _) = hub.json("GET", "/api/phone", &qr2, Value::Null).await;
    assert_eq!(st, 401);
    assert_eq!(head(&hub), before, "a refused code appends nothing");
}

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0D, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D,
    0x1D, 0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_reach_the_house_board_with_their_picture() {
    let hub = hub_with_meeting().await;
    let chair = hub.token(Role::Chair, "chair");
    let official = hub.token(Role::Official, "can-bo-1");
    let house = hub.token(Role::House, "house-1");
    // A picture is typed by its bytes, whatever the request says.
    let (st, body) = hub
        .put(
            "/api/notices/pictures",
            &chair,
            "image/png",
            b"<svg onload=alert(1)>".to_vec(),
        )
        .await;
    assert_eq!(st, 415, "{body}");
    let (st, body) = hub
        .put("/api/notices/pictures", &house, "image/png", PNG.to_vec())
        .await;
    assert_eq!(st, 403, "a house posts no pictures: {body}");
    let (st, body) = hub
        .put(
            "/api/notices/pictures",
            &official,
            "image/png",
            PNG.to_vec(),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let pic: Value = serde_json::from_str(&body).unwrap();
    let name = pic["name"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".png") && name.len() == 68);
    // Too large: refused before it is stored.
    let big = [PNG, &vec![0u8; dinh_web::notices::MAX_PICTURE_BYTES]].concat();
    let (st, _) = hub
        .put("/api/notices/pictures", &chair, "image/png", big)
        .await;
    assert_eq!(st, 413);

    let post = |body: Value| {
        let chair = chair.clone();
        let hub = &hub;
        async move { hub.post("/api/notices", &chair, body).await }
    };
    let before = head(&hub);
    let refused = [
        (
            json!({"title": " ", "text": "x", "valid_from": "2026-01-01", "valid_until": "2099-01-01"}),
            "invalid title: must not be empty",
        ),
        (
            json!({"title": "x", "text": "x", "valid_from": "2026-02-01", "valid_until": "2026-01-01"}),
            "invalid valid_until: before valid_from",
        ),
        (
            json!({"title": "x", "text": "x", "valid_from": "1-2-3", "valid_until": "2026-01-01"}),
            "invalid valid_from: not a date (YYYY-MM-DD)",
        ),
        (
            json!({"title": "x", "text": "x", "valid_from": "2026-01-01", "valid_until": "2026-12-01",
                "picture": "../signing.key"}),
            "invalid picture: not an uploaded picture",
        ),
    ];
    for (body, why) in refused {
        let (st, v) = post(body).await;
        assert_eq!((st, v["message"].as_str()), (422, Some(why)));
    }
    assert_eq!(head(&hub), before, "refused notices appended nothing");

    let today = today();
    let (st, v) = post(json!({"title": "Lịch tiêm phòng dại", "text": "Thứ Bảy tại nhà văn hoá thôn 2.",
        "valid_from": today.to_string(), "valid_until": (today + time::Duration::days(7)).to_string(), "picture": name})).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (st, future) = post(json!({"title": "Tháng sau", "text": "Chưa hiện", "valid_from": (today + time::Duration::days(30)).to_string(),
        "valid_until": (today + time::Duration::days(40)).to_string()})).await;
    assert_eq!(st, 201, "{future}");

    // The house's board shows today's notice with its picture, not next month's.
    let (st, board) = hub.json("GET", "/api/board", &house, Value::Null).await;
    assert_eq!(st, 200, "{board}");
    let notices = board["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{board}");
    assert_eq!(notices[0]["title"], "Lịch tiêm phòng dại");
    assert_eq!(notices[0]["picture"]["name"], name.as_str());
    assert_eq!(board["open"]["id"], "m1");
    assert_eq!(board["open"]["agenda"][0]["state"], "waiting");
    let r = hub
        .request(
            "GET",
            &format!("/api/notices/pictures/{name}"),
            vec![("authorization".into(), format!("Bearer {house}"))],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    // The chair sees both, the house only what is shown today.
    let (_, list) = hub.json("GET", "/api/notices", &chair, Value::Null).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, list) = hub.json("GET", "/api/notices", &house, Value::Null).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Another room's chair cannot withdraw it, nor see the picture.
    let elsewhere = hub.token_in(Role::Chair, "chair", "other");
    let (st, _) = hub
        .post(
            &format!("/api/notices/{id}/withdraw"),
            &elsewhere,
            json!({}),
        )
        .await;
    assert_eq!(st, 404);
    let r = hub
        .request(
            "GET",
            &format!("/api/notices/pictures/{name}"),
            vec![("authorization".into(), format!("Bearer {elsewhere}"))],
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    // A house cannot withdraw it; the official can, once.
    let (st, _) = hub
        .post(&format!("/api/notices/{id}/withdraw"), &house, json!({}))
        .await;
    assert_eq!(st, 403);
    let (st, v) = hub
        .post(
            &format!("/api/notices/{id}/withdraw"),
            &official,
            json!({"reason": "Đã hoãn"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = hub
        .post(&format!("/api/notices/{id}/withdraw"), &official, json!({}))
        .await;
    assert_eq!(
        (st, v["message"].as_str()),
        (409, Some("the notice is already withdrawn"))
    );
    let (_, board) = hub.json("GET", "/api/board", &house, Value::Null).await;
    assert!(board["notices"].as_array().unwrap().is_empty(), "{board}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_this_house_s_items_and_their_answers() {
    let hub = hub_with_meeting().await;
    let chair = hub.token(Role::Chair, "chair");
    let official = hub.token(Role::Official, "can-bo-1");
    let h1 = hub.token(Role::House, "house-1");
    let h2 = hub.token(Role::House, "house-2");
    let (st, v) = hub
        .post(
            "/api/feedback",
            &h1,
            json!({"meeting": "m1", "agenda_item": 0, "content": "Đường hỏng"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["aggregate_id"].as_str().unwrap().to_owned();
    let (st, _) = hub
        .post(
            "/api/feedback",
            &h2,
            json!({"meeting": "m1", "content": "Của thôn 2"}),
        )
        .await;
    assert_eq!(st, 201);
    for cmd in [
        json!({"type": "classify", "kind": "feedback"}),
        json!({"type": "assign", "official": "can-bo-1"}),
    ] {
        let (st, v) = hub
            .json("POST", &format!("/api/feedback/{id}/commands"), &chair, cmd)
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = hub
        .post(
            &format!("/api/feedback/{id}/commands"),
            &official,
            json!({"type": "answer", "answer": "Sẽ sửa trong tháng 12"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    hub.command("m1", json!({"type": "start_agenda_item", "index": 1}))
        .await;
    let (_, board) = hub.json("GET", "/api/board", &h1, Value::Null).await;
    let items = board["feedback"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only its own house's items: {board}");
    assert_eq!(items[0]["status"], "answered");
    assert_eq!(items[0]["answer"], "Sẽ sửa trong tháng 12");
    assert_eq!(items[0]["agenda_item"], "Đường liên thôn");
    assert_eq!(board["open"]["current_item"], 1);
    assert_eq!(board["open"]["agenda"][1]["state"], "current");
    assert_eq!(board["house"]["name"], "Nhà văn hoá thôn 1");
    // The chair's board has no house items.
    let (_, board) = hub.json("GET", "/api/board", &chair, Value::Null).await;
    assert!(board["feedback"].as_array().unwrap().is_empty());
    // A receiver has no board.
    let rx = hub.token(Role::Receiver, "thon-1");
    let (st, _) = hub.json("GET", "/api/board", &rx, Value::Null).await;
    assert_eq!(st, 403);
}

/// A phone's photo: a real JPEG (ffmpeg's encoder) with an EXIF block in front, as phones
/// write it, saying where it was taken and that it is turned a quarter.
fn phone_photo(dir: &std::path::Path) -> Vec<u8> {
    let jpg = dir.join("photo.jpg");
    let ok = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48",
        ])
        .args(["-frames:v", "1"])
        .arg(&jpg)
        .status()
        .expect("ffmpeg (ops/test installs it)");
    assert!(ok.success());
    let plain = std::fs::read(&jpg).unwrap();
    let place = b"GPS 21.0285N 105.8542E\0";
    let mut tiff = b"II\x2a\x00\x08\x00\x00\x00\x02\x00".to_vec();
    // ImageDescription (ASCII), its text after the directory (8 + 2 + 2 * 12 + 4 = 38).
    tiff.extend_from_slice(&[0x0E, 0x01, 2, 0]);
    tiff.extend_from_slice(&(place.len() as u32).to_le_bytes());
    tiff.extend_from_slice(&38u32.to_le_bytes());
    // Orientation 6: turned a quarter clockwise.
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    tiff.extend_from_slice(place);
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    [&plain[..2], &app1, &plain[2..]].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_picture_is_stored_without_where_it_was_taken() {
    let hub = Hub::start(|_| {}).await;
    let dir = hub.state.config.data.join("photo");
    std::fs::create_dir_all(&dir).unwrap();
    let photo = phone_photo(&dir);
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(has(&photo, b"21.0285N"));
    let chair = hub.token(Role::Chair, "chair");
    let (st, body) = hub
        .put("/api/notices/pictures", &chair, "image/jpeg", photo)
        .await;
    assert_eq!(st, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let name = v["name"].as_str().unwrap();
    let stored = std::fs::read(hub.state.config.data.join("notices/demo").join(name)).unwrap();
    assert_eq!(v["bytes"], stored.len());
    assert!(!has(&stored, b"21.0285N"), "the place is gone");
    // Still the same picture, the right way up: ffmpeg decodes it and reads the orientation.
    let out = dir.join("stored.jpg");
    std::fs::write(&out, &stored).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-show_frames"])
        .args(["-of", "default=nw=1"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.status.success() && probe.stderr.is_empty(), "{text}");
    assert!(
        text.contains("width=64") && text.contains("height=48"),
        "{text}"
    );
    assert!(
        text.contains("rotation=-90"),
        "the orientation is kept: {text}"
    );
    let decoded = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&out)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decoded.status.success() && decoded.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
}
