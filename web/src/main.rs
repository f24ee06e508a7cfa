//! `dinh`: run the hub, or mint tokens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use dinh_web::auth::{Keys, Role};
use dinh_web::config::Config;

#[derive(Parser)]
#[command(name = "dinh", version, about = "Đình: hybrid commune meetings")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the hub.
    Serve {
        /// HTTP address (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data folder (default ./data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Settings file (default ./dinh.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Media UDP port address (default 127.0.0.1:50000).
        #[arg(long)]
        udp: Option<SocketAddr>,
    },
    /// Print a signed bearer token.
    Token {
        /// chair, house or official.
        #[arg(long, value_enum)]
        role: Role,
        /// The room.
        #[arg(long)]
        room: String,
        /// Participant id (default: `chair`, or the name for other roles).
        #[arg(long)]
        id: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. 12h, 30d.
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Data folder holding the signing key (default ./data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Settings file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve {
            listen,
            data,
            config,
            udp,
        } => {
            let mut cfg = Config::load(config.as_deref()).context("reading settings")?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data {
                cfg.data = d;
            }
            if let Some(u) = udp {
                cfg.rtc.udp_listen = u;
            }
            init_logs();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(cfg))
        }
        Cmd::Token {
            role,
            room,
            id,
            name,
            ttl,
            data,
            config,
        } => {
            let mut cfg = Config::load(config.as_deref()).context("reading settings")?;
            if let Some(d) = data {
                cfg.data = d;
            }
            std::fs::create_dir_all(&cfg.data)?;
            let keys = Keys::load_or_create(&cfg.data)?;
            let id = id.unwrap_or_else(|| match role {
                Role::Chair => "chair".to_owned(),
                _ => name.clone().unwrap_or_else(|| role.as_str().to_owned()),
            });
            let name = name.unwrap_or_else(|| id.clone());
            println!("{}", keys.issue(&id, &name, role, &room, ttl));
            Ok(())
        }
    }
}

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    // webrtc-rs logs harmless WARN lines on every connect (unused interfaces, mDNS); keep them
    // out unless asked for with RUST_LOG.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,webrtc=error,rtc=error,rtc_ice=error"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let state = dinh_web::AppState::start(cfg).await?;
    let base = format!("http://{addr}");
    println!("Đình is running at {base}/");
    println!("Media: UDP {}", state.sfu.mux().advertised_addr());
    for r in &state.commune.rooms {
        let ttl = Duration::from_secs(30 * 24 * 3600);
        let chair = state
            .keys
            .issue("chair", "Chủ tọa", Role::Chair, &r.id, ttl);
        println!("\nRoom '{}' ({})", r.id, r.title);
        println!("  chair:  {base}/chair?token={chair}");
        for h in &r.houses {
            let t = state.keys.issue(&h.id, &h.name, Role::House, &r.id, ttl);
            println!("  {}: {base}/house?token={t}", h.id);
        }
    }
    tracing::info!(%addr, "serving");
    dinh_web::run(listener, state, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}
