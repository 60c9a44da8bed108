//! The read before a write by id (`post_check: target`, issue 11 §3): an update or delete by
//! id of a non-Patient resource under patient binding is forwarded only once the gateway has
//! read the resource's current version from the upstream and found it in the context
//! patient's compartment ([`crate::access::policy::Policy::check_target`]).
//!
//! **When.** In `request_filter`, before the write's own upstream connection: the write
//! names its target in the URL, so the read needs nothing of the body and is made once, even
//! when the body is still to come and decides the rest.
//!
//! **How.** `GET [base]/[type]/[id]` on a connection of the gateway's own
//! [`pingora::connectors::http::Connector`] to the route's peer (the same address, TLS,
//! certificate checks and timeouts as the write), with the client's `Host` and
//! `Authorization` (the upstream authorises the read as it will the write), the gateway's
//! forwarding and identity headers, and the write's request id. The body is read up to
//! `access.response_hold_bytes` and its Content-Encoding undone.
//!
//! **Outcomes.** `200` with the resource in the compartment: the write goes on with an
//! `If-Match` naming the version read (its `ETag`, else `W/"<meta.versionId>"`), so a
//! version written in between makes the upstream refuse the write (412) instead of the gateway
//! approving a resource it did not see. `404`/`410`: nothing to replace (an update creates
//! the resource, and the body check has tied it to the patient; a delete finds nothing). A
//! resource outside the compartment: 403 `insufficient_scope` (`target_outside_compartment`).
//! Anything else — another status, a body that is not that resource, over the cap, a
//! connection error or a timeout: 403 `compartment_check_unavailable`, never forwarded
//! unchecked.

use std::time::Duration;

use bytes::BytesMut;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::access::policy::{Policy, TargetEscape, WriteTarget};
use crate::gateway::ctx::Ctx;
use crate::gateway::proxy::Gateway;

/// What the read of a write's target found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TargetCheck {
    /// The current version is in the compartment; the write carries this `If-Match`.
    Inside { if_match: Option<String> },
    /// The upstream has no such resource (404, 410).
    Absent,
    /// It is not the patient's.
    Outside,
    /// The check could not be made; the stable reason says why.
    Unavailable(&'static str),
}

impl TargetCheck {
    /// Whether the write may be forwarded.
    pub(super) fn passes(&self) -> bool {
        matches!(self, TargetCheck::Inside { .. } | TargetCheck::Absent)
    }

    /// The audit record's and the counter's reason for a write refused by it.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            TargetCheck::Outside => TargetEscape::Outside.as_str(),
            TargetCheck::Unavailable(why) => why,
            TargetCheck::Inside { .. } | TargetCheck::Absent => "allowed",
        }
    }
}

/// What the read returned, before it is judged.
struct Read {
    status: u16,
    etag: Option<String>,
    content_encoding: Option<String>,
    body: BytesMut,
}

/// An `ETag` the write may send back verbatim in `If-Match`: one entity tag, quoted, no
/// list (a list would let the upstream accept any of several versions).
fn usable_etag(v: &str) -> Option<String> {
    let v = v.trim();
    let quoted = v.strip_prefix("W/").unwrap_or(v);
    let ok = quoted.len() >= 2
        && quoted.starts_with('"')
        && quoted.ends_with('"')
        && !quoted[1..quoted.len() - 1].contains('"')
        && v.bytes().all(|b| (0x21..0x7f).contains(&b));
    ok.then(|| v.to_string())
}

