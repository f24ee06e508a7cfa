//! `/metrics`: the hub's figures for Prometheus (SFU, mux, bridge, record, integrity).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::auth::Role;
use crate::error::AppError;
use crate::extract::Caller;
use crate::{integrity, server, AppState};

/// The router of `metrics_listen`: `/metrics` with no token, and nothing else.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(axum::middleware::from_fn(server::security_layer))
}

/// `/metrics` on the main address: for an official's token (a Prometheus job carries one as
/// its bearer token), unless the metrics have their own address.
pub(crate) async fn metrics_with_token(
    state: State<AppState>,
    Caller(c): Caller,
) -> Result<axum::response::Response, AppError> {
    c.require(&[Role::Official], "read the metrics")?;
    Ok(metrics(state).await.into_response())
}

pub(crate) async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let st = &s.sfu.stats;
    let m = &s.sfu.mux().stats;
    let tcp = s.tcp.as_ref().map(|t| &t.stats);
    let b = s.bridge.stats();
    let clusters = s.bridge.clusters().await;
    let count = |status: &str| {
        clusters
            .iter()
            .filter(|c| {
                c.health
                    .as_ref()
                    .is_some_and(|h| h.status.as_str() == status)
            })
            .count()
    };
    let inputs = s.bridge.input_stats().await;
    let sum = |f: fn(&dinh_broadcast::jitter::InputStats) -> u64| -> u64 {
        inputs.iter().map(|(_, i)| f(i)).sum()
    };
    let bridge = format!(
        "# TYPE dinh_broadcast_rtp_sent_total counter\ndinh_broadcast_rtp_sent_total {}\n\
# TYPE dinh_broadcast_rtp_errors_total counter\ndinh_broadcast_rtp_errors_total {}\n\
# TYPE dinh_broadcast_ogg_pages_total counter\ndinh_broadcast_ogg_pages_total {}\n\
# TYPE dinh_broadcast_encodes_total counter\ndinh_broadcast_encodes_total {}\n\
# TYPE dinh_broadcast_clusters gauge\n\
dinh_broadcast_clusters{{status=\"up\"}} {}\n\
dinh_broadcast_clusters{{status=\"down\"}} {}\n\
dinh_broadcast_clusters{{status=\"unknown\"}} {}\n\
# TYPE dinh_broadcast_input_packets_total counter\n\
dinh_broadcast_input_packets_total{{outcome=\"decoded\"}} {}\n\
dinh_broadcast_input_packets_total{{outcome=\"fec\"}} {}\n\
dinh_broadcast_input_packets_total{{outcome=\"concealed\"}} {}\n\
dinh_broadcast_input_packets_total{{outcome=\"dropped\"}} {}\n",
        b.rtp_sent.load(Ordering::Relaxed),
        b.rtp_errors.load(Ordering::Relaxed),
        b.pages.load(Ordering::Relaxed),
        b.encodes.load(Ordering::Relaxed),
        count("up"),
        count("down"),
        count("unknown"),
        sum(|i| i.decoded),
        sum(|i| i.fec),
        sum(|i| i.concealed),
        sum(|i| i.dropped),
    );
    // The forwarding latency as a Prometheus histogram: cumulative buckets up to the last
    // one that has counts.
    let counts = st.forward_latency.snapshot();
    let last = counts.iter().rposition(|c| *c > 0).unwrap_or(0);
    let mut latency = String::from("# TYPE dinh_forward_latency_us histogram\n");
    let mut cumulative = 0u64;
    for (b, c) in counts.iter().enumerate().take(last + 1) {
        cumulative += c;
        latency.push_str(&format!(
            "dinh_forward_latency_us_bucket{{le=\"{}\"}} {cumulative}\n",
            dinh_sfu::histogram::upper_bound(b)
        ));
    }
    latency.push_str(&format!(
        "dinh_forward_latency_us_bucket{{le=\"+Inf\"}} {cumulative}\ndinh_forward_latency_us_count {cumulative}\n"
    ));
    let body = format!(
        "# TYPE dinh_sessions gauge\ndinh_sessions {}\n\
# TYPE dinh_rtp_received_total counter\ndinh_rtp_received_total {}\n\
# TYPE dinh_rtp_forwarded_total counter\ndinh_rtp_forwarded_total {}\n\
# TYPE dinh_rtp_lagged_total counter\ndinh_rtp_lagged_total {}\n\
# TYPE dinh_keyframe_requests_total counter\ndinh_keyframe_requests_total {}\n\
# TYPE dinh_udp_unroutable_total counter\ndinh_udp_unroutable_total {}\n\
# TYPE dinh_udp_overflow_total counter\ndinh_udp_overflow_total {}\n\
# TYPE dinh_tcp_routed_total counter\ndinh_tcp_routed_total {}\n\
# TYPE dinh_tcp_refused_total counter\ndinh_tcp_refused_total {}\n\
# TYPE dinh_http_connections gauge\ndinh_http_connections {}\n\
# TYPE dinh_http_connections_total counter\ndinh_http_connections_total {}\n\
# TYPE dinh_http_connections_refused_total counter\n\
dinh_http_connections_refused_total{{cap=\"source\"}} {}\n\
dinh_http_connections_refused_total{{cap=\"total\"}} {}\n\
# TYPE dinh_http_connections_evicted_total counter\ndinh_http_connections_evicted_total {}\n\
# TYPE dinh_http_timeouts_total counter\ndinh_http_timeouts_total {}\n\
# TYPE dinh_whip_sessions gauge\ndinh_whip_sessions {}\n\
# TYPE dinh_tokens_revoked gauge\ndinh_tokens_revoked {}\n",
        st.sessions.load(Ordering::Relaxed),
        st.received.load(Ordering::Relaxed),
        st.forwarded.load(Ordering::Relaxed),
        st.lagged.load(Ordering::Relaxed),
        st.keyframe_requests.load(Ordering::Relaxed),
        m.unroutable.load(Ordering::Relaxed),
        m.overflow.load(Ordering::Relaxed),
        tcp.map_or(0, |t| t.routed.load(Ordering::Relaxed)),
        tcp.map_or(0, |t| t.refused.load(Ordering::Relaxed)),
        s.conns.open(),
        s.conns.stats.accepted.load(Ordering::Relaxed),
        s.conns.stats.refused_source.load(Ordering::Relaxed),
        s.conns.stats.refused_total.load(Ordering::Relaxed),
        s.conns.stats.evicted.load(Ordering::Relaxed),
        s.conns.stats.timed_out.load(Ordering::Relaxed),
        s.sessions.len(),
        s.revoked.len(),
    ) + &latency
        + &bridge
        + &integrity::metrics(&s);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
