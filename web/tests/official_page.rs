//! The officials' page in headless Chromium, against a real hub: an official filters the
//! register, opens an item, reads its history, assigns and answers it through the forms; a
//! refused action shows its message in words; the minutes laid out for print show the
//! checkpoint; the pictures are drawn; the log verifies from the page; on a 360 px phone
//! nothing is wider than the screen; the English page has no Vietnamese left. Screenshots go
//! to target/e2e/official-*.png, the printed minutes to target/e2e/official-minutes.pdf.
//!
//! The test reads results from the record and acts on the record only for what other people
//! do (the houses raising and withdrawing feedback).

mod common;

use std::time::Duration;

use fantoccini::wd::PrintConfiguration;
use serde_json::Value;
use time::OffsetDateTime;

use common::browser::{
    browser_sized, chromedriver, emulate_phone, emulate_print, screenshot, wanted,
};
use common::official_page::{self as page, until};
use dinh_events::domain::feedback::{FeedbackAction, FeedbackKind};
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::domain::{Actor, ActorRole, Command};
use dinh_web::auth::Role;

async fn meeting_cmd(s: &dinh_web::AppState, who: Actor, action: MeetingAction) {
    let now = OffsetDateTime::now_utc();
    s.recording
        .record
        .meeting("m1", Command::new(now, who, action), None)
        .await
        .unwrap();
}

async fn feedback_cmd(s: &dinh_web::AppState, id: &str, who: Actor, action: FeedbackAction) {
    let now = OffsetDateTime::now_utc();
    s.recording
        .record
        .feedback(id, Command::new(now, who, action), None)
        .await
        .unwrap();
}

/// The meeting and what the houses raised in it, as the chair and the houses would have.
async fn seed(s: &dinh_web::AppState) {
    let chair = || Actor::new(ActorRole::Chair, "chair");
    let schedule = MeetingAction::Schedule {
        room: "demo".into(),
        title: "Họp dân quý IV".into(),
        starts_at: OffsetDateTime::now_utc(),
        agenda: vec!["Giao thông nông thôn".into(), "Thủy lợi".into()],
    };
    meeting_cmd(s, chair(), schedule).await;
    meeting_cmd(s, chair(), MeetingAction::Open).await;
    meeting_cmd(s, chair(), MeetingAction::StartAgendaItem { index: 0 }).await;
    for h in ["house-1", "house-2", "house-3"] {
        let sfu = Actor::system("sfu");
        let connect = MeetingAction::ConnectHouse {
            house: h.into(),
            connection: format!("c-{h}"),
        };
        meeting_cmd(s, sfu, connect).await;
        meeting_cmd(
            s,
            chair(),
            MeetingAction::ReportHeadcount {
                house: h.into(),
                count: 25,
            },
        )
        .await;
    }
    let items = [
        ("a", "house-2", "Đèn đường thôn 2 hỏng từ tháng trước"),
        ("b", "house-1", "Mương thủy lợi đầu làng bị lấp"),
        ("c", "house-3", "Đề nghị làm lại cầu tràn"),
        ("d", "house-1", "Trường mầm non thiếu nước sạch"),
    ];
    for (id, house, content) in items {
        let raise = FeedbackAction::Raise {
            meeting: "m1".into(),
            agenda_item: Some(0),
            house: house.into(),
            content: content.into(),
        };
        feedback_cmd(s, id, Actor::new(ActorRole::House, house), raise).await;
    }
    // "d" is already with can-bo-1, who will be answering it when its house withdraws it.
    let o = || Actor::new(ActorRole::Official, "can-bo-1");
    feedback_cmd(
        s,
        "d",
        o(),
        FeedbackAction::Classify {
            kind: FeedbackKind::Feedback,
        },
    )
    .await;
    let assign = FeedbackAction::Assign {
        official: "can-bo-1".into(),
        working_days: None,
    };
    feedback_cmd(s, "d", o(), assign).await;
    meeting_cmd(
        s,
        chair(),
        MeetingAction::GrantFloor {
            house: "house-1".into(),
        },
    )
    .await;
    meeting_cmd(s, chair(), MeetingAction::RevokeFloor).await;
    meeting_cmd(s, chair(), MeetingAction::EndAgendaItem).await;
}