impl Gateway {
    /// Reads and judges the current version of `target` for a write bound to `patient`.
    pub(super) async fn check_write_target(
        &self,
        session: &Session,
        ctx: &Ctx,
        policy: &Policy,
        target: &WriteTarget,
        patient: &str,
    ) -> TargetCheck {
        let Some(route) = ctx.route() else {
            return TargetCheck::Unavailable("target_unreadable");
        };
        let Some(peer) = ctx.snapshot.peers.get(route.upstream) else {
            return TargetCheck::Unavailable("target_unreadable");
        };
        let req = match self.target_request(session, ctx, target, &route.access.fhir_base) {
            Ok(r) => r,
            Err(_) => return TargetCheck::Unavailable("target_unreadable"),
        };
        let cap = ctx.snapshot.config.access.response_hold_bytes;
        let opts = &peer.options;
        // Connect, write and read, each under the peer's own timeouts; the whole read under
        // their sum, so a trickling upstream cannot hold the write forever.
        let budget = [
            opts.total_connection_timeout,
            opts.write_timeout,
            opts.read_timeout,
        ]
        .iter()
        .map(|t| t.unwrap_or(Duration::from_secs(10)))
        .sum::<Duration>();
        let read = tokio::time::timeout(budget, self.read_target(peer, req, cap)).await;
        let read = match read {
            Ok(Ok(r)) => r,
            Ok(Err(why)) => return TargetCheck::Unavailable(why),
            Err(_) => return TargetCheck::Unavailable("target_read_timeout"),
        };
        match read.status {
            200 => {}
            404 | 410 => return TargetCheck::Absent,
            _ => return TargetCheck::Unavailable("target_read_failed"),
        }
        let Ok(body) = crate::engine::decode_content(
            &read.body,
            read.content_encoding.as_deref(),
            &ctx.snapshot.limits,
        ) else {
            return TargetCheck::Unavailable("target_unreadable");
        };
        match policy.check_target(target, patient, &body) {
            Ok(version) => TargetCheck::Inside {
                if_match: read
                    .etag
                    .as_deref()
                    .and_then(usable_etag)
                    .or_else(|| version.map(|v| format!("W/\"{v}\""))),
            },
            Err(TargetEscape::Outside) => TargetCheck::Outside,
            Err(e) => TargetCheck::Unavailable(e.as_str()),
        }
    }

    /// The read's request header.
    fn target_request(
        &self,
        session: &Session,
        ctx: &Ctx,
        target: &WriteTarget,
        base: &str,
    ) -> pingora::Result<RequestHeader> {
        let path = target.read_path(base);
        let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
        let client = session.req_header();
        for name in [http::header::HOST, http::header::AUTHORIZATION] {
            if let Some(v) = client.headers.get(&name) {
                req.insert_header(name, v.clone())?;
            }
        }
        if req.headers.get(http::header::HOST).is_none() {
            if let Some(host) = client.uri.authority() {
                req.insert_header(http::header::HOST, host.as_str())?;
            }
        }
        req.insert_header(http::header::ACCEPT, "application/fhir+json")?;
        req.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            req.insert_header("x-forwarded-for", addr.ip().to_string())?;
        }
        req.insert_header("x-forwarded-proto", "https")?;
        crate::gateway::identity::identity_headers(ctx, &mut req)?;
        Ok(req)
    }

    /// Sends the read and collects its answer (at most `cap` body bytes).
    async fn read_target(
        &self,
        peer: &pingora::upstreams::peer::HttpPeer,
        req: RequestHeader,
        cap: u64,
    ) -> Result<Read, &'static str> {
        let unavailable = |_| "target_unreachable";
        let (mut s, _reused) = self
            .connector
            .get_http_session(peer)
            .await
            .map_err(unavailable)?;
        s.write_request_header(Box::new(req))
            .await
            .map_err(unavailable)?;
        s.finish_request_body().await.map_err(unavailable)?;
        s.read_response_header().await.map_err(unavailable)?;
        let Some(head) = s.response_header() else {
            return Err("target_unreachable");
        };
        let header = |n: http::header::HeaderName| {
            head.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut read = Read {
            status: head.status.as_u16(),
            etag: header(http::header::ETAG),
            content_encoding: header(http::header::CONTENT_ENCODING),
            body: BytesMut::new(),
        };
        while let Some(chunk) = s.read_response_body().await.map_err(unavailable)? {
            if (read.body.len() + chunk.len()) as u64 > cap {
                return Err("target_too_large");
            }
            read.body.extend_from_slice(&chunk);
        }
        if s.response_done() {
            // A complete exchange leaves a reusable connection.
            self.connector
                .release_http_session(s, peer, peer.options.idle_timeout)
                .await;
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::usable_etag;

    #[test]
    fn only_one_quoted_entity_tag_is_sent_back() {
        assert_eq!(usable_etag("W/\"3\"").as_deref(), Some("W/\"3\""));
        assert_eq!(usable_etag(" \"abc\" ").as_deref(), Some("\"abc\""));
        for bad in [
            "3",
            "W/3",
            "\"3\", \"4\"",
            "*",
            "\"",
            "\"a b\"",
            "W/\"3\"\"4\"",
        ] {
            assert_eq!(usable_etag(bad), None, "{bad}");
        }
    }
}
