//! The browser pages, compiled into the binary: nothing to install beside it, nothing fetched
//! from the internet (a commune's LAN may have no uplink).
//!
//! Each page is an HTML file with no inline script, no inline event handler and no `style=`
//! attribute, so that it runs under the strict Content-Security-Policy below; its script and
//! the shared ones are files under `/assets/`. Strings live in one table per language
//! (`pages/i18n/vi.json`, `en.json`); the pages fill them in (`pages/dinh.js`). What must stay
//! true, checked by the tests at the bottom: every key a page uses exists in both tables, the
//! English table has no Vietnamese left and the Vietnamese table no English sentence.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::AppState;

/// Pages: path, file.
const PAGES: &[(&str, &str)] = &[
    ("/", include_str!("pages/index.html")),
    ("/chair", include_str!("pages/chair.html")),
    ("/house", include_str!("pages/house.html")),
    ("/official", include_str!("pages/official.html")),
    ("/phone", include_str!("pages/phone.html")),
];

/// Assets under `/assets/`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("dinh.js", JS, include_str!("pages/dinh.js")),
    ("client.js", JS, include_str!("pages/client.js")),
    ("chair.js", JS, include_str!("pages/chair.js")),
    ("house.js", JS, include_str!("pages/house.js")),
    ("official.js", JS, include_str!("pages/official.js")),
    (
        "official.css",
        "text/css; charset=utf-8",
        include_str!("pages/official.css"),
    ),
    ("phone.js", JS, include_str!("pages/phone.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("pages/style.css"),
    ),
    ("i18n/vi.json", JSON, include_str!("pages/i18n/vi.json")),
    ("i18n/en.json", JSON, include_str!("pages/i18n/en.json")),
];

const JS: &str = "text/javascript; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// The namespaces of strings that belong to one page (`chair.*` on `/chair`, `index.*` on
/// `/`). A page loads its table, `/assets/i18n/PAGE/LANG.json`: the language's table without
/// the other pages' namespaces, so that a page weighs its own strings and the shared ones
/// (`common.*`, `client.*`, `error.*`, `field.*`, `feedback.*`, …), not every page's.
const PAGE_NAMESPACES: &[&str] = &["index", "chair", "house", "official", "phone"];

/// The namespace of a page's own strings: `/chair` → `chair`, `/` → `index`.
fn page_namespace(path: &str) -> &str {
    match path.trim_start_matches('/') {
        "" => "index",
        p => p,
    }
}

/// Every page's table in every language: (asset name, body, ETag), made once from the
/// language tables above (which the tests check are JSON objects of strings and plural sets).
fn page_tables() -> &'static [(String, String, String)] {
    static TABLES: OnceLock<Vec<(String, String, String)>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut out = Vec::new();
        for (lang, src) in ASSETS.iter().filter_map(|(n, _, b)| {
            let lang = n.strip_prefix("i18n/")?.strip_suffix(".json")?;
            Some((lang, *b))
        }) {
            let full: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(src).unwrap_or_default();
            for (path, _) in PAGES {
                let own = page_namespace(path);
                let kept: serde_json::Map<String, serde_json::Value> = full
                    .iter()
                    .filter(|(k, _)| {
                        let ns = k.split('.').next().unwrap_or_default();
                        ns == own || !PAGE_NAMESPACES.contains(&ns)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let body = serde_json::Value::Object(kept).to_string();
                let d = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
                let etag = format!("\"{}\"", hex::encode(&d.as_ref()[..12]));
                out.push((format!("i18n/{own}/{lang}.json"), body, etag));
            }
        }
        out
    })
}

/// Routes of the pages and their assets.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for (i, (path, _)) in PAGES.iter().enumerate() {
        r = r.route(path, get(move |h: HeaderMap| async move { page(i, &h) }));
    }
    r.route("/assets/{*name}", get(asset))
}

/// A strong validator per file, computed once: pages and assets are revalidated on every load
/// (`no-cache`), which costs a 304 and no body on a slow village link.
fn etags() -> &'static Vec<String> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        PAGES
            .iter()
            .map(|(_, body)| *body)
            .chain(ASSETS.iter().map(|(_, _, body)| *body))
            .map(|body| {
                let d = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
                format!("\"{}\"", hex::encode(&d.as_ref()[..12]))
            })
            .collect()
    })
}

