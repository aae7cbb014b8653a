//! The `tessera` command: `tessera serve` runs a store, and so does
//! `tessera` with etcd's flags and no subcommand (as etcd is started; see
//! `config` for etcd's flags, `ETCD_*` variables and `--config-file`).

mod config;
mod serve_args;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tessera::bench::compare::{self, CompareArgs};
use tessera::bench::plot;
use tessera::bench::report::parse_hgrm;
use tessera::bench::workloads::Workload;
use tessera::proto::tesserapb::StoreMember;
use tessera::raftstore::{Store, StoreConfig};
use tessera::router::auto_compact;
use tessera::router::auto_split::AutoSplit;
use tessera::router::Router;
use tessera::server::{self, Limits, MemberInfo, ServerConfig};
use tokio::net::TcpListener;

use serve_args::{ServeArgs, ServeCli};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "A sharded, etcd v3 compatible key-value store: its keyspace is split into regions, each its own Raft group.",
    after_help = "Without a subcommand, `tessera [FLAGS]` is `tessera serve [FLAGS]`, started as etcd is."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a store serving the etcd v3 gRPC API (the default: `tessera
    /// [FLAGS]`). Every etcd 3.5 server flag is accepted, and `ETCD_*`
    /// variables and `--config-file` as etcd reads them (docs/ops.md).
    Serve(ServeArgs),
    /// Drive any etcd v3 endpoint with a workload and report throughput and latency.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Snapshots in etcd's format: save from a member, restore into a new
    /// data dir (from etcd or tessera), status.
    #[command(subcommand)]
    Snapshot(tessera::snapshot::cli::SnapshotCommand),
    /// Operate regions: list, split, merge, transfer-leader.
    Admin(tessera::admin_cli::AdminArgs),
    /// Seeded runs of real members under faults, each history checked
    /// (docs/faults.md); exits 1 if any run failed.
    Faults(tessera::faults::FaultArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    #[command(flatten)]
    Workload(Workload),
    /// Start etcd and tessera side by side, run workloads against both and
    /// write a markdown comparison (medians, ratios) and plots.
    Compare(CompareArgs),
    /// Overlay the latency distributions of .hgrm files in one SVG plot.
    Plot {
        /// .hgrm files (from --hgrm); each becomes one line, labelled by its file name.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "latency by percentile")]
        title: String,
    },
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    match argv.first().map(String::as_str) {
        Some("serve") => serve_main(&argv[1..]),
        Some(first) if is_command(first) => command_main(),
        _ => serve_main(&argv),
    }
}

/// Whether `tessera FIRST ...` names a subcommand (or asks for the
/// top-level help or version); anything else is `tessera serve`'s.
fn is_command(first: &str) -> bool {
    matches!(first, "help" | "-h" | "--help" | "-V" | "--version")
        || <Cli as clap::CommandFactory>::command().get_subcommands().any(|c| c.get_name() == first)
}

/// `tessera serve ARGV` (or `tessera ARGV`): etcd's flags, variables and
/// config file resolved, then `tessera serve`'s parser. A refusal is one
/// line on stderr and exit code 1, as etcd's.
fn serve_main(argv: &[String]) -> Result<()> {
    let env: Vec<(String, String)> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let read = |path: &str| std::fs::read_to_string(path);
    let resolved = config::resolve(argv, &env, &serve_flags(), &read).unwrap_or_else(|e| refuse(e));
    let cli = ServeCli::parse_from(std::iter::once("tessera serve".to_string()).chain(resolved.args));
    start(cli.args, &resolved.notes)
}

/// The long names of `tessera serve`'s flags.
fn serve_flags() -> config::ServeFlags {
    let cmd = <ServeCli as clap::CommandFactory>::command();
    let names = cmd.get_arguments().filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long());
    config::ServeFlags(names.filter(|n| *n != "help").map(str::to_string).collect())
}

fn refuse(e: impl std::fmt::Display) -> ! {
    eprintln!("tessera: {e}");
    std::process::exit(1)
}

