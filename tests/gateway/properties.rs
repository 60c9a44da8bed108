//! Property: forwarding is byte-exact for clean bodies. Generated PHI-free bodies (random JSON
//! documents, random binary as `application/octet-stream`, either one optionally gzip-encoded)
//! go through one running gateway over HTTP/1.1 or HTTP/2, and the recording upstream must
//! receive exactly the bytes that were sent.
//!
//! The case count is small (each case is a real TLS request) and the seed fixed, like the
//! engine properties in tests/properties.rs; `PROPTEST_RNG_SEED` / `PROPTEST_CASES` explore
//! further. A failing case is shrunk to a minimal body before it is reported.

use std::io::Write as _;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use crate::common::*;

/// Clean JSON: keys of lowercase letters, strings of letters (some non-ASCII), spaces and
/// punctuation, integers below 100, booleans and null. No digit runs, no `@`, no
/// `resourceType`: nothing a default rule can match.
fn clean_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let text = "[a-zA-Z äöüéßñ中文 .,;:!?'()/_\"\\\\-]{0,40}";
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u8..100).prop_map(Value::from),
        text.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,8}", inner), 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One request body: content type and bytes.
#[derive(Debug, Clone)]
struct Body {
    content_type: &'static str,
    bytes: Vec<u8>,
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (clean_json(), any::<bool>()).prop_map(|(v, pretty)| {
            let text = if pretty {
                serde_json::to_string_pretty(&v)
            } else {
                serde_json::to_string(&v)
            };
            Body {
                content_type: "application/json",
                bytes: text.expect("serialize").into_bytes(),
            }
        }),
        // Binary without ASCII digits or `@`: random bytes otherwise (NULs, invalid UTF-8,
        // high bytes), so no rule can fire by chance and every case must be forwarded.
        prop::collection::vec(
            any::<u8>().prop_filter("no digits or @", |b| !b.is_ascii_digit() && *b != b'@'),
            0..4096
        )
        .prop_map(|bytes| Body {
            content_type: "application/octet-stream",
            bytes,
        }),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

#[test]
fn clean_bodies_are_forwarded_byte_exact_property() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clients = [gw.client(false), gw.client(true)];
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x5eed_0006);
    }
    config.failure_persistence = None;
    let mut runner = TestRunner::new(config);
    // The runner takes a `Fn`: count attempts in a Cell.
    let n = std::cell::Cell::new(0u32);
    let result = runner.run(
        &(body(), any::<bool>(), any::<bool>()),
        |(body, h2, gzipped)| {
            // A fresh path per attempt (shrinking included), so the upstream's record of
            // this request is unambiguous.
            n.set(n.get() + 1);
            let path = format!("/fhir/Binary/prop{}", n.get());
            let (bytes, encoding) = if gzipped {
                (gzip(&body.bytes), Some("gzip"))
            } else {
                (body.bytes.clone(), None)
            };
            let client = &clients[usize::from(h2)];
            let status = rt.block_on(async {
                let mut req = client
                    .post(gw.url(&path))
                    .header(AUDIT, "property")
                    .header("content-type", body.content_type);
                if let Some(ce) = encoding {
                    req = req.header("content-encoding", ce);
                }
                let resp = req.body(bytes.clone()).send().await.expect("request");
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                status
            });
            prop_assert_eq!(status, 200, "{} h2={} gzip={}", path, h2, gzipped);
            // The recorded body is the payload as sent: compressed bytes stay compressed.
            assert_forwarded_exactly(&up, &path, &bytes);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}\n--- gateway logs ---\n{}", gw.logs());
    }
}