fn respond(etag: &str, ctype: &'static str, body: &'static str, h: &HeaderMap) -> Response {
    let fresh = h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(etag).expect("hex in quotes is a valid header"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, body).into_response()
    }
}

/// A page. Its Content-Security-Policy, `Referrer-Policy: no-referrer` (a token may be in
/// the address when the page loads) and `X-Frame-Options` come from the app's one security
/// middleware (`server::security_layer`), as for every response.
fn page(i: usize, h: &HeaderMap) -> Response {
    respond(&etags()[i], "text/html; charset=utf-8", PAGES[i].1, h)
}

async fn asset(Path(name): Path<String>, h: HeaderMap) -> Response {
    match ASSETS.iter().position(|(n, _, _)| *n == name) {
        Some(i) => {
            let (_, ctype, body) = ASSETS[i];
            respond(&etags()[PAGES.len() + i], ctype, body, &h)
        }
        None => match page_tables().iter().find(|(n, _, _)| *n == name) {
            Some((_, body, etag)) => respond(etag, JSON, body, &h),
            None => not_found(&name),
        },
    }
}

fn not_found(name: &str) -> Response {
    crate::error::AppError::new(
        StatusCode::NOT_FOUND,
        "no_such_asset",
        format!("there is no asset '{name}'"),
    )
    .into_response()
}

