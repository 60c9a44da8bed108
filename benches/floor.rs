//! The framework floor of `benches/load/run`: a bare pingora proxy with exactly the gateway's
//! framework and nothing of the gateway itself.
//!
//! Same pingora version (it links the same crate graph), the same TLS 1.3-only rustls provider
//! and certificate loading (`phi_gateway::gateway::tls`), HTTP/2 offered with the gateway's
//! HTTP/2 limits and idle timeout, the same `ServerConf` (threads, grace periods, the default
//! upstream keep-alive pool of 128) and the same upstream peer options (the configuration's
//! default timeouts). No routing, no checks, no body hold-back, no audit trail, no logs, no
//! metrics: `phi-gateway ÷ floor` in the report is then the gateway's own cost, apart from the
//! framework's.
//!
//! Built by the harness with `cargo build --release --locked --example floor`:
//!
//! ```sh
//! target/release/examples/floor --listen 127.0.0.1:8443 --cert server.pem --key server.key \
//!     --upstream 127.0.0.1:8080 --threads 1
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use phi_gateway::gateway::tls::{install_tls13_only_provider, load_cert, SwappableCert};
use phi_gateway::runtime::server::{
    H2_MAX_CONCURRENT_STREAMS, H2_MAX_HEADER_LIST_BYTES, H2_MAX_LOCAL_ERROR_RESETS,
    H2_MAX_PENDING_ACCEPT_RESETS,
};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::http::v2::server::H2Options;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;

/// A bare pingora TLS 1.3 reverse proxy (the load benchmark's framework floor).
#[derive(Parser)]
struct Args {
    /// Address to listen on (TLS 1.3, HTTP/2 offered).
    #[arg(long)]
    listen: SocketAddr,
    /// Certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The upstream (plain HTTP/1.1).
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads (the gateway's `server.threads`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Directory for the pid file and upgrade socket.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// The gateway's upstream timeouts when `upstreams[].timeouts` is not set (config/validate.rs).
const CONNECT: Duration = Duration::from_secs(2);
const READ: Duration = Duration::from_secs(30);
const WRITE: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_secs(60);
/// The gateway's default `listen.http2_idle_timeout_ms`.
const H2_IDLE: Duration = Duration::from_secs(60);

struct Floor {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    install_tls13_only_provider()?;
    let cert = load_cert(&args.cert, &args.key)?;

    let conf = ServerConf {
        threads: args.threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: args.dir.join("floor.pid").display().to_string(),
        upgrade_sock: args.dir.join("floor-upgrade.sock").display().to_string(),
        daemon: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut tls = TlsSettings::with_callbacks(Box::new(NoCallbacks))?;
    tls.set_cert_resolver(SwappableCert::new(&cert));
    tls.enable_h2();

    let mut peer = HttpPeer::new(args.upstream, false, String::new());
    peer.options.connection_timeout = Some(CONNECT);
    peer.options.total_connection_timeout = Some(CONNECT.saturating_mul(2));
    peer.options.read_timeout = Some(READ);
    peer.options.write_timeout = Some(WRITE);
    peer.options.idle_timeout = Some(IDLE);

    let mut http = pingora::proxy::HttpProxy::new(Floor { peer }, server.configuration.clone());
    http.handle_init_modules();
    let mut h2 = H2Options::default();
    h2.max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(H2_MAX_LOCAL_ERROR_RESETS));
    http.h2_options = Some(h2);
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(H2_IDLE);
    http.server_options = Some(options);
    let mut svc = Service::new("floor".to_string(), http);
    svc.add_tls_with_settings(&args.listen.to_string(), None, tls);
    server.add_service(svc);
    server.run_forever();
}

/// The gateway passes its client-identity callback (a no-op without client certificates);
/// the floor passes one that does nothing, so both listeners are built the same way.
struct NoCallbacks;

#[async_trait]
impl pingora::listeners::TlsAccept for NoCallbacks {}
