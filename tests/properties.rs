//! Property tests of the detection engine through its public entry point, `Engine::scan_with`
//! (what the proxy and `phi-gateway scan` call), with the default rule pack (`rules/`):
//!
//! - no input panics the engine: arbitrary bytes under arbitrary content types and encodings
//!   (and the same bytes as a query string, a path and a header value);
//! - detection is invariant under the supported encodings: a valid SSN found in plain text
//!   (or a JSON document) is found, under the same rule id, when the body is gzip-, deflate-,
//!   br-, zstd-, percent-, base64-, `\u`- or form-encoded.
//!
//! Runs use a fixed seed so CI sees the same cases every time (like the rest of the suite, no
//! test depends on the system RNG); set `PROPTEST_RNG_SEED=<u64>` to explore other cases and
//! `PROPTEST_CASES=<n>` for more of them. A failure is shrunk to a minimal input and reported
//! with its seed. Byte-exact forwarding needs the real gateway: tests/gateway/properties.rs.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use phi_gateway::engine::rules::RuleSet;
use phi_gateway::engine::{Engine, InspectError, Limits, Part, ScanOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        match RuleSet::load_dir(&dir) {
            Ok(set) => Engine::new(Arc::new(set)),
            Err(e) => panic!("default pack: {e}"),
        }
    })
}

/// A runner with `cases` cases and a fixed seed, unless `PROPTEST_CASES` /
/// `PROPTEST_RNG_SEED` say otherwise (proptest reads them in `Config::default`).
fn runner(cases: u32) -> TestRunner {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x5eed_0006);
    }
    // Integration tests have no source file next to them for regression files: a failure
    // prints its minimal input, which then belongs in a unit test.
    config.failure_persistence = None;
    TestRunner::new(config)
}

fn scan(ct: Option<&str>, ce: Option<&str>, bytes: &[u8]) -> Result<Vec<String>, InspectError> {
    let part = Part::Body {
        content_type: ct,
        content_encoding: ce,
        bytes,
    };
    let options = ScanOptions::route(Some("fhir"));
    let scan = engine().scan_with(&part, &Limits::default(), &options)?;
    Ok(scan.findings.into_iter().map(|f| f.rule_id).collect())
}

// === no input panics the engine ===

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/fhir+json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "x-application/hl7-v2+er7",
    "multipart/form-data; boundary=b",
    "multipart/mixed; boundary=\"b\"",
    "text/plain",
    "text/plain; charset=utf-16",
    "application/json; charset=utf-16be",
    "application/octet-stream",
];

const ENCODINGS: &[&str] = &[
    "gzip",
    "deflate",
    "br",
    "zstd",
    "x-gzip",
    "identity",
    "gzip, br",
    "zstd, deflate",
    "compress",
];

/// Bytes that hit the carriers' syntax often: JSON, HL7, multipart and form punctuation,
/// escapes, digits and a few multi-byte characters, mixed with arbitrary bytes.
fn hostile_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            "\"",
            ":",
            ",",
            "\\u00",
            "\\",
            "MSH|^~\\&|",
            "\r",
            "PID|",
            "--b",
            "\r\n\r\n",
            "Content-Type: application/json\r\n",
            "Content-Transfer-Encoding: base64\r\n",
            "=",
            "&",
            "%",
            "%u00",
            "&#",
            ";",
            "+",
            "536",
            "-22-",
            "1234",
            "ssn",
            "eyJ",
            ".",
            "５",
            "\u{200b}",
            "\u{feff}",
            "\0",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    prop::collection::vec(token, 0..max).prop_map(|v| v.concat())
}

/// A content type: one the carriers know, or arbitrary text.
fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        prop::sample::select(CONTENT_TYPES).prop_map(|s| Some(s.to_string())),
        ".{0,40}".prop_map(Some),
    ]
}

/// A `Content-Encoding`: none, a known value, or arbitrary text.
fn content_encoding() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        2 => prop::sample::select(ENCODINGS).prop_map(|s| Some(s.to_string())),
        1 => "[a-z, -]{0,30}".prop_map(Some),
    ]
}

