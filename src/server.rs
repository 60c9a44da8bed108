//! Wiring: validated configuration → pingora `Server` with the proxy, admin and (demo) sample
//! EHR services → run until a signal.
//!
//! [`prepare`] does every fallible step (rules, certificate, peers, metrics) *before* any port
//! is bound, so `check` and `run` fail the same way on the same input.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;

use crate::admin::{AdminApp, Health};
use crate::config::GatewayConfig;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::proxy::{Gateway, Snapshot};
use crate::rules::RuleSet;
use crate::tls::{LoadedCert, SwappableCert};

/// Anything that stops the gateway from starting. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration file is invalid.
    #[error("{0}")]
    Config(#[from] crate::yaml::SourceError),
    /// The rules are invalid.
    #[error("{0}")]
    Rules(#[from] crate::rules::RuleError),
    /// A certificate or key is unusable.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// pingora rejected the listener settings.
    #[error("cannot configure the TLS listener: {0}")]
    Listener(String),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(String),
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

/// Everything needed to start, already validated.
pub struct Prepared {
    /// The shared request snapshot.
    pub snapshot: Arc<Snapshot>,
    /// The listener certificate.
    pub cert: LoadedCert,
    /// Metrics registry.
    pub metrics: Metrics,
}

/// Loads rules, certificate and upstream CAs for `config` without binding anything.
pub fn prepare(config: GatewayConfig) -> Result<Prepared, StartError> {
    let rules = RuleSet::load_dirs(&config.rule_dirs())?;
    crate::config::check_rule_overrides(&config, &|id| rules.get(id).is_some())?;
    let cert = crate::tls::load_cert(&config.listen.cert_file, &config.listen.key_file)?;
    let metrics = Metrics::new().map_err(|e| StartError::Metrics(e.to_string()))?;
    metrics.rules_loaded.set(rules.len() as i64);
    metrics
        .cert_not_after
        .with_label_values(&["listener"])
        .set(cert.not_after_unix);
    let engine = Engine::new(Arc::new(rules));
    let snapshot = Arc::new(Snapshot::new(config, engine)?);
    Ok(Prepared {
        snapshot,
        cert,
        metrics,
    })
}

/// A hex SHA-256 over the configuration file and the rule set digest: the "config version"
/// that logs (and later audit records) carry.
pub fn config_hash(config: &GatewayConfig, rules: &RuleSet) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    if let Ok(bytes) = std::fs::read(&config.source) {
        ctx.update(&bytes);
    }
    ctx.update(rules.digest().as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Extra services the demo adds next to the gateway.
pub struct Extra {
    /// Address for the built-in sample EHR, if it should run.
    pub sample_ehr: Option<std::net::SocketAddr>,
}

/// Builds the pingora server and runs it until SIGINT (fast) or SIGTERM (graceful).
/// Blocks the calling thread.
pub fn run(prepared: Prepared, extra: Extra) -> Result<(), StartError> {
    crate::tls::install_tls13_only_provider()?;
    let config = prepared.snapshot.config.clone();

    // Bind-check every address first: pingora retries a taken port for 30 s and then panics
    // its service thread while the process lives on, unable to serve. Failing here is clearer.
    let mut addrs = vec![("listen", config.listen.address)];
    addrs.extend(config.admin.map(|a| ("admin", a)));
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
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let resolver = SwappableCert::new(&prepared.cert);
    // The paths stay empty: the certificate comes from our resolver, never from pingora's
    // file loading (which panics on a bad file).
    let mut tls =
        TlsSettings::intermediate("", "").map_err(|e| StartError::Listener(e.to_string()))?;
    tls.set_cert_resolver(resolver);
    if config.listen.http2 {
        tls.enable_h2();
    }
    let gateway = Gateway::new(prepared.snapshot.clone(), prepared.metrics.clone());
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway,
        "phi-gateway proxy",
    );
    let listen = config.listen.address.to_string();
    proxy.add_tls_with_settings(&listen, None, tls);
    server.add_service(proxy);

    let health = Arc::new(Health::default());
    if let Some(admin) = config.admin {
        let mut svc = Service::new(
            "phi-gateway admin".to_string(),
            AdminApp::new(prepared.metrics.clone(), health.clone()),
        );
        svc.add_tcp(&admin.to_string());
        server.add_service(svc);
    }
    if let Some(addr) = extra.sample_ehr {
        let mut svc = Service::new("sample EHR".to_string(), crate::demo::SampleEhr);
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config_version = %config_hash(&config, prepared.snapshot.engine.rules()),
        listen = %config.listen.address,
        admin = %config.admin.map(|a| a.to_string()).unwrap_or_else(|| "disabled".into()),
        rules = prepared.snapshot.engine.rules().len(),
        routes = config.routes.len(),
        tls = "TLS 1.3 only",
        "phi-gateway starting"
    );
    for route in &config.routes {
        tracing::info!(route = %route.name, mode = %route.mode, "route mode");
    }
    mark_ready_when_listening(health, config.listen.address);
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals),
    });
    tracing::info!("phi-gateway stopped");
    Ok(())
}

/// pingora binds its listeners inside `run`, with no callback; readiness must not be claimed
/// before then. Poll the listen address (just verified free, so what answers is us) and flip
/// `/readyz` once it accepts.
fn mark_ready_when_listening(health: Arc<Health>, addr: std::net::SocketAddr) {
    let spawned = std::thread::Builder::new()
        .name("readiness".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let probe = std::net::TcpStream::connect_timeout(
                    &addr,
                    std::time::Duration::from_millis(200),
                );
                if probe.is_ok() {
                    health.set_ready(true);
                    tracing::info!(listen = %addr, "ready");
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            tracing::error!(listen = %addr, "listener never came up; staying not ready");
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the readiness probe; staying not ready");
    }
}

fn path_string(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Signal handling. SIGINT: fast shutdown. SIGTERM: graceful (in-flight requests get
/// `grace_period_seconds`). SIGQUIT: pingora's graceful upgrade. SIGHUP is caught so that it
/// can never kill the gateway by default action; configuration reload is not implemented in
/// this version and a SIGHUP only logs that.
struct Signals;

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
                _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
                _ = term.recv() => {
                    tracing::info!("SIGTERM: graceful shutdown");
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: fast shutdown");
                    return ShutdownSignal::FastShutdown;
                }
                _ = hup.recv() => {
                    tracing::warn!("SIGHUP received: hot reload is not supported by this version; restart to apply configuration changes");
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
