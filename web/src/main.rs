//! `dinh`: run the hub, mint tokens, verify and export the record, rebuild projections.

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
    /// Check or export the record.
    Log {
        #[command(subcommand)]
        cmd: LogCmd,
    },
    /// Maintain the read models.
    Projections {
        #[command(subcommand)]
        cmd: ProjectionsCmd,
    },
}

/// Where the record is.
#[derive(clap::Args)]
struct RecordArgs {
    /// Data folder (default ./data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Settings file.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum LogCmd {
    /// Check the hash chain and every signed checkpoint; exit 1 naming the first bad position.
    Verify {
        #[command(flatten)]
        at: RecordArgs,
        /// Verify an export file instead of the live record.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Trusted public key (hex); default: the data folder's key, or the export's own.
        #[arg(long)]
        key: Option<String>,
    },
    /// Write the log with its checkpoints, for verification offline.
    Export {
        #[command(flatten)]
        at: RecordArgs,
        /// Format: jsonl.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the public key that signs the checkpoints.
    PublicKey {
        #[command(flatten)]
        at: RecordArgs,
    },
}

#[derive(Subcommand)]
enum ProjectionsCmd {
    /// Rebuild attendance, the feedback register and the minutes from position 0.
    Rebuild {
        #[command(flatten)]
        at: RecordArgs,
    },
}

fn record_config(at: &RecordArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::load(at.config.as_deref()).context("reading settings")?;
    if let Some(d) = &at.data {
        cfg.data = d.clone();
    }
    Ok(cfg)
}

async fn open_store(cfg: &Config) -> anyhow::Result<dinh_events::store::Store> {
    let target = cfg.record_target();
    if cfg.database_url.is_none() && !std::path::Path::new(&target).exists() {
        anyhow::bail!("no record at {target} (start the hub once, or pass --data)");
    }
    Ok(dinh_events::store::Store::open(&target).await?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn log_cmd(cmd: LogCmd) -> anyhow::Result<()> {
    use dinh_events::chain::Signer;
    use dinh_events::verify;
    match cmd {
        LogCmd::Verify { at, file, key } => {
            let report = match file {
                Some(f) => {
                    let input = std::io::BufReader::new(
                        std::fs::File::open(&f)
                            .with_context(|| format!("opening {}", f.display()))?,
                    );
                    verify::verify_export(input, key)?
                }
                None => {
                    let cfg = record_config(&at)?;
                    let key = match key {
                        Some(k) => Some(k),
                        None => {
                            Some(Signer::load_or_create(&cfg.data.join("record.key"))?.public_hex())
                        }
                    };
                    runtime()?.block_on(async {
                        let store = open_store(&cfg).await?;
                        anyhow::Ok(verify::verify_store(&store, key).await?)
                    })?
                }
            };
            match &report.problem {
                None => {
                    println!(
                        "OK: {} events, {} signed checkpoints; {} events after the last checkpoint are covered by the chain only",
                        report.events, report.checkpoints, report.unsigned_tail
                    );
                    Ok(())
                }
                Some(p) => {
                    eprintln!("FAILED at position {}: {}", p.position, p.reason);
                    eprintln!(
                        "({} events and {} checkpoints checked before it)",
                        report.events, report.checkpoints
                    );
                    std::process::exit(1);
                }
            }
        }
        LogCmd::Export { at, format, out } => {
            if format != "jsonl" {
                anyhow::bail!("unknown format '{format}': the only format is jsonl");
            }
            let cfg = record_config(&at)?;
            let key = Signer::load_or_create(&cfg.data.join("record.key"))?.public_hex();
            runtime()?.block_on(async {
                let store = open_store(&cfg).await?;
                let n = match &out {
                    Some(path) => {
                        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
                        verify::export(&store, &key, &mut w).await?
                    }
                    None => {
                        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                        verify::export(&store, &key, &mut w).await?
                    }
                };
                eprintln!("exported {n} events");
                anyhow::Ok(())
            })
        }
        LogCmd::PublicKey { at } => {
            let cfg = record_config(&at)?;
            println!(
                "{}",
                Signer::load_or_create(&cfg.data.join("record.key"))?.public_hex()
            );
            Ok(())
        }
    }
}

fn projections_cmd(cmd: ProjectionsCmd) -> anyhow::Result<()> {
    match cmd {
        ProjectionsCmd::Rebuild { at } => {
            let cfg = record_config(&at)?;
            runtime()?.block_on(async {
                let store = open_store(&cfg).await?;
                let t = std::time::Instant::now();
                let views = dinh_events::projections::Views::rebuild(&store).await?;
                println!(
                    "rebuilt to position {} in {:.2} s: {} attendance rows, {} feedback items, {} meetings",
                    views.position(),
                    t.elapsed().as_secs_f64(),
                    views.attendance.rows().count(),
                    views.feedback.rows().count(),
                    views.minutes.rows().count()
                );
                anyhow::Ok(())
            })
        }
    }
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
        Cmd::Log { cmd } => log_cmd(cmd),
        Cmd::Projections { cmd } => projections_cmd(cmd),
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
    match &state.tcp {
        Some(tcp) => println!(
            "Media: UDP {}, ICE-TCP {}",
            state.sfu.mux().advertised_addr(),
            tcp.advertised_addr()
        ),
        None => println!("Media: UDP {}", state.sfu.mux().advertised_addr()),
    }
    for r in &state.commune.rooms {
        let ttl = Duration::from_secs(30 * 24 * 3600);
        let chair = state
            .keys
            .issue("chair", "Chủ tọa", Role::Chair, &r.id, ttl);
        println!("\nRoom '{}' ({})", r.id, r.title);
        println!("  chair:  {base}/chair?token={chair}");
        println!(
            "  official: {base}/official?token={}",
            state
                .keys
                .issue("can-bo", "Cán bộ xã", Role::Official, &r.id, ttl)
        );
        for h in &r.houses {
            let t = state.keys.issue(&h.id, &h.name, Role::House, &r.id, ttl);
            println!("  {}: {base}/house?token={t}", h.id);
        }
        // A listen-only token (the receiver role can do nothing else) for phones at home.
        let listen = state
            .keys
            .issue("nguoi-nghe", "Người nghe", Role::Receiver, &r.id, ttl);
        println!(
            "  audio stream: {base}/broadcast/{}/live.ogg?token={listen}",
            r.id
        );
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
