//! The hub as an Icecast2 source client: `PUT /MOUNT` with the source password, then the
//! Ogg/Opus pages, as libshout and ffmpeg do. A dead server or a refused password becomes a
//! status change and a reconnection with backoff, never an error for the other clusters.
//! Listener counts come from the server's public `/status-json.xsl`.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::config::IcecastTarget;
use crate::health::Evidence;

/// How long connecting and the server's answer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connect, send `PUT`, and check the answer. The stream is ready for pages.
pub async fn connect(
    target: &IcecastTarget,
    password: &str,
    name: &str,
) -> Result<TcpStream, String> {
    let mut s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target.host))
        .await
        .map_err(|_| "connection timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("source:{password}"));
    // Header values must stay on one line.
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let req = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nUser-Agent: dinh/{}\r\n\
Content-Type: application/ogg\r\nIce-Name: {name}\r\nIce-Public: 0\r\nExpect: 100-continue\r\n\r\n",
        target.mount,
        target.host,
        env!("CARGO_PKG_VERSION"),
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(CONNECT_TIMEOUT, s.read(&mut buf))
        .await
        .map_err(|_| "the server did not answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&buf[..n]);
    let status = answer.lines().next().unwrap_or("").to_owned();
    if status.contains(" 100 ") || status.contains(" 200 ") {
        Ok(s)
    } else if status.contains(" 401 ") {
        Err("the server refused the source password".into())
    } else if status.contains(" 403 ") {
        Err(format!("the server refused the mount ({})", status.trim()))
    } else if status.is_empty() {
        Err("the server closed the connection".into())
    } else {
        Err(format!("unexpected answer: {}", status.trim()))
    }
}

/// Listener count of `mount` from `/status-json.xsl`.
pub async fn listeners(target: &IcecastTarget) -> Option<u32> {
    let mut s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target.host))
        .await
        .ok()?
        .ok()?;
    let req = format!(
        "GET /status-json.xsl HTTP/1.0\r\nHost: {}\r\nUser-Agent: dinh\r\n\r\n",
        target.host
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut body = Vec::new();
    tokio::time::timeout(CONNECT_TIMEOUT, s.read_to_end(&mut body))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&body);
    let json = &text[text.find("\r\n\r\n")? + 4..];
    listeners_in_status(json, &target.mount)
}

/// The listeners of `mount` in Icecast's status JSON (one source is an object, several an
/// array).
pub fn listeners_in_status(json: &str, mount: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let src = &v["icestats"]["source"];
    let list: Vec<&serde_json::Value> = match src {
        serde_json::Value::Array(a) => a.iter().collect(),
        serde_json::Value::Object(_) => vec![src],
        _ => return Some(0),
    };
    list.iter()
        .find(|s| s["listenurl"].as_str().is_some_and(|u| u.ends_with(mount)))
        .and_then(|s| s["listeners"].as_u64())
        .map(|n| n as u32)
        .or(Some(0))
}

/// Keep a mount fed: connect, send the headers then the pages from `pages`, report what
/// happens on `evidence`; reconnect with backoff until `pages` closes. Evidence that finds
/// `evidence` full is dropped: the next report says the same.
pub async fn run(
    target: IcecastTarget,
    password: String,
    name: String,
    headers: Bytes,
    mut pages: mpsc::Receiver<Bytes>,
    evidence: mpsc::Sender<Evidence>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match connect(&target, &password, &name).await {
            Ok(mut s) => {
                backoff = Duration::from_secs(1);
                let _ = evidence.try_send(Evidence::SourceConnected);
                // Pages queued while disconnected are stale: start from now.
                while pages.try_recv().is_ok() {}
                let mut stats = tokio::time::interval(Duration::from_secs(5));
                let why = 'feed: {
                    if let Err(e) = s.write_all(&headers).await {
                        break 'feed e.to_string();
                    }
                    loop {
                        tokio::select! {
                            page = pages.recv() => match page {
                                Some(p) => {
                                    if let Err(e) = s.write_all(&p).await {
                                        break 'feed e.to_string();
                                    }
                                }
                                None => return,
                            },
                            _ = stats.tick() => {
                                if let Some(n) = listeners(&target).await {
                                    let _ = evidence.try_send(Evidence::Listeners(n));
                                }
                            }
                            _ = stop.changed() => return,
                        }
                    }
                };
                let _ =
                    evidence.try_send(Evidence::SourceFailed(format!("connection lost: {why}")));
            }
            Err(why) => {
                let _ = evidence.try_send(Evidence::SourceFailed(why));
            }
        }
        // Wait, dropping pages meanwhile.
        let until = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                p = pages.recv() => if p.is_none() { return },
                _ = stop.changed() => return,
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_counts_from_one_or_many_sources() {
        let one = r#"{"icestats":{"source":{"listenurl":"http://h:8000/loa","listeners":3}}}"#;
        assert_eq!(listeners_in_status(one, "/loa"), Some(3));
        let many = r#"{"icestats":{"source":[{"listenurl":"http://h:8000/a","listeners":1},{"listenurl":"http://h:8000/loa","listeners":5}]}}"#;
        assert_eq!(listeners_in_status(many, "/loa"), Some(5));
        assert_eq!(listeners_in_status(r#"{"icestats":{}}"#, "/loa"), Some(0));
        assert_eq!(listeners_in_status("not json", "/loa"), None);
    }

    #[tokio::test]
    async fn a_dead_server_is_an_error_not_a_hang() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let t = IcecastTarget {
            host: addr.to_string(),
            mount: "/loa".into(),
        };
        let e = connect(&t, "pw", "x").await.unwrap_err();
        assert!(e.contains("refused"), "{e}");
    }
}