/// The layout width of a phone's page (a phone widens it to fit content wider than the
/// screen), and the elements that stick out past 360 px, to name the culprit.
const WIDTH: &str = "return {inner: window.innerWidth, wide: [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 361 && e.offsetParent !== null && !e.closest('.scroll')).slice(0, 8).map((e) => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))};";

async fn text(c: &fantoccini::Client, js: &str) -> String {
    c.execute(&format!("return ({js});"), vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_official_works_the_register_from_the_page() {
    if !wanted() {
        return;
    }
    let (_driver, port) = chromedriver().await;
    let data = common::app::data_dir("official");
    let state = common::app::state_in(&data).await;
    seed(&state).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dinh_web::run(listener, state.clone(), async {
        let _ = stop_rx.await;
    }));
    let token = state.keys.issue(
        "can-bo-1",
        "Nguyễn Thị Lan",
        Role::Official,
        "demo",
        Duration::from_secs(3600),
    );

    // Desktop: the register, then a filter by house.
    let c = browser_sized(port, 0, 1280, 900).await;
    page::open(&c, &base, &token).await;
    assert_eq!(
        text(&c, "location.search").await,
        "?lang=vi",
        "the token left the address bar"
    );
    until(
        &c,
        "four items",
        20,
        "document.querySelectorAll('#regRows tr').length === 4",
    )
    .await;
    until(
        &c,
        "house names from the directory",
        20,
        "document.getElementById('regRows').textContent.includes('Nhà văn hoá thôn 2')",
    )
    .await;
    page::choose(&c, "#fHouse", "house-1").await;
    until(
        &c,
        "only house-1's items",
        20,
        "document.querySelectorAll('#regRows tr').length === 2 && location.hash.includes('house=house-1')",
    )
    .await;
    let summary = text(&c, "document.getElementById('regSummary').textContent").await;
    assert!(
        summary.contains("trong 2 ý kiến") && summary.contains("tất cả: 4"),
        "{summary}"
    );
    screenshot(&c, "official-register").await;
    page::click(&c, "#resetFilters").await;

    // The item raised by house-2: its history, then assigned and answered through the forms.
    let id = page::open_item(&c, "Đèn đường thôn 2").await;
    assert_eq!(id, "a");
    let history = text(&c, "document.getElementById('history').textContent").await;
    assert!(history.contains("nêu ý kiến"), "{history}");
    let id = page::assigns_and_answers(&c, "Đèn đường thôn 2", "Đã thay bóng đèn ngày 20/11").await;
    let history = text(&c, "document.getElementById('history').textContent").await;
    assert!(
        history.contains("phân loại: Phản ánh, kiến nghị")
            && history.contains("giao cho can-bo-1")
            && history.contains("trả lời: Đã thay bóng đèn"),
        "{history}"
    );
    screenshot(&c, "official-item").await;
    let row = state
        .recording
        .views
        .read()
        .await
        .feedback
        .get(&id)
        .cloned()
        .unwrap();
    assert_eq!(
        (row.status.as_str(), row.assignee.as_deref()),
        ("answered", Some("can-bo-1"))
    );
    assert_eq!(row.answer.as_deref(), Some("Đã thay bóng đèn ngày 20/11"));

    // A form checks itself before sending: an empty answer names the field.
    page::open_item(&c, "Trường mầm non").await;
    let facts = text(&c, "document.getElementById('itemFacts').textContent").await;
    assert!(
        facts.contains("còn 15 ngày làm việc"),
        "the deadline in working days: {facts}"
    );
    page::click(&c, "#fAnswer button[type=submit]").await;
    let err = text(&c, "document.getElementById('itemError').textContent").await;
    assert_eq!(err, "Câu trả lời: chưa được điền");
    // While the official writes the answer, the house withdraws the item: the page offers a
    // reload instead of wiping the text, and the answer sent anyway is refused in words.
    page::type_into(&c, "#aAnswer", "Đã lắp bồn nước").await;
    let head = state.recording.store().head();
    let withdraw = FeedbackAction::Withdraw {
        reason: Some("Đã tự khắc phục".into()),
    };
    feedback_cmd(
        &state,
        "d",
        Actor::new(ActorRole::House, "house-1"),
        withdraw,
    )
    .await;
    until(
        &c,
        "the changed-item notice",
        20,
        "!document.getElementById('itemChanged').classList.contains('hidden')",
    )
    .await;
    assert_eq!(
        text(&c, "document.getElementById('aAnswer').value").await,
        "Đã lắp bồn nước"
    );
    page::click(&c, "#fAnswer button[type=submit]").await;
    until(
        &c,
        "the refusal",
        20,
        "document.getElementById('itemError').textContent",
    )
    .await;
    let err = text(&c, "document.getElementById('itemError').textContent").await;
    assert_eq!(err, "Không làm được việc này khi ý kiến đã rút.");
    assert_eq!(
        state.recording.store().head(),
        head + 1,
        "the refused answer appended nothing"
    );
    page::item_reaches(&c, "withdrawn").await;

    // Minutes: the meeting closes, a checkpoint is signed; the print layout shows the
    // commune's header and the checkpoint, and nothing of the page around it.
    meeting_cmd(
        &state,
        Actor::new(ActorRole::Chair, "chair"),
        MeetingAction::Close,
    )
    .await;
    state.recording.checkpoint_now().await;
    let checkpoint = state
        .recording
        .store()
        .checkpoints()
        .await
        .unwrap()
        .pop()
        .unwrap();
    c.execute("location.hash = '#minutes/m1';", vec![])
        .await
        .unwrap();
    until(
        &c,
        "the minutes with their checkpoint",
        20,
        &format!(
            "document.getElementById('minutesDoc').textContent.includes('{}')",
            checkpoint.root_hash
        ),
    )
    .await;
    let doc = text(&c, "document.getElementById('minutesDoc').textContent").await;
    for needle in [
        "Ủy ban nhân dân Xã Đình (demo)",
        "Độc lập - Tự do - Hạnh phúc",
        "Biên bản cuộc họp",
        "Giao thông nông thôn",
        "Đèn đường thôn 2 hỏng",
        "Chủ tọa",
        &checkpoint.key,
        &format!("{}", checkpoint.tree_size),
    ] {
        assert!(doc.contains(needle), "minutes lack {needle:?}: {doc}");
    }
    emulate_print(&c, true).await;
    let hidden = c
        .execute(
            "return [document.querySelector('header'), document.querySelector('nav.tabs'), document.querySelector('#minutes .controls')].map((e) => getComputedStyle(e).display)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        hidden,
        serde_json::json!(["none", "none", "none"]),
        "the print layout keeps the page's chrome"
    );
    let font = text(
        &c,
        "getComputedStyle(document.getElementById('minutesDoc')).fontFamily",
    )
    .await;
    assert!(font.contains("Times New Roman"), "{font}");
    screenshot(&c, "official-minutes-print").await;
    emulate_print(&c, false).await;
    let pdf = c
        .print(PrintConfiguration::builder().build().unwrap())
        .await
        .unwrap();
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e");
    std::fs::write(out.join("official-minutes.pdf"), &pdf).unwrap();

    // Pictures: bars for statuses and kinds, the overdue line, the attendance grid.
    c.execute("location.hash = '#charts';", vec![])
        .await
        .unwrap();
    until(
        &c,
        "the charts",
        20,
        "document.querySelectorAll('#chartAttendance rect').length >= 3",
    )
    .await;
    let bars = c
        .execute(
            "return document.querySelectorAll('#chartStatus rect.bar').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(bars, Value::from(8), "a bar per status");
    let answered_label = text(&c, "[...document.querySelectorAll('#chartStatus text.label')].map((t) => t.textContent).join('|')").await;
    assert!(answered_label.contains("đã trả lời"), "{answered_label}");
    assert!(text(
        &c,
        "document.querySelector('#chartOverdue polyline').getAttribute('points')"
    )
    .await
    .contains(','));
    screenshot(&c, "official-charts").await;

    // The log verifies from the page; a second run within the minute is refused in words.
    c.execute("location.hash = '#exports';", vec![])
        .await
        .unwrap();
    until(
        &c,
        "the integrity facts",
        20,
        &format!(
            "document.getElementById('integrity').textContent.includes('{}')",
            state.recording.signer.log_vkey()
        ),
    )
    .await;
    // The page opens on the start-up check (the hub started empty); the run reads the log.
    page::click(&c, "#verifyNow").await;
    until(
        &c,
        "the verification",
        60,
        "(t => t.startsWith('Sổ ghi nguyên vẹn') && !t.includes('đã kiểm 0 sự kiện'))\
         (document.getElementById('verifyResult').textContent)",
    )
    .await;
    page::click(&c, "#verifyNow").await;
    until(
        &c,
        "the refusal of a second run",
        20,
        "document.getElementById('verifyNote').textContent.includes('có thể kiểm tra lại sau')",
    )
    .await;
    let kept = text(&c, "document.getElementById('verifyResult').textContent").await;
    assert!(
        kept.starts_with("Sổ ghi nguyên vẹn"),
        "the last result stays: {kept}"
    );
    page::click(&c, "#exFeedback").await;
    until(
        &c,
        "the CSV downloaded",
        20,
        "document.getElementById('exportMsg').textContent.startsWith('Đã tải về feedback.csv')",
    )
    .await;
    page::click(&c, "#exLog").await;
    until(
        &c,
        "the log downloaded",
        20,
        "document.getElementById('exportMsg').textContent.startsWith('Đã tải về dinh-log-demo-')",
    )
    .await;
    screenshot(&c, "official-exports").await;

    // English: the same page, no Vietnamese letter left in what it says (names aside).
    c.execute("location.hash = '#register';", vec![])
        .await
        .unwrap();
    page::click(&c, "button.lang").await;
    until(&c, "the English page", 20, "document.documentElement.lang === 'en' && document.querySelector('nav.tabs').textContent.includes('Register')").await;
    // What the page says; the houses' and meetings' names are data and stay as written.
    let chrome = text(&c, "[...document.querySelectorAll('header h1 > span:first-child, nav.tabs, #register h2, #filters label, #fStatus option, #fKind option, #fSort option, #filters button, #regTable thead, #regSummary, #pageInfo, #prevPage, #nextPage')].map((e) => e.textContent).join(' ')").await;
    let vietnamese = |ch: char| matches!(ch, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}');
    assert!(
        !chrome.chars().any(vietnamese),
        "Vietnamese left in English: {chrome}"
    );
    screenshot(&c, "official-register-en").await;
    let csp = c
        .execute("return window.dinhCspViolations", vec![])
        .await
        .unwrap();
    assert_eq!(csp, serde_json::json!([]), "CSP violations");
    let _ = c.close().await;

    // A phone, 360 px wide: the register as cards, an item, the minutes; nothing wider.
    let phone = browser_sized(port, 1, 400, 900).await;
    emulate_phone(&phone, 360, 780).await;
    page::open(&phone, &base, &token).await;
    let w = phone.execute(WIDTH, vec![]).await.unwrap();
    assert_eq!(w["inner"], 360, "the register overflows a phone: {w}");
    screenshot(&phone, "official-register-360").await;
    page::open_item(&phone, "Đèn đường thôn 2").await;
    let w = phone.execute(WIDTH, vec![]).await.unwrap();
    assert_eq!(w["inner"], 360, "an item overflows a phone: {w}");
    screenshot(&phone, "official-item-360").await;
    phone
        .execute("location.hash = '#minutes/m1';", vec![])
        .await
        .unwrap();
    until(
        &phone,
        "the minutes on a phone",
        20,
        "document.getElementById('minutesDoc').textContent.length > 100",
    )
    .await;
    let w = phone.execute(WIDTH, vec![]).await.unwrap();
    assert_eq!(w["inner"], 360, "the minutes overflow a phone: {w}");
    screenshot(&phone, "official-minutes-360").await;
    let _ = phone.close().await;

    // The screenshots are pictures of something.
    let png = std::fs::read(out.join("official-register.png")).unwrap();
    assert!(png.len() > 10_000, "an empty screenshot");
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