/// Sets up logging, logs the resolver's lines, runs the store. An error
/// is logged (in the format asked for) and exits with code 1.
fn start(args: ServeArgs, notes: &[config::Note]) -> Result<()> {
    if args.version {
        println!("tessera {} (etcd API {})", env!("CARGO_PKG_VERSION"), server::maintenance::ETCD_VERSION);
        return Ok(());
    }
    let opts = config::log::LogOptions {
        logger: &args.logger,
        outputs: &args.log_outputs,
        format: &args.log_format,
        level: &args.log_level,
    };
    let log_notes = config::log::init(&opts).unwrap_or_else(|e| refuse(e));
    for note in notes.iter().chain(&log_notes) {
        match note.level {
            config::Level::Info => tracing::info!(target: "tessera", "{}", note.msg),
            config::Level::Warn => tracing::warn!(target: "tessera", "{}", note.msg),
        }
    }
    if let Err(e) = serve(args) {
        tracing::error!(target: "tessera", "{e:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn command_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => start(args, &[]),
        Command::Bench(cmd) => tokio::runtime::Runtime::new()?.block_on(bench(cmd)),
        Command::Admin(args) => {
            // An operator's mistake (unknown region, not adjacent) is one
            // line on stderr and exit code 1, not a backtrace.
            if let Err(e) = tokio::runtime::Runtime::new()?.block_on(tessera::admin_cli::run(args)) {
                eprintln!("Error: {e}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Faults(args) => {
            let failed = tokio::runtime::Runtime::new()?.block_on(tessera::faults::main(args))?;
            if failed > 0 {
                eprintln!("faults: {failed} run(s) failed");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Snapshot(cmd) => {
            if let Err(e) = tokio::runtime::Runtime::new()?.block_on(tessera::snapshot::cli::run(cmd)) {
                eprintln!("Error: {e}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn bench(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Workload(w) => {
            let opts = w.opts().clone();
            let seed = opts.seed();
            eprintln!("{}: seed {seed}", w.name());
            let summaries = w.run(seed).await?;
            for s in &summaries {
                print!("{}", s.text());
            }
            if let Some(path) = &opts.hgrm {
                for (i, s) in summaries.iter().enumerate() {
                    let path = if i == 0 { path.clone() } else { path.with_file_name(format!("{}.hgrm", s.workload)) };
                    std::fs::write(&path, s.hgrm()).with_context(|| format!("writing {}", path.display()))?;
                }
            }
            if let Some(path) = &opts.plot {
                let runs: Vec<_> = summaries.iter().map(|s| (s.workload.clone(), parse_hgrm(&s.hgrm()))).collect();
                std::fs::write(path, plot::svg(&w.name(), &runs))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            for s in &summaries {
                println!("{}", s.json());
            }
            Ok(())
        }
        BenchCommand::Compare(args) => {
            let command_line = std::env::args().collect::<Vec<_>>().join(" ");
            let report = compare::run(&args, &command_line).await?;
            println!("{}", std::fs::read_to_string(&report)?);
            println!("written to {}", report.display());
            Ok(())
        }
        BenchCommand::Plot { files, out, title } => {
            let mut runs = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
                let label = f.file_stem().map_or_else(|| f.display().to_string(), |s| s.to_string_lossy().into_owned());
                runs.push((label, parse_hgrm(&text)));
            }
            std::fs::write(&out, plot::svg(&title, &runs))?;
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    if let Some(spec) = &args.failpoint {
        tessera::failpoint::arm(spec);
    }
    // Refused before anything starts, as etcd refuses its flags.
    auto_compact::parse(&args.auto_compaction_mode, &args.auto_compaction_retention).map_err(|e| anyhow::anyhow!(e))?;
    let timing = config::raft::timing(args.heartbeat_interval, args.election_timeout).map_err(anyhow::Error::msg)?;
    // Bound before the store opens: the store tells the other members its
    // client URLs (a port 0 resolved).
    let policy = args.tls.policy()?;
    let client_tls = args.tls.client(&args.data_dir, &args.listen_client_urls, &policy)?;
    let client_listeners = config::listen::bind_urls(&args.listen_client_urls)?;
    let bound = client_listeners.iter().map(|l| l.urls()).collect::<Result<Vec<_>>>()?.concat();
    let advertise =
        if args.advertise_client_urls.is_empty() { bound.clone() } else { args.advertise_client_urls.clone() };
    let members = cluster_members(&args)?;
    let mut cfg = StoreConfig::new(&args.data_dir);
    cfg.raft.log_gc_threshold = args.raft_log_gc_threshold.max(1);
    if let Some(t) = timing {
        cfg.raft.tick_interval = t.tick;
        cfg.raft.heartbeat_ticks = t.heartbeat_ticks;
        cfg.raft.election_ticks = t.election_ticks;
    }
    cfg.initial_split_keys =
        tessera::region::split_keys::from_flags(&args.initial_split_keys, args.initial_split_keys_file.as_deref())
            .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(p) = args.pollers {
        cfg.pollers = p;
    }
    cfg.name = args.name.clone();
    cfg.client_urls = advertise.clone();
    let mut peer_tls = None;
    let peer_listeners = if members.len() > 1 {
        let me = members.iter().find(|m| m.name == args.name).expect("checked by cluster_members").clone();
        cfg.store_id = me.store_id;
        let listen =
            if args.listen_peer_urls.is_empty() { vec![me.peer_url.clone()] } else { args.listen_peer_urls.clone() };
        peer_tls = args.tls.peer(&args.data_dir, &listen, &policy)?;
        cfg.peer_dialer = args.tls.peer_dialer(peer_tls.as_deref(), &policy)?;
        let listeners = config::listen::bind_urls(&listen)?;
        if args.initial_cluster_state == "existing" && !Store::bootstrapped(&args.data_dir)? {
            let others: Vec<String> =
                members.iter().filter(|m| m.name != me.name).map(|m| m.peer_url.clone()).collect();
            let joined = tokio::runtime::Runtime::new()?
                .block_on(server::peer::join(&cfg.peer_dialer, &others, &me.peer_url, &me.name))
                .map_err(|e| anyhow::anyhow!("joining the cluster through {others:?}: {e}"))?;
            let set = joined.members.unwrap_or_default();
            let Some(store_id) = set.members.iter().find(|m| m.peer_url == me.peer_url).map(|m| m.store_id) else {
                bail!("the cluster's members do not include {}", me.peer_url);
            };
            tracing::info!(store = store_id, cluster_id = joined.cluster_id, "joining a running cluster");
            cfg.store_id = store_id;
            cfg.join = Some((joined.cluster_id, set));
        }
        cfg.members = members;
        listeners
    } else {
        Vec::new()
    };
    let store = Store::open(cfg).with_context(|| format!("opening {}", args.data_dir.display()))?;
    if !store.clustered() {
        store.wait_ready(Duration::from_secs(30)).context("waiting for every region to elect its leader")?;
    }

    let runtime = tokio::runtime::Runtime::new()?;
    let listeners = Listeners { client: client_listeners, client_tls, advertise, peer: peer_listeners, peer_tls };
    let result = runtime.block_on(run(args, store.clone(), listeners));
    store.shutdown();
    result
}

struct Listeners {
    client: Vec<config::listen::Listen>,
    client_tls: Option<Arc<tessera::tls::server::ServerTls>>,
    advertise: Vec<String>,
    peer: Vec<config::listen::Listen>,
    peer_tls: Option<Arc<tessera::tls::server::ServerTls>>,
}

/// The members named by --initial-cluster (store ids by position), checked
/// against --name and --initial-advertise-peer-urls; empty for a single store.
fn cluster_members(args: &ServeArgs) -> Result<Vec<StoreMember>> {
    if !["new", "existing"].contains(&args.initial_cluster_state.as_str()) {
        bail!("--initial-cluster-state must be new or existing, not {:?}", args.initial_cluster_state);
    }
    let mut members: Vec<StoreMember> = Vec::new();
    for (i, entry) in args.initial_cluster.split(',').filter(|e| !e.trim().is_empty()).enumerate() {
        let Some((name, url)) = entry.trim().split_once('=') else {
            bail!("--initial-cluster: expected name=http://host:port, got {entry:?}");
        };
        config::listen::socket_addr(url)?;
        if members.iter().any(|m| m.name == name) {
            bail!("--initial-cluster names {name:?} twice");
        }
        let (store_id, name, peer_url) = (i as u64 + 1, name.to_string(), url.to_string());
        members.push(StoreMember { store_id, name, peer_url, member_id: 0 });
    }
    if members.len() > 5 {
        bail!("--initial-cluster: at most 5 members (every region has a peer on every member)");
    }
    if members.len() <= 1 {
        if args.initial_cluster_state == "existing" {
            bail!("--initial-cluster-state existing: --initial-cluster must name this member and a running one");
        }
        return Ok(Vec::new());
    }
    let Some(me) = members.iter().find(|m| m.name == args.name) else {
        bail!("--name {:?} is not in --initial-cluster", args.name);
    };
    if !args.initial_advertise_peer_urls.is_empty() && !args.initial_advertise_peer_urls.contains(&me.peer_url) {
        bail!(
            "--initial-advertise-peer-urls {:?} does not match {}'s --initial-cluster entry {}",
            args.initial_advertise_peer_urls,
            me.name,
            me.peer_url
        );
    }
    Ok(members)
}

/// The peer URLs `member list` shows for this member: its cluster entry's,
/// else (a single store) the advertised ones, else etcd's default.
fn peer_urls(args: &ServeArgs, store: &Store) -> Vec<String> {
    match store.peer_url_of(store.store_id).filter(|u| !u.is_empty()) {
        Some(url) => vec![url],
        None if !args.initial_advertise_peer_urls.is_empty() => args.initial_advertise_peer_urls.clone(),
        None => vec!["http://localhost:2380".to_string()],
    }
}

async fn run(args: ServeArgs, store: Arc<Store>, listeners: Listeners) -> Result<()> {
    let router = Arc::new(Router::new(store.clone())?);
    router.alarms.set_quota(args.quota_backend_bytes);
    let _leadership = if store.clustered() {
        // The leader store recovers cross-region txns when it activates.
        Some(router.start_leadership())
    } else {
        let recovered = router.recover().await.context("resolving cross-region txns left by a crash")?;
        // Before any request: the revisions of txn commits replayed from
        // the logs are finished by nobody else.
        store.sequencer.settle();
        if recovered > 0 {
            tracing::info!(locks = recovered, "resolved cross-region txn locks left by a crash");
        }
        None
    };
    let _expiry = router.start_lease_expiry();
    let compaction = auto_compact::parse(&args.auto_compaction_mode, &args.auto_compaction_retention);
    let _auto_compaction = compaction.ok().flatten().map(|policy| router.start_auto_compaction(policy));
    let _auto_split = args.auto_split.then(|| {
        router.start_auto_split(AutoSplit {
            max_bytes: args.region_max_bytes,
            max_keys: args.region_max_keys,
            interval: args.split_check_interval,
            merge: args.auto_merge,
        })
    });
    let Listeners { client, client_tls, advertise, peer, peer_tls } = listeners;
    let limits = Limits { max_request_bytes: args.max_request_bytes, max_txn_ops: args.max_txn_ops };
    let member =
        MemberInfo { name: args.name.clone(), client_urls: advertise.clone(), peer_urls: peer_urls(&args, &store) };
    let server_cfg = ServerConfig {
        progress_notify_interval: args.experimental_watch_progress_notify_interval,
        ..ServerConfig::new(limits, member)
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let mut tasks = tokio::task::JoinSet::new();
    let http_only = args.listen_metrics_urls.iter().map(|u| ("metrics", u));
    for (what, url) in http_only.chain(args.listen_client_http_urls.iter().map(|u| ("client HTTP", u))) {
        if config::listen::is_https(url) {
            bail!("{url}: tessera serves {what} URLs over http:// only (https:// is served on --listen-client-urls)");
        }
        let listener =
            TcpListener::bind(config::listen::socket_addr(url)?).await.with_context(|| format!("binding {url}"))?;
        println!("tessera: serving {what} on http://{}", listener.local_addr()?);
        tasks.spawn(server::http::serve(router.clone(), listener, stopped()).then_ok());
    }
    let ports = client.into_iter().map(|l| (l, false)).chain(peer.into_iter().map(|l| (l, true)));
    for (listen, peer_port) in ports {
        let (tls, what) = if peer_port { (peer_tls.as_ref(), "peers") } else { (client_tls.as_ref(), "clients") };
        let accept = args.tls.accept(&listen, tls, peer_port);
        for url in listen.urls()? {
            println!("tessera: serving {what} on {url}");
        }
        let (router, cfg, stop) = (router.clone(), server_cfg.clone(), stopped());
        let listener = TcpListener::from_std(listen.listener)?;
        tasks.spawn(async move {
            if peer_port {
                server::serve_peer(router, cfg, listener, accept, stop).await.context("peer server")
            } else {
                server::serve(router, cfg, listener, accept, stop).await.context("gRPC server")
            }
        });
    }
    tracing::info!(regions = store.regions().len(), ?advertise, "tessera is ready");
    // A systemd unit of Type=notify (etcd's) waits for this, as etcd sends
    // it; without $NOTIFY_SOCKET it does nothing.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("telling systemd that tessera is ready: {e}");
    }

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = store.removed() => tracing::warn!("this member was removed from the cluster: shutting down"),
        Some(done) = tasks.join_next() => {
            done??;
            bail!("a listener stopped unexpectedly");
        }
    }
    let _ = stop_tx.send(true);
    let drain = async {
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok::<(), anyhow::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(10), drain).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!("connections still open after 10 s; closing");
            Ok(())
        }
    }
}

trait ThenOk: std::future::Future<Output = ()> + Sized {
    async fn then_ok(self) -> Result<()> {
        self.await;
        Ok(())
    }
}
impl<F: std::future::Future<Output = ()>> ThenOk for F {}