/// The weight of every page: its HTML, the scripts and stylesheet it loads and its strings
/// in one language, raw bytes.
#[cfg(test)]
fn weights() -> Vec<(&'static str, usize, Vec<&'static str>)> {
    PAGES
        .iter()
        .map(|(path, html)| {
            let mut files: Vec<&'static str> = Vec::new();
            for part in html.split("src=\"/assets/").skip(1) {
                files.push(&part[..part.find('"').unwrap_or(0)]);
            }
            for part in html.split("href=\"/assets/").skip(1) {
                files.push(&part[..part.find('"').unwrap_or(0)]);
            }
            let table = format!("i18n/{}/vi.json", page_namespace(path));
            let table = page_tables()
                .iter()
                .find(|(n, _, _)| *n == table)
                .map(|(n, b, _)| (n.as_str(), b.len()));
            let bytes = html.len()
                + files
                    .iter()
                    .filter_map(|f| ASSETS.iter().find(|(n, _, _)| n == f))
                    .map(|(_, _, b)| b.len())
                    .sum::<usize>()
                + table.map_or(0, |t| t.1);
            files.extend(table.map(|t| t.0));
            (*path, bytes, files)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn table(src: &str) -> BTreeMap<String, String> {
        let v: serde_json::Value = serde_json::from_str(src).expect("the table is JSON");
        let mut out = BTreeMap::new();
        for (k, v) in v.as_object().expect("an object of keys") {
            match v {
                serde_json::Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                // A plural set: one string per Intl.PluralRules category.
                serde_json::Value::Object(forms) => {
                    assert!(
                        forms.contains_key("other"),
                        "{k}: a plural set needs 'other'"
                    );
                    for (form, s) in forms {
                        let s = s.as_str().unwrap_or_else(|| panic!("{k}.{form}: a string"));
                        out.insert(format!("{k}#{form}"), s.to_owned());
                    }
                }
                _ => panic!("{k}: a string or a plural set"),
            }
        }
        out
    }

    fn base_keys(t: &BTreeMap<String, String>) -> std::collections::BTreeSet<String> {
        t.keys()
            .map(|k| k.split('#').next().unwrap_or(k).to_owned())
            .collect()
    }

    fn vi() -> BTreeMap<String, String> {
        table(include_str!("pages/i18n/vi.json"))
    }
    fn en() -> BTreeMap<String, String> {
        table(include_str!("pages/i18n/en.json"))
    }

    /// A letter only Vietnamese (of the two languages) writes: Latin with diacritics, đ.
    fn vietnamese_letter(c: char) -> bool {
        matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}')
    }

    /// Strings that are the same in both languages on purpose: names, units, symbols.
    const SAME_IN_BOTH: &[&str] = &["{n} ms"];

    /// Proper names that keep their Vietnamese spelling in English.
    const NAMES: &[&str] = &["Đình", "Tiếng Việt"];

    /// The words of a string: no placeholders, no allowed names.
    fn words(s: &str) -> String {
        let mut out = String::new();
        for (i, part) in s.split('{').enumerate() {
            out.push_str(if i == 0 {
                part
            } else {
                part.split_once('}').map_or(part, |p| p.1)
            });
        }
        NAMES.iter().fold(out, |o, n| o.replace(n, ""))
    }

    #[test]
    fn both_tables_have_the_same_keys() {
        let (vi, en) = (base_keys(&vi()), base_keys(&en()));
        let only_vi: Vec<_> = vi.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&vi).collect();
        assert!(only_vi.is_empty(), "missing in en.json: {only_vi:?}");
        assert!(only_en.is_empty(), "missing in vi.json: {only_en:?}");
    }

    #[test]
    fn placeholders_match_between_languages() {
        let names = |s: &str| -> std::collections::BTreeSet<String> {
            s.split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_owned()))
                .collect()
        };
        let (vi, en) = (vi(), en());
        for (k, v) in &vi {
            let base = k.split('#').next().unwrap_or(k);
            // A plural form may leave the count out ("một nhà"); compare against any form.
            let other: std::collections::BTreeSet<String> = en
                .iter()
                .filter(|(ek, _)| ek.split('#').next() == Some(base))
                .flat_map(|(_, s)| names(s))
                .collect();
            for n in names(v) {
                assert!(
                    other.contains(&n),
                    "{k}: {{{n}}} is not in the English string"
                );
            }
        }
    }

    #[test]
    fn english_has_no_vietnamese_left() {
        for (k, s) in en() {
            assert!(
                !words(&s).chars().any(vietnamese_letter),
                "en.json {k} is still Vietnamese: {s:?}"
            );
        }
    }

    #[test]
    fn vietnamese_has_no_english_sentence() {
        let en = en();
        for (k, s) in vi() {
            // Nothing to translate: placeholders and punctuation only, or a unit.
            if SAME_IN_BOTH.contains(&s.as_str()) || !words(&s).chars().any(char::is_alphabetic) {
                continue;
            }
            if k == "common.other_lang" {
                continue; // the switch names the other language, in it
            }
            assert!(
                en.get(&k) != Some(&s),
                "vi.json {k} is the English string untranslated: {s:?}"
            );
            // Two or more words of plain ASCII letters and not one Vietnamese letter: an
            // English sentence left in (Vietnamese prose always has diacritics).
            let words = s
                .split(|c: char| !c.is_alphabetic())
                .filter(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_alphabetic()))
                .count();
            assert!(
                words < 2 || s.chars().any(vietnamese_letter),
                "vi.json {k} reads as English: {s:?}"
            );
        }
    }

    const NAMESPACES: &[&str] = &[
        "common.",
        "client.",
        "chair.",
        "house.",
        "phone.",
        "index.",
        "error.",
        "field.",
        "feedback.",
        "notice.",
        "official.",
    ];

    /// Every key a page's HTML (`data-i18n*="key"`) or script (`t("key"`) names.
    fn used_keys() -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let files = PAGES
            .iter()
            .map(|(p, b)| (*p, *b))
            .chain(ASSETS.iter().map(|(n, _, b)| (*n, *b)));
        for (name, body) in files {
            for part in body.split("data-i18n").skip(1) {
                let Some(rest) = part.split_once("=\"") else {
                    continue;
                };
                let attr = rest.0;
                if !attr.is_empty() && !attr.starts_with('-') {
                    continue;
                }
                if let Some((key, _)) = rest.1.split_once('"') {
                    out.push((name, key.to_owned()));
                }
            }
            // t("key" …), t('key' …) and the keys a script keeps in its lookup tables
            // ({ full: "chair.video_full" }): every quoted string of a script shaped like a
            // key of one of the namespaces. A prefix ending in '.' ("feedback.status." + s)
            // is a dynamic lookup and is not checked here.
            if !name.ends_with(".js") {
                continue;
            }
            let b = body.as_bytes();
            for (i, &q) in b.iter().enumerate() {
                if q != b'"' && q != b'\'' {
                    continue;
                }
                let rest = &body[i + 1..];
                if !NAMESPACES.iter().any(|n| rest.starts_with(n)) {
                    continue;
                }
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                    .unwrap_or(rest.len());
                let key = &rest[..end];
                if rest[end..].starts_with(q as char) && !key.ends_with('.') {
                    out.push((name, key.to_owned()));
                }
            }
        }
        out
    }

    #[test]
    fn every_key_a_page_uses_exists() {
        let vi = base_keys(&vi());
        let used = used_keys();
        assert!(used.len() > 50, "the scan found keys: {}", used.len());
        let missing: Vec<_> = used.iter().filter(|(_, k)| !vi.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "keys used but not in the tables: {missing:?}"
        );
    }

    #[test]
    fn no_inline_script_style_or_handler() {
        for (path, html) in PAGES {
            for tag in html.split("<script").skip(1) {
                let open = &tag[..tag.find('>').expect("a closed tag")];
                assert!(open.contains("src=\"/assets/"), "{path}: inline <script>");
                assert!(tag[open.len() + 1..].trim_start().starts_with("</script>"));
            }
            assert!(!html.contains("style="), "{path}: a style= attribute");
            assert!(!html.contains("<style"), "{path}: a <style> element");
            let lower = html.to_lowercase();
            for ev in [
                " onclick=",
                " onload=",
                " onerror=",
                " onchange=",
                " oninput=",
                " onsubmit=",
                " onkeydown=",
            ] {
                assert!(!lower.contains(ev), "{path}: an inline handler {ev}");
            }
            assert!(!lower.contains("javascript:"), "{path}: a javascript: URL");
            for ext in ["http://", "https://", "//cdn"] {
                assert!(
                    !html.contains(ext),
                    "{path}: something from outside the hub ({ext})"
                );
            }
        }
        for (name, _, body) in ASSETS {
            // The SVG namespace is a name, not an address: nothing is fetched from it.
            let body = body.replace("http://www.w3.org/2000/svg", "");
            for ext in ["http://", "https://", "fonts.googleapis", "cdn."] {
                assert!(
                    !body.contains(ext),
                    "{name}: something from outside the hub ({ext})"
                );
            }
        }
    }

    /// A village link may carry 1 Mbit/s shared by a whole screen: a page and everything it
    /// loads stays under 100 KB before compression (printed with `--nocapture`).
    #[test]
    fn pages_stay_small() {
        for (path, bytes, files) in weights() {
            println!("{path}: {bytes} bytes ({})", files.join(", "));
            assert!(bytes < 100_000, "{path} weighs {bytes} bytes");
        }
    }

    #[test]
    fn every_asset_a_page_loads_is_served() {
        for (path, _, files) in weights() {
            assert!(
                files.iter().any(|f| f.starts_with("i18n/")),
                "{path}: no table of strings"
            );
            for f in files {
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == f)
                        || page_tables().iter().any(|(n, _, _)| n == f),
                    "{path} loads /assets/{f}, which is not served"
                );
            }
        }
    }

    /// A page's table holds every key its HTML and its scripts use, in both languages, and
    /// none of another page's namespace.
    #[test]
    fn a_pages_table_holds_its_keys_and_no_other_pages() {
        let used = used_keys();
        for (path, _, files) in weights() {
            let own = page_namespace(path);
            for lang in ["vi", "en"] {
                let name = format!("i18n/{own}/{lang}.json");
                let (_, body, _) = page_tables()
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .unwrap_or_else(|| panic!("{path}: no {name}"));
                let keys = base_keys(&table(body));
                for (file, key) in &used {
                    if *file == path || files.contains(file) {
                        assert!(keys.contains(key), "{name} lacks {key}, used by {file}");
                    }
                }
                for k in &keys {
                    let ns = k.split('.').next().unwrap_or_default();
                    assert!(
                        ns == own || !PAGE_NAMESPACES.contains(&ns),
                        "{name} holds another page's {k}"
                    );
                }
            }
        }
    }
}