#[test]
fn no_input_panics_the_engine() {
    let strategy = (
        content_type(),
        content_encoding(),
        any::<bool>(),
        hostile_bytes(512),
    );
    runner(512)
        .run(&strategy, |(ct, ce, compress, body)| {
            // Half the time the body really is encoded, so the carriers see the fuzzed bytes
            // behind a valid stream instead of stopping at a corrupt one.
            let body = match (&ce, compress) {
                (Some(ce), true) => encode_all(ce, &body).unwrap_or(body),
                _ => body,
            };
            let part = Part::Body {
                content_type: ct.as_deref(),
                content_encoding: ce.as_deref(),
                bytes: &body,
            };
            // The proxy scans the path, the query and headers with the same entry point.
            let text = String::from_utf8_lossy(&body);
            let parts = [
                part,
                Part::Query(&text),
                Part::Path(&text),
                Part::Header {
                    name: "x-patient",
                    value: &body,
                },
            ];
            for part in &parts {
                for explain in [false, true] {
                    let options = ScanOptions::route(Some("fhir")).explained(explain);
                    // Errors are answers (415, 413, 400); only a panic fails the property.
                    let _ = engine().scan_with(part, &Limits::default(), &options);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

// === detection is invariant under the supported encodings ===

/// A valid SSN: area 001–899 except 666, group 01–99, serial 0001–9999, minus what the `ssn`
/// validator rejects on purpose (all digits equal, the famous misused numbers).
fn ssn_digits() -> impl Strategy<Value = String> {
    (1u32..=899, 1u32..=99, 1u32..=9999)
        .prop_filter("area 666 is never issued", |(a, _, _)| *a != 666)
        .prop_map(|(a, g, s)| format!("{a:03}{g:02}{s:04}"))
        .prop_filter("validator denylist", |d| {
            !d.bytes().all(|b| Some(&b) == d.as_bytes().first())
                && !["078051120", "219099999", "457555462", "123456789"].contains(&d.as_str())
        })
}

/// How the SSN is written: delimited with one separator used twice (scores on its own), or
/// nine bare digits after the word `SSN` (bare digits need context).
fn ssn_written() -> impl Strategy<Value = String> {
    (ssn_digits(), prop::sample::select(vec!["-", " ", ".", ""])).prop_map(|(d, sep)| {
        if sep.is_empty() {
            format!("SSN {d}")
        } else {
            format!("{}{sep}{}{sep}{}", &d[..3], &d[3..5], &d[5..])
        }
    })
}

/// Clean-ish words: lowercase letters only (no digits, so nothing can glue onto the SSN or
/// form another identifier), from a clinical vocabulary or random.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "patient",
            "reports",
            "mild",
            "headache",
            "since",
            "yesterday",
            "no",
            "fever",
            "advised",
            "rest",
            "follow",
            "up",
            "the",
            "record",
            "note",
            "id",
            "number",
            "of",
        ])
        .prop_map(str::to_string),
        "[a-z]{1,10}",
    ]
}

/// Free text of clean words with the SSN somewhere in it, separated by spaces or punctuation.
fn text_with_ssn() -> impl Strategy<Value = (String, String)> {
    (
        prop::collection::vec(word(), 0..12),
        prop::collection::vec(word(), 0..12),
        prop::sample::select(vec![" ", ": ", ", ", " (", " #"]),
        ssn_written(),
    )
        .prop_map(|(before, after, punct, ssn)| {
            let mut t = before.join(" ");
            t.push_str(punct);
            t.push_str(&ssn);
            if !after.is_empty() {
                t.push(' ');
                t.push_str(&after.join(" "));
            }
            (t, ssn)
        })
}

/// A JSON object whose values are clean words, with `value` (a JSON string literal, already
/// encoded) under a random key at a random position.
fn json_doc(
    fields: &[(String, String)],
    key: &str,
    value_literal: &str,
    at: prop::sample::Index,
) -> String {
    let mut members: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    let i = at.index(members.len() + 1);
    members.insert(i, format!("\"{key}\":{value_literal}"));
    format!("{{{}}}", members.join(","))
}

fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    let level = flate2::Compression::default();
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).expect("write");
            e.finish().expect("finish")
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(data).expect("write");
            e.finish().expect("finish")
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).expect("write");
            }
            out
        }
        "zstd" => zstd::encode_all(data, 3).expect("zstd"),
        other => panic!("no encoder for {other}"),
    }
}

/// Applies a `Content-Encoding` list (first listed = applied first); `None` for codings we
/// have no encoder for.
fn encode_all(header: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut out = data.to_vec();
    for token in header.split(',').map(str::trim) {
        out = match token.to_ascii_lowercase().as_str() {
            "" | "identity" => out,
            "x-gzip" => compress("gzip", &out),
            t @ ("gzip" | "deflate" | "br" | "zstd") => compress(t, &out),
            _ => return None,
        };
    }
    Some(out)
}

