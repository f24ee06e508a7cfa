//! An official at work on the `/official` page, as a person would do it: the steps other browser
//! tests call (the end-to-end test of issue 10 hands its feedback item to an official here).

use fantoccini::{Client, Locator};
use serde_json::Value;

use super::browser::wait_js;

/// Wait until the expression `js` is truthy; its value.
pub async fn until(c: &Client, what: &str, secs: u64, js: &str) -> Value {
    wait_js(c, what, secs, &format!("return ({js});")).await
}

/// Open the officials' page with `token` (in Vietnamese) and wait for the register.
pub async fn open(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/official?lang=vi&token={token}"))
        .await
        .unwrap();
    until(c, "the register shown", 30, "window.dinhRegisterShownAt").await;
}

/// Type `text` into the field `css` (replacing what is there), as a person types.
pub async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Choose `value` in the select `css`.
pub async fn choose(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

/// Click `css`.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The status of the item the page shows, once it is `status`.
pub async fn item_reaches(c: &Client, status: &str) {
    until(
        c,
        &format!("the item {status}"),
        20,
        &format!(
            "window.dinhOfficial.state.item && window.dinhOfficial.state.item.status === '{status}' \
             && !document.getElementById('itemCard').closest('section').classList.contains('hidden')"
        ),
    )
    .await;
}

/// Search the register for `content`, open the item, and wait for its history.
pub async fn open_item(c: &Client, content: &str) -> String {
    click(c, "a[href='#register']").await;
    type_into(c, "#fQ", content).await;
    click(c, "#filters button[type=submit]").await;
    let prefix = serde_json::to_string(&content.chars().take(40).collect::<String>()).unwrap();
    until(
        c,
        "the item in the register",
        20,
        &format!("[...document.querySelectorAll('#regRows a')].some((a) => a.textContent.startsWith({prefix}))"),
    )
    .await;
    c.execute(
        &format!("[...document.querySelectorAll('#regRows a')].find((a) => a.textContent.startsWith({prefix})).click();"),
        vec![],
    )
    .await
    .unwrap();
    until(
        c,
        "the item's history",
        20,
        "document.querySelectorAll('#history li').length > 0 && window.dinhOfficial.state.item",
    )
    .await;
    let id = c
        .execute("return window.dinhOfficial.state.item.id", vec![])
        .await
        .unwrap();
    id.as_str().unwrap().to_owned()
}

/// Whether the form `id` is offered.
pub async fn offered(c: &Client, id: &str) -> bool {
    c.execute(
        &format!("return !document.getElementById('{id}').classList.contains('hidden')"),
        vec![],
    )
    .await
    .unwrap()
        == Value::Bool(true)
}

/// The official of `token` finds the item raised with `content`, classifies it as feedback if
/// nobody has, assigns it to themself and answers it with `answer`, all through the page's
/// forms. Returns the item's id. The page must be open ([`open`]).
pub async fn assigns_and_answers(c: &Client, content: &str, answer: &str) -> String {
    let id = open_item(c, content).await;
    if offered(c, "fClassify").await {
        choose(c, "#aKind", "feedback").await;
        click(c, "#fClassify button[type=submit]").await;
        item_reaches(c, "classified").await;
    }
    click(c, "#assignMe").await;
    click(c, "#fAssign button[type=submit]").await;
    item_reaches(c, "assigned").await;
    until(
        c,
        "the answer form",
        20,
        "!document.getElementById('fAnswer').classList.contains('hidden')",
    )
    .await;
    type_into(c, "#aAnswer", answer).await;
    click(c, "#fAnswer button[type=submit]").await;
    item_reaches(c, "answered").await;
    id
}
