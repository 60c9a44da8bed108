//! Wiring: validated configuration → pingora `Server` with the proxy, admin and (demo) sample
//! EHR services → run until a signal.
//!
//! [`prepare`] does every fallible step (rules, certificate, peers, metrics) *before* any port
//! is bound, so `check` and `run` fail the same way on the same input.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::http::v2::server::H2Options;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;

use crate::config::GatewayConfig;
use crate::gateway::tls::{LoadedCert, SwappableCert};
use crate::gateway::Gateway;
use crate::gateway::{build, BuildError, Snapshot};
use crate::runtime::admin::{AdminApp, Health};
use crate::runtime::reload::{Reloader, Trigger};
use crate::telemetry::Metrics;

/// Anything that stops the gateway from starting. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration file is invalid.
    #[error("{0}")]
    Config(#[from] crate::engine::source::SourceError),
    /// The rules are invalid.
    #[error("{0}")]
    Rules(#[from] crate::engine::rules::RuleError),
    /// A certificate or key is unusable.
    #[error("{0}")]
    Tls(#[from] crate::gateway::tls::TlsError),
    /// pingora rejected the listener settings.
    #[error("cannot configure the TLS listener: {0}")]
    Listener(String),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(String),
    /// `run --upgrade` with an audit trail: the old and the new process would both append to
    /// one hash chain while they overlap.
    #[error("run --upgrade cannot be used with an audit trail ({dir} would get two writers while the processes overlap); restart instead, or run two instances behind a load balancer and roll them one at a time")]
    UpgradeWithAudit {
        /// The audit directory.
        dir: PathBuf,
    },
    /// The audit trail cannot be started (keys, directory, an earlier run's state).
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// A token issuer's key set cannot be loaded (`access.issuers`).
    #[error("{0}")]
    Identity(#[from] crate::access::identity::IdentityError),
    /// The shared-state store cannot be started (its key file, its thread, the Redis URL).
    #[error("state: {0}")]
    State(#[from] crate::state::StateError),
    /// The access-anomaly detector cannot be started (its refresher thread).
    #[error("defence: {0}")]
    Defence(#[from] crate::defence::DefenceError),
    /// The alert notifier cannot be started (`defence.webhook`: its secret, CA, TLS client).
    #[error("{0}")]
    Webhook(#[from] crate::defence::webhook::WebhookError),
    /// `admin.token_file` cannot be read, or holds no token.
    #[error("admin.token_file {}: {source}", path.display())]
    AdminToken {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The snapshot cannot be built for another reason (the fingerprint key).
    #[error("{0}")]
    Snapshot(BuildError),
    /// An address cannot be bound (in use, or not a local address).
    #[error("cannot bind {what} address {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

impl From<BuildError> for StartError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Config(e) => StartError::Config(e),
            BuildError::Rules(e) => StartError::Rules(e),
            BuildError::Tls(e) => StartError::Tls(e),
            other => StartError::Snapshot(other),
        }
    }
}

/// Everything needed to start, already validated.
pub struct Prepared {
    /// The request snapshot requests start on; a reload swaps it.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The listener certificate.
    pub cert: LoadedCert,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Audit keys loaded and checked (`None` when the config has no `audit:` section).
    pub audit: Option<crate::audit::Prepared>,
}

/// Loads and checks the audit keys of the `audit:` section, if any. Only start-up does this:
/// the audit trail is process-wide, and a reload cannot change it.
pub fn load_audit(config: &GatewayConfig) -> Result<Option<crate::audit::Prepared>, StartError> {
    Ok(match &config.audit {
        Some(a) => Some(crate::audit::Prepared::load(a.clone())?),
        None => None,
    })
}

/// [`build`] plus the audit keys and the metrics registry, for start-up.
pub fn prepare(config: GatewayConfig) -> Result<Prepared, StartError> {
    let (snapshot, cert) = build(config)?;
    let metrics = Metrics::new().map_err(|e| StartError::Metrics(e.to_string()))?;
    metrics
        .rules_loaded
        .set(snapshot.engine.rules().len() as i64);
    metrics
        .cert_not_after
        .with_label_values(&["listener"])
        .set(cert.not_after_unix);
    metrics.config_last_reload_success.set(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    );
    let audit = load_audit(&snapshot.config)?;
    Ok(Prepared {
        snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
        cert,
        metrics,
        audit,
    })
}

/// Concurrent streams one HTTP/2 connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Largest decoded request header list on HTTP/2 (SETTINGS_MAX_HEADER_LIST_SIZE). The h2 crate
/// derives its CONTINUATION limit from it: 64 KiB / 16 KiB frames + 25% = 5 frames.
pub const H2_MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// Streams the client resets before the gateway accepted them, per connection, before it is
/// closed with GOAWAY ENHANCE_YOUR_CALM (the CVE-2023-44487 "rapid reset" guard).
pub const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the gateway itself resets because the client sent something invalid, per
/// connection, before GOAWAY ENHANCE_YOUR_CALM (the "MadeYouReset" guard, CVE-2025-8671).
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The HTTP/2 limits of the listener. These are pingora 0.9's and h2 0.4's defaults today;
/// they are set here explicitly so that an upgrade that changes a default cannot loosen them
/// silently (tests/gateway/hostile_tls.rs checks each on the wire).
fn h2_options() -> H2Options {
    let mut o = H2Options::default();
    o.max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(H2_MAX_LOCAL_ERROR_RESETS));
    o
}

/// Extra services the demo adds next to the gateway.
pub struct Extra {
    /// Address for the built-in sample EHR, if it should run.
    pub sample_ehr: Option<std::net::SocketAddr>,
    /// Receive the listening sockets from a running gateway (pingora graceful upgrade).
    pub upgrade: bool,
}

/// Builds the pingora server and runs it until a signal: SIGINT (fast), SIGTERM (drain, then
/// exit), SIGQUIT (pingora upgrade). SIGHUP, `POST /reload` and the file watch reload the
/// configuration in place. Blocks the calling thread.
pub fn run(prepared: Prepared, extra: Extra) -> Result<(), StartError> {
    crate::gateway::tls::install_tls13_only_provider()?;
    let snapshot = prepared.snapshot.load_full();
    let config = &snapshot.config;

    // Bind-check every address first: pingora retries a taken port for 30 s and then panics
    // its service thread while the process lives on, unable to serve. Failing here is clearer.
    // In an upgrade the old process holds the listeners and hands them over instead.
    if extra.upgrade {
        if let Some(a) = &prepared.audit {
            // Both processes serve for a while during a hand-over, and one hash chain cannot
            // have two writers (the directory is locked). Say so before touching anything.
            return Err(StartError::UpgradeWithAudit {
                dir: a.dir().to_path_buf(),
            });
        }
    }
    let mut addrs = Vec::new();
    if !extra.upgrade {
        addrs.push(("listen", config.listen.address));
        addrs.extend(config.admin.map(|a| ("admin", a)));
    }
    addrs.extend(extra.sample_ehr.map(|a| ("sample EHR", a)));
    for (what, addr) in &addrs {
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind {
            what,
            addr: *addr,
            source,
        })?;
    }

    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout_seconds),
        pid_file: path_string(&config.server.pid_file),
        upgrade_sock: path_string(&config.server.upgrade_sock),
        daemon: false,
        ..ServerConf::default()
    };
    let opt = extra.upgrade.then(|| Opt {
        upgrade: true,
        ..Opt::default()
    });
    if extra.upgrade {
        tracing::info!(
            upgrade_sock = %config.server.upgrade_sock.display(),
            "waiting up to 5 s for the running gateway's sockets: send it SIGQUIT now"
        );
    }
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // With `upgrade`, this blocks until the old process sends its listeners (or exits 1).
    server.bootstrap();

    let resolver = SwappableCert::new(&prepared.cert);
    // The paths stay empty: the certificate comes from our resolver, never from pingora's
    // file loading (which panics on a bad file).
    // The callback records the client certificate's subject (mutual TLS) for the audit trail.
    let mut tls = TlsSettings::with_callbacks(Box::new(crate::gateway::tls::PeerIdentity))
        .map_err(|e| StartError::Listener(e.to_string()))?;
    tls.set_cert_resolver(resolver.clone());
    if let Some(c) = &config.listen.client_auth {
        tls.set_client_cert_verifier(crate::gateway::tls::client_verifier(
            &c.ca_file, c.required,
        )?);
    }
    if config.listen.http2 {
        tls.enable_h2();
    }
    // The audit trail starts before any listener, so the first request finds it running; it
    // is process-global, outside the reloadable snapshot.
    let audit = match prepared.audit {
        Some(a) => {
            let dir = a.dir().display().to_string();
            let key_id = a.key_id().to_string();
            let log = crate::audit::AuditLog::start(a, prepared.metrics.clone())?;
            tracing::info!(dir = %dir, key_id = %key_id, "audit trail started");
            Some(log)
        }
        None => {
            tracing::warn!("no `audit:` section: decisions are NOT written to an audit trail");
            None
        }
    };
    // Every issuer's key set is loaded before any listener exists: a request that needs a
    // token never finds the gateway unable to judge it (Envoy's cold-start 401s).
    let identity = if config.access.issuers.is_empty() {
        None
    } else {
        let v = crate::access::identity::Verifier::start(&config.access, prepared.metrics.clone())?;
        for i in v.issuers() {
            tracing::info!(issuer = %i.name, "token issuer keys loaded");
        }
        Some(v)
    };
    // Sessions (automatic logoff) need the store where tokens are checked, the anomaly
    // detector wherever it is on. A Redis backend connects in the background: Redis being
    // down never stops start-up.
    let state = if config.access.issuers.is_empty() && config.anomaly.is_none() {
        None
    } else {
        let s = crate::state::Store::start(&config.state, prepared.metrics.clone())?;
        tracing::info!(backend = s.backend(), "shared state started");
        Some(s)
    };
    // The notifier reads its secret and builds its TLS client now, before any listener.
    let notifier = match &config.webhook {
        Some(w) => {
            let n = crate::defence::Notifier::start(w, &prepared.metrics)?;
            tracing::info!(
                format = w.format.as_str(),
                "incident alert delivery started"
            );
            if config.anomaly.is_none() {
                tracing::warn!("defence.webhook is set but defence.anomaly is off: no incident will be raised to deliver");
            }
            Some(n)
        }
        None => None,
    };
    let defence = match (&config.anomaly, &state) {
        (Some(a), Some(shared)) => {
            // In memory the detector gets a store of its own (the same bound): its counters
            // must never evict a session, which would then fail closed. Redis is shared.
            let store = match config.state.backend {
                crate::config::StateBackend::Memory => {
                    crate::state::Store::start(&config.state, prepared.metrics.clone())?
                }
                _ => shared.clone(),
            };
            let d = crate::defence::Defence::start(
                a.clone(),
                store.clone(),
                audit.clone(),
                prepared.metrics.clone(),
                instance_name(config.listen.address),
                notifier,
            )?;
            tracing::info!(mode = ?a.mode, backend = store.backend(), "access-anomaly detection started");
            Some(d)
        }
        _ => None,
    };
    let admin_token = match &config.admin_token_file {
        Some(p) => Some(
            crate::runtime::admin::AdminToken::load(p).map_err(|source| {
                StartError::AdminToken {
                    path: p.clone(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    let gateway = Gateway::new(prepared.snapshot.clone(), prepared.metrics.clone())
        .with_audit(audit.clone())
        .with_identity(identity)
        .with_state(state.clone())
        .with_defence(defence.clone());
    // What `pingora::proxy::http_proxy_service_with_name` builds, plus the HTTP/2 limits,
    // inside the request-head deadline (slowloris; see `crate::deadline`) and a deadline for
    // the HTTP/2 preface around it (see `crate::preface`).
    let mut http = pingora::proxy::HttpProxy::new(gateway, server.configuration.clone());
    http.handle_init_modules();
    http.h2_options = Some(h2_options());
    let mut options = HttpServerOptions::default();
    // pingora's default is no idle timeout at all for HTTP/2 (HTTP/1.1 keep-alive gets 60 s):
    // without one, idle HTTP/2 connections would pile up until file descriptors run out.
    options.h2_idle_timeout = Some(config.listen.http2_idle_timeout);
    http.server_options = Some(options);
    let http = crate::gateway::HeadDeadline::new(
        http,
        prepared.snapshot.clone(),
        prepared.metrics.clone(),
    );
    let app = crate::gateway::PrefaceGuard::new(http, config.listen.http2_idle_timeout);
    let mut proxy = Service::new("phi-gateway proxy".to_string(), app);
    let listen = config.listen.address.to_string();
    proxy.add_tls_with_settings(&listen, None, tls);
    server.add_service(proxy);

    let reloader = Arc::new(Reloader::new(
        config.source.clone(),
        prepared.snapshot.clone(),
        resolver,
        prepared.metrics.clone(),
    ));
    let health = Arc::new(Health::default());
    health.set_audit(audit.clone());
    health.set_state(state);
    if let Some(admin) = config.admin {
        let mut svc = Service::new(
            "phi-gateway admin".to_string(),
            AdminApp::new(
                prepared.metrics.clone(),
                health.clone(),
                Some(reloader.clone()),
            )
            .with_principals(defence, admin_token),
        );
        svc.add_tcp(&admin.to_string());
        server.add_service(svc);
    }
    if let Some(addr) = extra.sample_ehr {
        let mut svc = Service::new("sample EHR".to_string(), crate::runtime::demo::SampleEhr);
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    if config.reload.watch {
        if let Err(e) =
            crate::runtime::reload::spawn_watch(reloader.clone(), config.reload.watch_interval)
        {
            tracing::error!(error = %e, "cannot start the file watch; SIGHUP and POST /reload still work");
        }
    }

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        revision = crate::REVISION,
        config = %config.source.display(),
        config_version = %snapshot.config_version,
        listen = %config.listen.address,
        admin = %config.admin.map(|a| a.to_string()).unwrap_or_else(|| "disabled".into()),
        sample_ehr = %extra.sample_ehr.map(|a| a.to_string()).unwrap_or_else(|| "disabled".into()),
        rules = snapshot.engine.rules().len(),
        routes = config.routes.len(),
        tls = "TLS 1.3 only",
        file_watch = config.reload.watch,
        "phi-gateway starting"
    );
    for route in &config.routes {
        tracing::info!(route = %route.name, mode = %route.mode, "route mode");
    }
    if let Some(p) = &snapshot.policy {
        let on: Vec<&str> = (config.routes.iter())
            .filter(|r| r.access.policy)
            .map(|r| r.name.as_str())
            .collect();
        tracing::info!(
            roles = p.roles().len(),
            permissions = p.permission_count(),
            digest = %p.digest(),
            routes = %on.join(","),
            "access policy loaded"
        );
    }
    mark_ready_when_listening(health.clone(), config.listen.address);
    exit_when_drained(
        server.watch_execution_phase(),
        prepared.metrics.clone(),
        Duration::from_secs(config.server.grace_period_seconds),
        audit.clone(),
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            reloader,
            health,
            shutdown_delay: Duration::from_secs(config.server.shutdown_delay_seconds),
        }),
    });
    if let Some(audit) = audit {
        // Everything queued is written, then the final signed checkpoint.
        audit.shutdown();
        tracing::info!("audit trail flushed; final checkpoint written");
    }
    tracing::info!("phi-gateway stopped");
    Ok(())
}

/// This instance's name in incidents and alerts: the host name and the listen port (two
/// gateways on one host differ by port).
fn instance_name(listen: std::net::SocketAddr) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "phi-gateway".into());
    format!("{host}:{}", listen.port())
}

/// pingora binds its listeners inside `run`, with no callback; readiness must not be claimed
/// before then. Watch for the listen address to be in the kernel's LISTEN state (just
/// verified free, so what listens is us) and flip `/readyz` once it is.
///
/// Regression (issue 14): this used to *connect* to the listener and hang up, which pingora
/// logs as an ERROR `Downstream handshake error … tls handshake eof` at every start. Reading
/// `/proc/net/tcp{,6}` makes no connection; only where that table cannot be read (not
/// Linux) does it fall back to connecting.
fn mark_ready_when_listening(health: Arc<Health>, addr: std::net::SocketAddr) {
    let spawned = std::thread::Builder::new()
        .name("readiness".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let up = match is_listening(addr) {
                    Some(up) => up,
                    None => std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                        .is_ok(),
                };
                if up {
                    health.set_ready(true);
                    tracing::info!(listen = %addr, "ready");
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            tracing::error!(listen = %addr, "listener never came up; staying not ready");
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the readiness probe; staying not ready");
    }
}

/// Whether this process holds a TCP socket listening on exactly `addr`, from the kernel's
/// socket table and this process's descriptors; `None` when the table cannot be read.
fn is_listening(addr: std::net::SocketAddr) -> Option<bool> {
    let table = match addr {
        std::net::SocketAddr::V4(_) => "/proc/net/tcp",
        std::net::SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    let inodes = listening_inodes(&text, addr);
    if inodes.is_empty() {
        return Some(false);
    }
    // The table is per network namespace: make sure the socket is ours (an upgrade receives
    // its listeners over a socket, so they are ours too once handed over).
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Some(true);
    };
    Some(fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            inodes.iter().any(|i| target == format!("socket:[{i}]"))
        })
    }))
}