/// `%XX` for every byte that is not alphanumeric (what `encodeURIComponent` does, roughly),
/// or for every byte.
fn percent(s: &str, all: bool) -> String {
    s.bytes()
        .map(|b| {
            if !all && b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A JSON string literal with every character written as `\uXXXX` (surrogate pairs beyond
/// the BMP).
fn json_u_escaped(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let mut buf = [0u16; 2];
        for unit in c.encode_utf16(&mut buf) {
            out.push_str(&format!("\\u{unit:04x}"));
        }
    }
    out.push('"');
    out
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One way of sending the text: content type, content encoding, body, and a name for messages.
struct Variant {
    name: &'static str,
    ct: &'static str,
    ce: Option<&'static str>,
    body: Vec<u8>,
}

/// Every supported encoding of a text (`t`) and of a JSON document carrying it.
fn variants(
    t: &str,
    fields: &[(String, String)],
    key: &str,
    at: prop::sample::Index,
) -> Vec<Variant> {
    let lit = serde_json::to_string(t).expect("string literal");
    let doc = json_doc(fields, key, &lit, at);
    let b64 = base64::engine::general_purpose::STANDARD.encode(t);
    let mut v = vec![
        Variant {
            name: "json",
            ct: "application/json",
            ce: None,
            body: doc.clone().into_bytes(),
        },
        Variant {
            name: "percent (non-alphanumerics)",
            ct: "text/plain",
            ce: None,
            body: percent(t, false).into_bytes(),
        },
        Variant {
            name: "percent (every byte)",
            ct: "text/plain",
            ce: None,
            body: percent(t, true).into_bytes(),
        },
        Variant {
            name: "percent inside JSON",
            ct: "application/json",
            ce: None,
            body: json_doc(fields, key, &format!("\"{}\"", percent(t, false)), at).into_bytes(),
        },
        Variant {
            name: "base64 in text",
            ct: "text/plain",
            ce: None,
            body: format!("attachment {b64} end").into_bytes(),
        },
        Variant {
            name: "base64 in JSON",
            ct: "application/json",
            ce: None,
            body: json_doc(fields, key, &format!("\"{b64}\""), at).into_bytes(),
        },
        Variant {
            name: "\\u-escaped JSON",
            ct: "application/json",
            ce: None,
            body: json_doc(fields, key, &json_u_escaped(t), at).into_bytes(),
        },
        Variant {
            name: "form",
            ct: "application/x-www-form-urlencoded",
            ce: None,
            body: format!("{key}={}&other=value", form_value(t)).into_bytes(),
        },
    ];
    for coding in ["gzip", "deflate", "br", "zstd"] {
        v.push(Variant {
            name: coding,
            ct: "text/plain",
            ce: Some(coding),
            body: compress(coding, t.as_bytes()),
        });
        v.push(Variant {
            name: coding,
            ct: "application/json",
            ce: Some(coding),
            body: compress(coding, doc.as_bytes()),
        });
    }
    v.push(Variant {
        name: "stacked gzip, br",
        ct: "application/json",
        ce: Some("gzip, br"),
        body: compress("br", &compress("gzip", doc.as_bytes())),
    });
    v
}

#[test]
fn ssn_detection_is_invariant_under_encodings() {
    let strategy = (
        text_with_ssn(),
        prop::collection::vec(("[a-z]{1,8}", "[a-z ]{0,20}"), 0..5),
        "[a-z]{1,8}",
        any::<prop::sample::Index>(),
    );
    runner(128)
        .run(&strategy, |((t, ssn), fields, key, at)| {
            let plain = scan(Some("text/plain"), None, t.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("plain scan failed: {e}")))?;
            // Delimited SSNs score on their own and bare ones follow `SSN`: the plain text
            // always has the finding, so every encoded variant must have it too.
            prop_assert!(
                plain.iter().any(|r| r == "us-ssn"),
                "plain text {t:?} ({ssn}): {plain:?}"
            );
            for v in variants(&t, &fields, &key, at) {
                let found = scan(Some(v.ct), v.ce, &v.body).map_err(|e| {
                    TestCaseError::fail(format!("{} ({}, {:?}): {e}", v.name, v.ct, v.ce))
                })?;
                prop_assert!(
                    found.iter().any(|r| r == "us-ssn"),
                    "{} ({}, {:?}) lost us-ssn for {t:?}: {found:?}\nbody: {}",
                    v.name,
                    v.ct,
                    v.ce,
                    String::from_utf8_lossy(&v.body)
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

// === access: the URL classifier and the patient compartment ===

/// Percent-encodes each byte of `s` whose bit in `mask` (cycled) is set.
fn percent_some(s: &str, mask: &[bool]) -> String {
    s.bytes()
        .enumerate()
        .map(|(i, b)| {
            if mask.get(i % mask.len().max(1)).copied().unwrap_or(false) {
                format!("%{b:02X}")
            } else {
                (b as char).to_string()
            }
        })
        .collect()
}

/// An encoding cannot split the check from what the upstream sees: percent-encoding any
/// characters of the path segments and of the query values of a FHIR request either classifies
/// to exactly the same interaction, parameters and compartment verdict as the plain request,
/// or is refused. And no target panics the classifier or the compartment check.
#[test]
fn percent_encoding_never_changes_an_access_decision() {
    use phi_gateway::access::compartment::check_request;
    use phi_gateway::access::fhir::{classify, RequestParts};
    let ids = prop::sample::select(vec!["pat-1", "pat-2", "obs-1", "a.b", "x"]);
    let types = prop::sample::select(vec!["Patient", "Observation", "Condition", "Encounter"]);
    let params = prop::sample::select(vec![
        "subject=Patient/pat-1",
        "subject=Patient/pat-1,Patient/pat-2",
        "patient=pat-1",
        "_id=pat-1",
        "code=8867-4",
        "_has:Observation:patient:code=x",
        "subject:Patient=pat-2",
        "_include=Observation:subject",
    ]);
    let shape = 0usize..6;
    let strategy = (
        types,
        ids,
        prop::collection::vec(params, 0..3),
        shape,
        prop::collection::vec(any::<bool>(), 1..7),
    );
    runner(512)
        .run(&strategy, |(ty, id, params, shape, mask)| {
            let path = match shape {
                0 => format!("{ty}/{id}"),
                1 => ty.to_string(),
                2 => format!("Patient/{id}/{ty}"),
                3 => format!("{ty}/{id}/_history/1"),
                4 => format!("Patient/{id}/$everything"),
                _ => format!("{ty}/_history"),
            };
            let query = params.join("&");
            let plain = format!("/fhir/{path}?{query}");
            let encoded_query: Vec<String> = params
                .iter()
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => format!("{k}={}", percent_some(v, &mask)),
                    None => p.to_string(),
                })
                .collect();
            let encoded_path: Vec<String> = path
                .split('/')
                .map(|seg| percent_some(seg, &mask))
                .collect();
            let encoded = format!(
                "/fhir/{}?{}",
                encoded_path.join("/"),
                encoded_query.join("&")
            );
            let parts = |target: &str| {
                classify(&RequestParts {
                    method: "GET",
                    target,
                    base: "/fhir",
                    body: None,
                    if_none_exist: false,
                })
            };
            let (a, b) = (parts(&plain), parts(&encoded));
            if let Ok(b) = &b {
                let a = a.as_ref().map_err(|e| {
                    TestCaseError::fail(format!("{encoded} classified but {plain} did not: {e}"))
                })?;
                prop_assert_eq!(a, b, "{} vs {}", plain, encoded);
                prop_assert_eq!(
                    check_request(a, "pat-1", None),
                    check_request(b, "pat-1", None)
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// No bytes panic the scope parser, the classifier, the Bundle parser or the policy.
#[test]
fn no_input_panics_the_access_parsers() {
    use phi_gateway::access::fhir::{bundle::parse_bundle, classify, RequestParts};
    use phi_gateway::access::policy::{AccessRequest, Policy, Subject};
    use phi_gateway::access::scope::ScopeSet;
    let policy = Policy::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policy"))
        .unwrap_or_else(|e| panic!("{e}"));
    let text = "[ -~%/?&=,:.$*_\u{e9}\u{0}\\\\]{0,80}";
    let strategy = (text, text, hostile_bytes(512));
    runner(256)
        .run(&strategy, |(scope, target, body)| {
            let _ = ScopeSet::parse(&scope);
            let target = format!("/fhir/{target}");
            let _ = classify(&RequestParts {
                method: "POST",
                target: &target,
                base: "/fhir",
                body: Some(&body),
                if_none_exist: false,
            });
            let _ = parse_bundle(&body);
            let subject = Subject {
                scope,
                roles: vec!["nurse".into()],
                permissions: serde_json::Value::Null,
                patient: Some("pat-1".into()),
            };
            for method in ["GET", "POST", "PUT"] {
                let _ = policy.evaluate(
                    &subject,
                    &AccessRequest {
                        method,
                        target: &target,
                        base: "/fhir",
                        body: Some(&body),
                        if_none_exist: false,
                    },
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

// === the whole-body check agrees with the full walk ===

/// A value piece: a clean word, an identifier-like number, a date, or PHI the default pack
/// finds (an SSN as written, an e-mail address, a phone number, an SSN hotword).
fn value_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => word(),
        1 => ssn_written(),
        1 => ssn_digits(),
        1 => Just("jane.roe@synthetic-clinic.org".to_string()),
        1 => Just("617-555-0123".to_string()),
        1 => Just("ssn".to_string()),
        1 => "(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9])",
        1 => "[0-9]{4,12}",
        1 => Just("http://hl7.org/fhir/sid/us-ssn".to_string()),
    ]
}

/// What goes between two pieces of a string: a space, or a JSON escape, most of them ones the
/// whole-body check reads (`\"`, `\\`, `\n`, `\r`, `\t`), some that end it (`\u0020`, `\/`).
fn joint() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        " ", " ", "", "-", r#"\""#, r"\\", r"\n", r"\r", r"\t", r"\r\n", r"\u0020", r"\/",
    ])
}

/// A JSON string literal of a few pieces with joints.
fn string_literal() -> impl Strategy<Value = String> {
    prop::collection::vec((value_piece(), joint()), 1..5).prop_map(|parts| {
        let mut s = String::from("\"");
        for (p, j) in parts {
            s.push_str(&p);
            s.push_str(j);
        }
        s.push('"');
        s
    })
}

/// A FHIR-like resource: a type, and members under keys the default pack's selectors and
/// keywords name (and others), some holding an identifier with a system.
fn resource() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "note",
        "div",
        "text",
        "value",
        "birthDate",
        "telecom",
        "comment",
        "display",
        "id",
        "mrn",
        "ssn",
        "email",
    ]);
    (
        prop::sample::select(vec![
            "Patient",
            "Observation",
            "Practitioner",
            "Encounter",
            "Pat\\\"ient",
        ]),
        prop::collection::vec((key, string_literal()), 0..5),
        prop::option::of((string_literal(), string_literal())),
    )
        .prop_map(|(ty, members, ident)| {
            let mut m = vec![format!(r#""resourceType":"{ty}""#)];
            m.extend(members.into_iter().map(|(k, v)| format!(r#""{k}":{v}"#)));
            if let Some((sys, val)) = ident {
                m.push(format!(
                    r#""identifier":[{{"system":{sys},"value":{val}}}]"#
                ));
            }
            format!("{{{}}}", m.join(","))
        })
}

/// Random FHIR-like Bundles with narratives, escapes and PHI fragments: the default scan
/// (whole-body check, then a walk narrowed to the rules it could not prove dead, or no walk)
/// reports exactly what the full walk with every rule reports (explain mode skips the check).
#[test]
fn whole_body_check_agrees_with_the_full_walk_on_random_bundles() {
    let strategy = prop::collection::vec(resource(), 1..6);
    runner(256)
        .run(&strategy, |entries| {
            let doc = format!(
                r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#,
                entries
                    .iter()
                    .map(|r| format!(r#"{{"resource":{r}}}"#))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let part = Part::Body {
                content_type: Some("application/fhir+json"),
                content_encoding: None,
                bytes: doc.as_bytes(),
            };
            let hits = |s: &phi_gateway::engine::Scan| -> Vec<(String, String, String)> {
                s.findings
                    .iter()
                    .map(|f| {
                        (
                            f.rule_id.clone(),
                            f.location.clone(),
                            f.decode_chain.join(">"),
                        )
                    })
                    .collect()
            };
            let fast = engine()
                .scan(&part, &Limits::default())
                .map_err(|e| TestCaseError::fail(format!("scan failed: {e}")))?;
            let full = engine()
                .scan_with(
                    &part,
                    &Limits::default(),
                    &ScanOptions::default().explained(true),
                )
                .map_err(|e| TestCaseError::fail(format!("scan failed: {e}")))?;
            prop_assert_eq!(hits(&fast), hits(&full), "{}", doc);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
