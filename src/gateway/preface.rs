//! A deadline for the HTTP/2 client preface.
//!
//! pingora 0.9 runs the h2 server handshake (`pingora-core/src/apps/mod.rs`, `process_new`)
//! without a timeout, and h2 waits for the client's 24-byte preface forever. Its
//! `h2_idle_timeout` only starts once the handshake is done. So a client that completes
//! TLS with ALPN `h2` and then sends nothing holds a socket and a task for as long as it
//! likes, and enough of them exhaust the gateway's file descriptors (HTTP/1.1 connections
//! get pingora's 60 s read timeout instead).
//!
//! [`PrefaceGuard`] wraps the proxy application: on a connection that negotiated `h2` it
//! hands pingora a stream whose reads fail with `TimedOut` if the first 24 bytes have not
//! arrived within the deadline (`listen.http2_idle_timeout_ms`); h2 then fails the
//! handshake and pingora drops the connection. After the preface the stream is a plain
//! pass-through, and pingora's `h2_idle_timeout` takes over.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Length of the HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;

/// Wraps a pingora [`ServerApp`] (the proxy) so HTTP/2 connections must send their preface
/// within `deadline`.
pub struct PrefaceGuard<A> {
    inner: Arc<A>,
    deadline: Duration,
}

impl<A> PrefaceGuard<A> {
    /// Guards `inner` with `deadline`.
    pub fn new(inner: A, deadline: Duration) -> Self {
        Self {
            inner: Arc::new(inner),
            deadline,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for PrefaceGuard<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Only h2 needs it: HTTP/1.1 reads already time out after 60 s in pingora.
        let stream: Stream = if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            Box::new(PrefaceDeadline::new(stream, self.deadline))
        } else {
            stream
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// A stream whose reads fail once `deadline` passes before [`PREFACE_LEN`] bytes were read.
#[derive(Debug)]
struct PrefaceDeadline {
    inner: Stream,
    /// Preface bytes still to come; the deadline is off once this reaches 0.
    remaining: usize,
    /// `None` once the preface arrived (or the stream ended or failed).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl PrefaceDeadline {
    fn new(inner: Stream, deadline: Duration) -> Self {
        Self {
            inner,
            remaining: PREFACE_LEN,
            timer: Some(Box::pin(tokio::time::sleep(deadline))),
        }
    }
}

impl AsyncRead for PrefaceDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(timer) = this.timer.as_mut() else {
            return polled;
        };
        match &polled {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                this.remaining = this.remaining.saturating_sub(n);
                // n == 0 is end of stream: nothing left to wait for either.
                if this.remaining == 0 || n == 0 {
                    this.timer = None;
                }
            }
            Poll::Ready(Err(_)) => this.timer = None,
            Poll::Pending => {
                // Registers the waker, so a silent client is woken up by the deadline.
                if timer.as_mut().poll(cx).is_ready() {
                    this.timer = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 client preface within listen.http2_idle_timeout_ms",
                    )));
                }
            }
        }
        polled
    }
}

impl AsyncWrite for PrefaceDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// Everything else is the wrapped stream's: TLS digest (the audit trail's client certificate),
// timing, socket and proxy digests, id, peek.

#[async_trait]
impl Shutdown for PrefaceDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for PrefaceDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for PrefaceDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for PrefaceDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for PrefaceDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for PrefaceDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for PrefaceDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