/// The inodes of the sockets listening on exactly `addr` in a `/proc/net/tcp{,6}` table:
/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`, with the
/// local address as hex words in host byte order and `st` `0A` for LISTEN.
fn listening_inodes(table: &str, addr: std::net::SocketAddr) -> Vec<u64> {
    const LISTEN: &str = "0A";
    let want_ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    let matches = |line: &str| -> Option<u64> {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
        let (ip_hex, port_hex) = local.split_once(':')?;
        if *state != LISTEN || u16::from_str_radix(port_hex, 16).ok()? != addr.port() {
            return None;
        }
        // Each 32-bit word is printed as a native-endian integer.
        let mut ip = Vec::with_capacity(16);
        for word in ip_hex.as_bytes().chunks(8) {
            let w = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
            ip.extend_from_slice(&w.to_ne_bytes());
        }
        (ip == want_ip).then(|| inode.parse().ok()).flatten()
    };
    table.lines().skip(1).filter_map(matches).collect()
}

/// pingora's graceful shutdown is an unconditional `sleep(grace_period_seconds)` after the
/// listeners close, whether or not anything is still running (pingora note §5). We want
/// "drain, then exit": once pingora enters its grace period, watch the in-flight gauge and
/// exit as soon as no request has been in flight for a short quiet window. If requests are
/// still running at the end of the grace period, pingora's own shutdown takes over and ends
/// them, which is the bound the operator configured.
fn exit_when_drained(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    metrics: Metrics,
    grace: Duration,
    audit: Option<Arc<crate::audit::AuditLog>>,
) {
    let spawned = std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(ExecutionPhase::ShutdownRuntimes | ExecutionPhase::Terminated) => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
            if grace.is_zero() {
                // No grace period: pingora stops at once and `run` returns normally.
                return;
            }
            let started = std::time::Instant::now();
            let deadline = started + grace;
            // A connection accepted just before the listeners closed is not counted until its
            // TLS handshake is done and its request head parsed, and a keep-alive connection
            // may still deliver a request: wait at least a second after the listeners closed,
            // then demand 300 ms of quiet, not a single zero reading.
            let settle = started + Duration::from_secs(1).min(grace);
            let quiet_needed = 15;
            let mut quiet = 0;
            while std::time::Instant::now() < deadline {
                if metrics.in_flight.get() == 0 && std::time::Instant::now() >= settle {
                    quiet += 1;
                    if quiet >= quiet_needed {
                        tracing::info!(
                            drained_ms = started.elapsed().as_millis() as u64,
                            "no requests in flight; exiting"
                        );
                        // `exit` skips the normal return path of `run`: flush the audit trail
                        // and write its final checkpoint here.
                        if let Some(audit) = &audit {
                            audit.shutdown();
                            tracing::info!("audit trail flushed; final checkpoint written");
                        }
                        std::process::exit(0);
                    }
                } else {
                    quiet = 0;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            tracing::warn!(
                in_flight = metrics.in_flight.get(),
                grace_seconds = grace.as_secs(),
                "grace period over with requests still in flight; they will be cut"
            );
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the drain watcher; SIGTERM waits the whole grace period");
    }
}

fn path_string(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Signal handling (documented in docs/operations.md):
/// - SIGINT: fast shutdown.
/// - SIGTERM: `/readyz` turns `draining`; after `server.shutdown_delay_seconds` the listeners
///   close, in-flight requests finish (bounded by `server.grace_period_seconds`), then exit.
/// - SIGQUIT: pingora's graceful upgrade (listening sockets handed to a `--upgrade` process).
/// - SIGHUP: reload the configuration, rules and certificate in place.
struct Signals {
    reloader: Arc<Reloader>,
    health: Arc<Health>,
    shutdown_delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut quit), Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    tracing::info!("SIGQUIT: handing the listeners to the upgraded process");
                    self.health.set_draining();
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = term.recv() => {
                    self.health.set_draining();
                    tracing::info!(
                        shutdown_delay_seconds = self.shutdown_delay.as_secs(),
                        "SIGTERM: draining; /readyz now reports not ready"
                    );
                    // Keep serving while load balancers notice /readyz; SIGINT still cuts it.
                    tokio::select! {
                        _ = tokio::time::sleep(self.shutdown_delay) => {}
                        _ = int.recv() => {
                            tracing::info!("SIGINT: fast shutdown");
                            return ShutdownSignal::FastShutdown;
                        }
                    }
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: fast shutdown");
                    return ShutdownSignal::FastShutdown;
                }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let reloader = self.reloader.clone();
                    // Compiling rules is CPU work; keep it off this runtime's only thread. The
                    // outcome is logged and counted by `reload` itself.
                    tokio::task::spawn_blocking(move || {
                        let _ = reloader.reload(Trigger::Signal);
                    });
                }
            }
        }
    }
}

/// Default data directory for the demo: a fresh directory under the system temp dir.
pub fn fresh_data_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "phi-gateway-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::listening_inodes;

    fn listens_in_table(table: &str, addr: std::net::SocketAddr) -> bool {
        !listening_inodes(table, addr).is_empty()
    }

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
";

    #[test]
    fn finds_a_listening_socket_by_exact_address() {
        // 0100007F is 127.0.0.1 as a little-endian word; 20FB is port 8443.
        if cfg!(target_endian = "little") {
            assert!(listens_in_table(TCP, "127.0.0.1:8443".parse().unwrap()));
        }
        assert!(!listens_in_table(TCP, "127.0.0.2:8443".parse().unwrap()));
        assert!(!listens_in_table(TCP, "127.0.0.1:8444".parse().unwrap()));
        // Established, not listening.
        assert!(!listens_in_table(TCP, "127.0.0.1:8080".parse().unwrap()));
        assert!(!listens_in_table(
            "garbage\nnot a table",
            "127.0.0.1:1".parse().unwrap()
        ));
    }
}
