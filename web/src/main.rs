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
    /// Print a signed bearer token (`dinh token --role … --room …`), or revoke one
    /// (`dinh token revoke …`).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Token {
        #[command(subcommand)]
        cmd: Option<TokenCmd>,
        /// chair, house, official or receiver.
        #[arg(long, value_enum, required = true)]
        role: Option<Role>,
        /// The room.
        #[arg(long, required = true)]
        room: Option<String>,
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
    /// Print the links of every room (chair, houses, audio stream) with fresh tokens.
    Links {
        /// Data folder holding the signing key and the commune (default ./data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Settings file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Lifetime of the tokens, e.g. 12h, 30d.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        ttl: Duration,
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
    /// Witness other communes' logs (c2sp.org/tlog-witness), without the rest of the hub:
    /// serve `/witness` for the logs of `[[witness.logs]]`.
    Witness {
        /// HTTP address (default 127.0.0.1:8090).
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        at: RecordArgs,
        /// Print this witness's key (`name+id+key`, for the logs' `record.witnesses`) and exit.
        #[arg(long)]
        public_key: bool,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Refuse a token from now on, on every request and WebSocket: give the token itself or
    /// its id (`jti`, with --room). Goes through the running hub; with the hub stopped, add
    /// --offline to write the record directly.
    Revoke {
        /// The token, or its id.
        token: String,
        /// The token's room: needed with an id through the hub, checked with a token. An id
        /// with --offline and no room is revoked in every room.
        #[arg(long)]
        room: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
        /// The hub's address (default: the listen address from the settings).
        #[arg(long)]
        hub: Option<SocketAddr>,
        /// The hub is stopped: append to the record directly.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        at: RecordArgs,
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
    /// Check the hash chain, every signed checkpoint, and that the log extends every
    /// checkpoint held elsewhere (the settings' witnesses, --witness, --against); exit 1
    /// naming the first bad position.
    Verify {
        #[command(flatten)]
        at: RecordArgs,
        /// Verify an export file instead of the live record.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        check: CheckArgs,
    },
    /// Print the newest checkpoint with the witnesses' cosignatures (a C2SP note): keep it
    /// elsewhere, and check the log against it later with `verify --against FILE`.
    Checkpoint {
        #[command(flatten)]
        at: RecordArgs,
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
    /// Print the key that signs the checkpoints (`origin+id+key`, for witnesses and
    /// `verify --key`).
    PublicKey {
        #[command(flatten)]
        at: RecordArgs,
        /// Print the bare Ed25519 key in hex instead.
        #[arg(long)]
        hex: bool,
    },
}

/// What `log verify` checks the log against.
#[derive(clap::Args)]
struct CheckArgs {
    /// Trusted key (`dinh log public-key`, or 64 hex digits); default: the record's key,
    /// or the export's own.
    #[arg(long)]
    key: Option<String>,
    /// A checkpoint note or an earlier export kept elsewhere (repeatable): the log must
    /// extend it. An export names the first changed position exactly.
    #[arg(long)]
    against: Vec<PathBuf>,
    /// A witness's URL (repeatable): the log must extend the checkpoint it cosigned last.
    #[arg(long)]
    witness: Vec<String>,
    /// The key (`name+id+key`) of each --witness URL that is not in the settings, in order.
    #[arg(long)]
    witness_key: Vec<String>,
    /// Do not ask the witnesses named in the settings.
    #[arg(long)]
    offline: bool,
    /// Accept a log with no checkpoint, or with more than `record.checkpoint_every` events
    /// after its newest checkpoint (covered by the hash chain only).
    #[arg(long)]
    allow_unsigned: bool,
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

/// The record's key as the settings name it (never created here).
fn record_signer(cfg: &Config) -> anyhow::Result<dinh_events::chain::Signer> {
    let path = cfg.record_key_path();
    let signer = dinh_events::chain::Signer::load(&path, false)
        .with_context(|| format!("record key {} (or pass --key)", path.display()))?;
    Ok(match &cfg.record.origin {
        Some(o) => signer.with_origin(o),
        None => signer,
    })
}

/// What `verify` checks besides the chain: the trusted key, and the checkpoints held
/// elsewhere (files, witnesses).
async fn verify_policy(
    cfg: &Config,
    check: &CheckArgs,
    export_key: Option<&str>,
) -> anyhow::Result<dinh_events::verify::Policy> {
    let CheckArgs {
        key,
        against,
        witness,
        witness_key,
        offline,
        allow_unsigned,
    } = check;
    let (offline, allow_unsigned) = (*offline, *allow_unsigned);
    use dinh_events::note::{KeyType, VerifierKey};
    use dinh_events::verify::{verify_export_with, EarlierCopy, HeldElsewhere, Policy, TrustedKey};
    let trusted = match key {
        Some(k) => TrustedKey::parse(k).map_err(|e| anyhow::anyhow!("--key: {e}"))?,
        None => match export_key {
            Some(k) => {
                TrustedKey::parse(k).map_err(|e| anyhow::anyhow!("the export's key: {e}"))?
            }
            None => TrustedKey::parse(&record_signer(cfg)?.log_vkey().to_string())
                .map_err(|e| anyhow::anyhow!(e))?,
        },
    };
    // Notes from elsewhere are checked with the log's name and key.
    let origin = match (&trusted.origin, &cfg.record.origin) {
        (Some(o), _) | (None, Some(o)) => o.clone(),
        (None, None) => {
            let mut pk = [0u8; 32];
            hex::decode_to_slice(&trusted.public_hex, &mut pk)?;
            dinh_events::chain::default_origin(&pk)
        }
    };
    let mut pk = [0u8; 32];
    hex::decode_to_slice(&trusted.public_hex, &mut pk)?;
    let log = VerifierKey::new(&origin, KeyType::Ed25519, pk);
    let mut policy = Policy {
        trusted_key: Some(TrustedKey {
            public_hex: trusted.public_hex.clone(),
            origin: None,
        }),
        max_unsigned: (!allow_unsigned).then_some(cfg.record.checkpoint_every.max(1)),
        ..Policy::default()
    };
    for f in against {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let name = f.display().to_string();
        if bytes.first() == Some(&b'{') {
            let p = Policy {
                trusted_key: policy.trusted_key.clone(),
                ..Policy::default()
            };
            let (report, hashes) = verify_export_with(&bytes[..], p)?;
            if let Some(problem) = report.problem {
                anyhow::bail!("the earlier copy {name} does not verify itself: {problem}");
            }
            if policy.earlier.is_some() {
                anyhow::bail!("give at most one earlier export with --against");
            }
            policy.earlier = Some(EarlierCopy {
                source: name,
                hashes,
            });
        } else {
            let held = HeldElsewhere::from_note(&bytes, &log, &name).map_err(|e| {
                anyhow::anyhow!("{name}: not a checkpoint of this log signed by its key: {e}")
            })?;
            policy.held_elsewhere.push(held);
        }
    }
    let mut clients = Vec::new();
    if !offline {
        for (i, e) in cfg.record.witnesses.iter().enumerate() {
            clients.push((dinh_web::integrity::WitnessClient::new(i, e)?, false));
        }
    }
    for (i, url) in witness.iter().enumerate() {
        let configured = cfg
            .record
            .witnesses
            .iter()
            .find(|w| w.url.trim_end_matches('/') == url.trim_end_matches('/'));
        let c = match (witness_key.get(i), configured) {
            (Some(k), _) => dinh_web::integrity::client_for(url, k, None)?,
            (None, Some(w)) => dinh_web::integrity::client_for(url, &w.vkey, w.ca.as_deref())?,
            (None, None) => anyhow::bail!("--witness {url}: give its key with --witness-key"),
        };
        clients.retain(|(k, _)| k.url != c.url);
        clients.push((c, true));
    }
    for (c, required) in &clients {
        match c.latest(&log).await {
            Ok(Some((held, _))) => {
                eprintln!(
                    "witness {} holds a checkpoint of {} events",
                    c.name, held.size
                );
                policy.held_elsewhere.push(held);
            }
            Ok(None) => eprintln!("witness {} holds no checkpoint of this log", c.name),
            Err(dinh_web::integrity::WitnessTrouble::Inconsistent { message, .. }) => {
                anyhow::bail!("witness {}: {message}", c.name)
            }
            Err(t) if *required => anyhow::bail!("witness {}: {t:?}", c.name),
            Err(t) => eprintln!("warning: witness {} not checked: {t:?}", c.name),
        }
    }
    Ok(policy)
}

fn log_cmd(cmd: LogCmd) -> anyhow::Result<()> {
    use dinh_events::verify;
    match cmd {
        LogCmd::Verify { at, file, check } => {
            let cfg = record_config(&at)?;
            let report = runtime()?.block_on(async {
                match file {
                    Some(f) => {
                        let bytes = std::fs::read(&f)
                            .with_context(|| format!("opening {}", f.display()))?;
                        let header_key = bytes
                            .split(|b| *b == b'\n')
                            .next()
                            .and_then(|l| serde_json::from_slice::<verify::ExportHeader>(l).ok())
                            .map(|h| h.public_key);
                        let policy = verify_policy(&cfg, &check, header_key.as_deref()).await?;
                        anyhow::Ok(verify::verify_export_with(&bytes[..], policy)?.0)
                    }
                    None => {
                        let policy = verify_policy(&cfg, &check, None).await?;
                        let store = open_store(&cfg).await?;
                        anyhow::Ok(verify::verify_store_with(&store, policy).await?.0)
                    }
                }
            })?;
            match &report.problem {
                None => {
                    println!(
                        "OK: {} events, {} signed checkpoints, {} checkpoints held elsewhere extended; {} events after the last checkpoint are covered by the chain only",
                        report.events, report.checkpoints, report.held_elsewhere, report.unsigned_tail
                    );
                    Ok(())
                }
                Some(p) => {
                    eprintln!("FAILED {p}");
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
            let key = record_signer(&cfg)?.public_hex();
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
        LogCmd::Checkpoint { at } => {
            let cfg = record_config(&at)?;
            runtime()?.block_on(async {
                let store = open_store(&cfg).await?;
                let Some((cp, _)) = store.last_checkpoint().await? else {
                    anyhow::bail!("no checkpoint yet");
                };
                let cosigned = store.cosignatures().await?;
                match verify::with_cosignatures(cp, &cosigned).note {
                    Some(note) => print!("{note}"),
                    None => anyhow::bail!(
                        "the newest checkpoint is in the dinh-checkpoint/v1 format; start the hub once to sign a C2SP checkpoint"
                    ),
                }
                anyhow::Ok(())
            })
        }
        LogCmd::PublicKey { at, hex } => {
            let cfg = record_config(&at)?;
            let signer = record_signer(&cfg)?;
            if hex {
                println!("{}", signer.public_hex());
            } else {
                println!("{}", signer.log_vkey());
            }
            Ok(())
        }
    }
}

fn witness_cmd(listen: Option<SocketAddr>, at: RecordArgs, public_key: bool) -> anyhow::Result<()> {
    let cfg = record_config(&at)?;
    if public_key {
        println!("{}", dinh_web::witness::WitnessService::vkey_of(&cfg)?);
        return Ok(());
    }
    init_logs();
    runtime()?.block_on(async {
        let Some(service) = dinh_web::witness::WitnessService::open(&cfg).await? else {
            anyhow::bail!(
                "no log to witness: name each in the settings, [[witness.logs]] vkey = \"origin+id+key\" (the log's `dinh log public-key`)"
            );
        };
        let addr = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8090)));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        println!("Đình witness at http://{addr}/witness");
        println!("Its key (record.witnesses vkey): {}", service.vkey());
        dinh_web::witness::serve_alone(listener, service, &cfg.limits, shutdown_signal()).await;
        anyhow::Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
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
            cmd:
                Some(TokenCmd::Revoke {
                    token,
                    room,
                    reason,
                    hub,
                    offline,
                    at,
                }),
            ..
        } => revoke(token, room, reason, hub, offline, at),
        Cmd::Token {
            cmd: None,
            role,
            room,
            id,
            name,
            ttl,
            data,
            config,
        } => {
            let (Some(role), Some(room)) = (role, room) else {
                anyhow::bail!("dinh token needs --role and --room");
            };
            let mut cfg = Config::load(config.as_deref()).context("reading settings")?;
            if let Some(d) = data {
                cfg.data = d;
            }
            dinh_web::auth::create_private_dir(&cfg.data)?;
            let keys = Keys::load_or_create(&cfg.data)?;
            let id = id.unwrap_or_else(|| match role {
                Role::Chair => "chair".to_owned(),
                _ => name.clone().unwrap_or_else(|| role.as_str().to_owned()),
            });
            let name = name.unwrap_or_else(|| id.clone());
            println!("{}", keys.issue(&id, &name, role, &room, ttl));
            Ok(())
        }
        Cmd::Links { data, config, ttl } => {
            let mut cfg = Config::load(config.as_deref()).context("reading settings")?;
            if let Some(d) = data {
                cfg.data = d;
            }
            dinh_web::auth::create_private_dir(&cfg.data)?;
            let keys = Keys::load_or_create(&cfg.data)?;
            let commune = dinh_web::commune::Commune::load_or_create(&cfg.data)?;
            print_links(&base_url(&cfg, cfg.listen), &keys, &commune, ttl);
            Ok(())
        }
        Cmd::Log { cmd } => log_cmd(cmd),
        Cmd::Projections { cmd } => projections_cmd(cmd),
        Cmd::Witness {
            listen,
            at,
            public_key,
        } => witness_cmd(listen, at, public_key),
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
    let metrics = match cfg.metrics_listen {
        Some(m) => Some(
            tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("cannot listen on metrics_listen {m}"))?,
        ),
        None => None,
    };
    let state = dinh_web::AppState::start(cfg).await?;
    let base = base_url(&state.config, addr);
    println!("Đình đang chạy tại / is running at {base}/");
    match &state.tcp {
        Some(tcp) => println!(
            "Media: UDP {}, ICE-TCP {}",
            state.sfu.mux().advertised_addr(),
            tcp.advertised_addr()
        ),
        None => println!("Media: UDP {}", state.sfu.mux().advertised_addr()),
    }
    print_tls(&state, addr);
    if let Some(m) = metrics {
        println!("Metrics: http://{}/metrics", m.local_addr()?);
        state
            .tasks
            .spawn(dinh_web::server::run_metrics(m, state.clone()));
    }
    // Links carry 30-day tokens: on a terminal they are for the person starting the hub; in a
    // service's output they would end up in the system journal for anyone who reads it.
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        print_links(
            &base,
            &state.keys,
            &state.commune,
            Duration::from_secs(30 * 24 * 3600),
        );
    } else {
        println!(
            "Liên kết không in ra (không phải cửa sổ dòng lệnh): chạy `dinh links` / links not printed (not a terminal): run `dinh links`"
        );
    }
    tracing::info!(%addr, "serving");
    dinh_web::run(listener, state, shutdown_signal()).await?;
    Ok(())
}

/// The address people open: `http://` on loopback (a browser treats the machine itself as a
/// secure context), otherwise `https://` at the listen address, or at the machine's first
/// LAN address when it listens on all of them.
fn base_url(cfg: &Config, addr: SocketAddr) -> String {
    if !cfg.tls.enabled || addr.ip().is_loopback() {
        return format!("http://{addr}");
    }
    let ip = if addr.ip().is_unspecified() {
        cfg.rtc
            .public_ip
            .or_else(|| {
                dinh_web::tls::local_addresses()
                    .into_iter()
                    .find(|a| a.is_ipv4() && !a.is_loopback() && !a.is_unspecified())
            })
            .unwrap_or(addr.ip())
    } else {
        addr.ip()
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

fn print_tls(state: &dinh_web::AppState, addr: SocketAddr) {
    use dinh_web::tls::Source;
    let Some(tls) = &state.tls else {
        println!("HTTPS: tắt / off (tls.enabled = false)");
        return;
    };
    match &tls.source {
        Source::Files { cert } => println!("HTTPS: {}", cert.display()),
        Source::OwnCa {
            ca_pem,
            ca_fingerprint,
        } => {
            println!(
                "HTTPS: chứng chỉ của CA riêng của hub / certificate from the hub's own CA {}",
                ca_pem.display()
            );
            println!("  SHA-256: {ca_fingerprint}");
            println!(
                "  Tin cậy CA một lần trên máy chủ tọa và mỗi nhà văn hoá / trust it once on the chair's laptop and each house box \
(tải / download https://{}:{}/ca.pem, so dấu vân tay / compare the fingerprint): \
Debian: cp dinh-ca.crt /usr/local/share/ca-certificates/ && update-ca-certificates; \
Chromium: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n dinh -i dinh-ca.crt; \
Firefox: Cài đặt / Settings > Chứng chỉ / Certificates > Nhập / Import.",
                if addr.ip().is_unspecified() {
                    "HOST".to_owned()
                } else {
                    addr.ip().to_string()
                },
                addr.port()
            );
        }
    }
}

fn print_links(base: &str, keys: &Keys, commune: &dinh_web::commune::Commune, ttl: Duration) {
    for r in &commune.rooms {
        let chair = keys.issue("chair", "Chủ tọa", Role::Chair, &r.id, ttl);
        println!("\nRoom '{}' ({})", r.id, r.title);
        println!("  chair:  {base}/chair?token={chair}");
        let official = keys.issue("can-bo", "Cán bộ xã", Role::Official, &r.id, ttl);
        println!("  official: {base}/official?token={official}");
        for h in &r.houses {
            let t = keys.issue(&h.id, &h.name, Role::House, &r.id, ttl);
            println!("  {}: {base}/house?token={t}", h.id);
        }
        // A listen-only token (the receiver role can do nothing else) for phones at home.
        let listen = keys.issue("nguoi-nghe", "Người nghe", Role::Receiver, &r.id, ttl);
        println!(
            "  audio stream: {base}/broadcast/{}/live.ogg?token={listen}",
            r.id
        );
    }
}

/// `dinh token revoke`: through the running hub's API (with a two-minute official token
/// minted here), or, with `--offline`, straight into the record of a stopped hub.
fn revoke(
    target: String,
    room: Option<String>,
    reason: String,
    hub: Option<SocketAddr>,
    offline: bool,
    at: RecordArgs,
) -> anyhow::Result<()> {
    let cfg = record_config(&at)?;
    let keys = Keys::load_or_create(&cfg.data)?;
    let target = target.trim().to_owned();
    let (body, room, jti) = if target.matches('.').count() == 2 {
        let c = keys
            .verify_signature(&target)
            .map_err(|e| anyhow::anyhow!("not a token of this hub: {e}"))?;
        if let Some(r) = &room {
            c.for_room(r)?;
        }
        (
            serde_json::json!({ "token": target, "reason": reason }),
            Some(c.room.clone()),
            c.jti,
        )
    } else {
        if room.is_none() && !offline {
            anyhow::bail!(
                "with a token id, say its room (--room ROOM); to revoke it in every room, \
                 stop the hub and add --offline"
            );
        }
        (
            serde_json::json!({ "jti": target, "reason": reason }),
            room,
            target.clone(),
        )
    };
    let addr = hub.unwrap_or_else(|| {
        let l = cfg.listen;
        match l.ip() {
            std::net::IpAddr::V4(v) if v.is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], l.port()))
            }
            std::net::IpAddr::V6(v) if v.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, l.port()))
            }
            _ => l,
        }
    });
    if offline {
        // Two writers on one log, and a deny list the running hub would not learn of: refuse.
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            anyhow::bail!(
                "a hub answers at {addr}: revoke through it (without --offline), or stop it first"
            );
        }
        return runtime()?.block_on(async {
            use dinh_events::domain::tokens::TokenAction;
            use dinh_events::domain::{Actor, Command};
            let store = open_store(&cfg).await?;
            let record = dinh_events::record::Record::new(store, Default::default());
            let cmd = Command::new(
                time::OffsetDateTime::now_utc(),
                Actor::system("cli"),
                TokenAction::Revoke {
                    jti: jti.clone(),
                    room,
                    subject: None,
                    expires_at: None,
                    reason,
                },
            );
            let out = record.revoke_token(cmd, None).await?;
            println!(
                "revoked {jti} (record position {})",
                out.appended.map_or(0, |a| a.last)
            );
            anyhow::Ok(())
        });
    }
    let room = room.unwrap_or_default();
    let token = keys.issue(
        "dinh-cli",
        "dinh token revoke",
        Role::Official,
        &room,
        Duration::from_secs(120),
    );
    let (status, reply) = post_json(addr, "/api/tokens/revoke", &token, &body.to_string())
        .with_context(|| {
            format!("the hub does not answer at {addr}; if it is stopped, run again with --offline")
        })?;
    if status != 200 {
        anyhow::bail!("the hub refused ({status}): {reply}");
    }
    println!("revoked {jti}: {reply}");
    Ok(())
}

/// One plain-HTTP/1.1 `POST` to the hub on this machine (the hub serves plain HTTP to its own
/// machine); status and body.
fn post_json(
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let reply = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .trim()
        .to_owned();
    Ok((status, reply))
}
