use std::net::SocketAddr;
use std::time::Duration;

use super::routing::strip_port;
use super::*;
use crate::engine::Mode;

fn parse(text: &str) -> Result<GatewayConfig, SourceError> {
    parse_with(text, Dns::Resolve)
}

fn parse_with(text: &str, dns: Dns) -> Result<GatewayConfig, SourceError> {
    let file = Path::new("/etc/gw/gateway.yaml");
    let raw: RawConfig = crate::engine::source::parse(file, text)?;
    validate(file, Path::new("/etc/gw"), raw, dns)
}

#[test]
fn skipping_dns_still_checks_the_address_form() {
    let named = MINIMAL.replace(
        "address: 127.0.0.1:8080",
        "address: ehr.hospital.invalid:8080",
    );
    let c = parse_with(&named, Dns::Skip).unwrap();
    assert_eq!(
        c.upstreams[0].address,
        SocketAddr::from(([0, 0, 0, 0], 8080))
    );
    // An IP address is kept as written either way.
    let c = parse_with(MINIMAL, Dns::Skip).unwrap();
    assert_eq!(
        c.upstreams[0].address,
        SocketAddr::from(([127, 0, 0, 1], 8080))
    );
    for bad in [
        "ehr.hospital.invalid",
        "ehr.hospital.invalid:http",
        "ehr_host:80",
        ":80",
        "-ehr:80",
    ] {
        let text = MINIMAL.replace("address: 127.0.0.1:8080", &format!("address: \"{bad}\""));
        let e = parse_with(&text, Dns::Skip).unwrap_err();
        assert_eq!(e.field, "upstreams[0].address", "{bad}: {e}");
    }
    // Resolving is the default, and `.invalid` never resolves (RFC 6761).
    let e = parse(&named).unwrap_err();
    assert!(e.message.contains("cannot resolve"), "{e}");
}

const MINIMAL: &str = "\
listen:
  address: 127.0.0.1:8443
  cert_file: tls/server.pem
  key_file: tls/server.key
rules:
  dir: rules
upstreams:
  - name: ehr
    address: 127.0.0.1:8080
routes:
  - name: fhir
    path_prefix: /fhir/
    upstream: ehr
";

#[test]
fn minimal_config_gets_safe_defaults() {
    let c = parse(MINIMAL).unwrap();
    let r = &c.routes[0];
    assert_eq!(r.mode, Mode::Enforce);
    assert_eq!(r.audit_headers, vec![DEFAULT_AUDIT_HEADER]);
    assert_eq!(r.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert!(r.inspect.body && r.inspect.query);
    assert_eq!(c.listen.cert_file, Path::new("/etc/gw/tls/server.pem"));
    assert!(c.listen.http2);
    assert_eq!(c.listen.http2_idle_timeout, Duration::from_secs(60));
}

/// Regression (issue 14): was "only headers named in `inspect.headers` are scanned, none by
/// default"; now every header but the documented skip list, narrower on request.
#[test]
fn every_header_is_inspected_by_default_and_routes_can_narrow_it() {
    let c = parse(MINIMAL).unwrap();
    let r = &c.routes[0];
    assert_eq!(r.inspect.headers, vec!["*"]);
    assert!(r.inspect.header_selected("x-patient-ssn") && r.inspect.header_selected("cookie"));
    assert!(!r.inspect.header_selected("traceparent"));
    assert!(!r.allow_upgrade);
    let with = |ins: &str| format!("{MINIMAL}    allow_upgrade: true\n    inspect:\n{ins}");
    let c = parse(&with("      headers: [referer, x-patient-*]\n")).unwrap();
    let r = &c.routes[0];
    assert!(r.allow_upgrade);
    assert!(r.inspect.header_selected("x-patient-mrn") && !r.inspect.header_selected("cookie"));
    let c = parse(&with("      skip_headers: [x-b3-*, X-Session]\n")).unwrap();
    let r = &c.routes[0];
    assert!(!r.inspect.header_selected("x-b3-spanid") && !r.inspect.header_selected("x-session"));
    assert!(r.inspect.header_selected("x-member-id"));
    // An empty list scans no header at all (besides the audit headers).
    let c = parse(&with("      headers: []\n")).unwrap();
    assert!(!c.routes[0].inspect.header_selected("x-patient-ssn"));
    let e = parse(&with("      skip_headers: [\"bad header\"]\n")).unwrap_err();
    assert_eq!(e.field, "routes[0].inspect.skip_headers[0]", "{e}");
}

#[test]
fn http2_idle_timeout_is_bounded() {
    let with = |v: &str| {
        MINIMAL.replace(
            "  key_file: tls/server.key\n",
            &format!("  key_file: tls/server.key\n  http2_idle_timeout_ms: {v}\n"),
        )
    };
    let c = parse(&with("1500")).unwrap();
    assert_eq!(c.listen.http2_idle_timeout, Duration::from_millis(1500));
    for bad in ["0", "99", "3600001"] {
        let e = parse(&with(bad)).unwrap_err();
        assert_eq!(e.field, "listen.http2_idle_timeout_ms", "{bad}: {e}");
        assert!(e.message.contains("between 100 and 3600000"), "{e}");
    }
}

#[test]
fn request_limits_have_defaults_and_bounds() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.limits.max_uri_bytes, 8 * 1024);
    assert_eq!(c.limits.max_header_bytes, 64 * 1024);
    assert_eq!(c.limits.header_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.body_timeout, Duration::from_secs(60));
    let text = format!("{MINIMAL}limits:\n  header_timeout_ms: 1500\n  max_uri_bytes: 4096\n");
    let c = parse(&text).unwrap();
    assert_eq!(c.limits.header_timeout, Duration::from_millis(1500));
    assert_eq!(c.limits.max_uri_bytes, 4096);
    for (field, bad) in [
        ("max_uri_bytes", "100000"),
        ("max_header_bytes", "10"),
        ("header_timeout_ms", "0"),
        ("body_timeout_ms", "99999999"),
    ] {
        let e = parse(&format!("{MINIMAL}limits:\n  {field}: {bad}\n")).unwrap_err();
        assert_eq!(e.field, format!("limits.{field}"), "{e}");
    }
}

#[test]
fn rule_overlays_are_layered_after_the_base_directory() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.rule_dirs(), vec![PathBuf::from("/etc/gw/rules")]);
    let text = MINIMAL.replace(
        "  dir: rules\n",
        "  dir: rules\n  overlays: [site, /opt/more]\n",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.rule_dirs(),
        vec![
            PathBuf::from("/etc/gw/rules"),
            PathBuf::from("/etc/gw/site"),
            PathBuf::from("/opt/more")
        ]
    );
}

#[test]
fn typo_names_line_and_field() {
    let text = MINIMAL.replace(
        "    upstream: ehr\n",
        "    upstream: ehr\n    max_body_byte: 10\n",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line, 14, "{e}");
    assert!(e.message.contains("max_body_byte"), "{e}");
    assert!(e.to_string().contains("gateway.yaml:14:"), "{e}");
}

#[test]
fn unknown_upstream_names_the_line() {
    let text = MINIMAL.replace("    upstream: ehr\n", "    upstream: ehrr\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(
        (e.line, e.field.as_str()),
        (13, "routes[0].upstream"),
        "{e}"
    );
    assert!(e.message.contains("known: ehr"), "{e}");
}

#[test]
fn route_mode_off_is_rejected_with_advice() {
    let text = MINIMAL.replace("    upstream: ehr\n", "    upstream: ehr\n    mode: off\n");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("rule_overrides"), "{e}");
}

#[test]
fn bad_values_are_located() {
    let text = MINIMAL.replace("127.0.0.1:8443", "localhost:eighty");
    assert_eq!(parse(&text).unwrap_err().field, "listen.address");
    let text = MINIMAL.replace("path_prefix: /fhir/", "path_prefix: fhir");
    assert_eq!(parse(&text).unwrap_err().field, "routes[0].path_prefix");
    let text = MINIMAL.replace("name: fhir", "name: \"fhir route\"");
    assert_eq!(parse(&text).unwrap_err().field, "routes[0].name");
}

const AUDIT: &str = "audit:\n  dir: /var/log/phi-gateway/audit\n  signing_key_file: /etc/gw/keys/audit-signing.key\n  fingerprint_key_file: /etc/gw/keys/audit-fingerprint.key\n";

#[test]
fn fingerprint_key_defaults_to_the_audit_key_and_can_be_overridden() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.fingerprint_key_file(),
        None,
        "no audit, no override: no key"
    );
    let with_audit = format!("{MINIMAL}{AUDIT}");
    let c = parse(&with_audit).unwrap();
    assert_eq!(
        c.fingerprint_key_file(),
        Some(Path::new("/etc/gw/keys/audit-fingerprint.key"))
    );
    let text = with_audit.replace(
        "  dir: rules\n",
        "  dir: rules\n  fingerprint_key_file: keys/rules-fingerprint.key\n",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.fingerprint_key_file(),
        Some(Path::new("/etc/gw/keys/rules-fingerprint.key")),
        "relative to the config file, and it wins over the audit key"
    );
}

#[test]
fn audit_section_defaults_and_route_choices() {
    let c = parse(MINIMAL).unwrap();
    assert!(c.audit.is_none(), "no section: no audit trail");
    assert!(c.routes[0].audit.fail_closed);
    assert_eq!(c.routes[0].audit.resource_id, ResourceIdMode::Fingerprint);
    let text = format!(
        "{MINIMAL}    audit:\n      resource_id: clear\n      fail_closed: false\n{AUDIT}  fsync: batched\n  fsync_interval_ms: 20\n  user_id:\n    source: header\n    header: X-Authenticated-User\n"
    );
    let c = parse(&text).unwrap();
    let a = c.audit.unwrap();
    assert_eq!(
        a.file.fsync,
        crate::config::FsyncPolicy::Batched(Duration::from_millis(20))
    );
    assert_eq!(
        a.user_id,
        crate::config::UserIdSource::Header("x-authenticated-user".into())
    );
    assert_eq!(c.routes[0].audit.resource_id, ResourceIdMode::Clear);
    assert!(!c.routes[0].audit.fail_closed);
}

#[test]
fn audit_errors_name_line_and_field() {
    let text = format!("{MINIMAL}{AUDIT}  user_id:\n    source: client_cert\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field, "audit.user_id.source", "{e}");
    assert_eq!(e.line, GatewayFilesLine::of(&text, "client_cert"), "{e}");
    let text = format!("{MINIMAL}{AUDIT}  queue_capacity: 0\n");
    assert_eq!(parse(&text).unwrap_err().field, "audit.queue_capacity");
    let text = format!("{MINIMAL}{AUDIT}  fsync: sometimes\n");
    let e = parse(&text).unwrap_err();
    assert!(e.to_string().contains("fsync"), "{e}");
    let text = MINIMAL.to_string()
        + &AUDIT.replace(
            "/etc/gw/keys/audit-signing.key",
            "/var/log/phi-gateway/audit/k.key",
        );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field, "audit.signing_key_file", "{e}");
    assert!(e.message.contains("inside the audit directory"), "{e}");
}

struct GatewayFilesLine;
impl GatewayFilesLine {
    fn of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }
}

#[test]
fn documented_example_uses_only_known_keys() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gateway.yaml");
    let raw: RawConfig = crate::engine::source::load(&file).unwrap();
    let a = raw
        .audit
        .expect("deploy/gateway.yaml documents the audit section");
    assert!(a.enabled);
    assert!(raw.defaults.audit.is_some());
}

#[test]
fn shadowed_route_is_an_error() {
    let text =
        format!("{MINIMAL}  - name: patients\n    path_prefix: /fhir/Patient\n    upstream: ehr\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field, "routes[1].name", "{e}");
    assert!(e.message.contains("never match"), "{e}");
}

#[test]
fn route_matching_honours_host_and_prefix_in_order() {
    let text = format!(
        "{MINIMAL}  - name: admin-api\n    host: Admin.Example.org\n    upstream: ehr\n  - name: rest\n    upstream: ehr\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.route_for(Some("x:8443"), "/fhir/Patient").unwrap().1.name,
        "fhir"
    );
    assert_eq!(
        c.route_for(Some("admin.example.org:8443"), "/x")
            .unwrap()
            .1
            .name,
        "admin-api"
    );
    assert_eq!(c.route_for(Some("other"), "/x").unwrap().1.name, "rest");
    assert_eq!(strip_port("[::1]:8443"), "::1");
}

#[test]
fn encoded_or_dotted_paths_route_like_their_normal_form() {
    let text = MINIMAL.replace(
        "  - name: fhir\n    path_prefix: /fhir/\n    upstream: ehr\n",
        "  - name: patients\n    path_prefix: /public/patients\n    upstream: ehr\n    mode: enforce\n  - name: public\n    path_prefix: /public/\n    upstream: ehr\n    mode: monitor\n",
    );
    let c = parse(&text).unwrap();
    for p in [
        "/public/patients/1",
        "/public/%70atients/1",
        "/public/./patients/1",
        "/public//patients/1",
        "/public/x/../patients/1",
        "/public/%2E/patients/1",
        "/public\\patients/1",
    ] {
        assert_eq!(c.route_for(None, p).unwrap().1.name, "patients", "{p}");
    }
    assert_eq!(c.route_for(None, "/public/other").unwrap().1.name, "public");
    assert_eq!(routing_path("/fhir/"), "/fhir/");
    assert_eq!(routing_path("/a/%2e%2e/b/"), "/b/");
    assert_eq!(routing_path("/.."), "/");
}

const WITH_ACCESS: &str = "\
listen:
  address: 127.0.0.1:8443
  cert_file: tls/server.pem
  key_file: tls/server.key
rules:
  dir: rules
access:
  issuers:
    - name: idp
      issuer: https://idp.example/realms/ehr
      audiences: [ehr]
      algorithms: [ES256, RS256]
      jwks_url: https://idp.example/certs
  claims_to_headers:
    X-User-Id: sub
upstreams:
  - name: ehr
    address: 127.0.0.1:8080
routes:
  - name: fhir
    path_prefix: /fhir/
    upstream: ehr
    access:
      require: token
  - name: open
    path_prefix: /
    upstream: ehr
";

#[test]
fn access_section_gets_short_lived_defaults_and_routes_default_to_off() {
    let c = parse(WITH_ACCESS).unwrap();
    let i = &c.access.issuers[0];
    assert_eq!(i.algorithms, [Algorithm::Es256, Algorithm::Rs256]);
    assert_eq!(i.max_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(i.clock_skew, Duration::from_secs(60));
    assert_eq!(i.user_claim, UserClaim::Sub);
    assert_eq!(
        c.access.claims_to_headers,
        [("x-user-id".to_string(), "sub".to_string())]
    );
    assert_eq!(c.access.token_cache_entries, 10_000);
    assert_eq!(c.access.response_hold_bytes, 4 * 1024 * 1024);
    assert_eq!(c.routes[0].access.require, Require::Token);
    assert_eq!(c.routes[0].access.mode, Mode::Enforce);
    assert_eq!(c.routes[1].access.require, Require::Off);
    // Without an access section every route is off, as before.
    let c = parse(MINIMAL).unwrap();
    assert!(c.access.issuers.is_empty());
    assert_eq!(c.access.response_hold_bytes, 4 * 1024 * 1024);
    assert_eq!(c.routes[0].access.require, Require::Off);
}

#[test]
fn response_hold_bytes_is_bounded_and_located() {
    let with = |v: &str| {
        WITH_ACCESS.replacen(
            "access:\n",
            &format!("access:\n  response_hold_bytes: {v}\n"),
            1,
        )
    };
    assert!(WITH_ACCESS.contains("access:\n"));
    assert_eq!(
        parse(&with("65536")).unwrap().access.response_hold_bytes,
        65536
    );
    for bad in ["10", "1000000000"] {
        let e = parse(&with(bad)).unwrap_err().to_string();
        assert!(e.contains("access.response_hold_bytes"), "{e}");
    }
}

#[test]
fn access_errors_name_line_and_field() {
    let cases = [
        (
            "algorithms: [ES256, RS256]",
            "algorithms: [ES256, none]",
            "access.issuers[0].algorithms[1]",
            "never",
        ),
        (
            "algorithms: [ES256, RS256]",
            "algorithms: [HS256]",
            "access.issuers[0].algorithms[0]",
            "shared-secret",
        ),
        (
            "algorithms: [ES256, RS256]",
            "algorithms: [RS512]",
            "access.issuers[0].algorithms[0]",
            "unsupported",
        ),
        (
            "jwks_url: https://idp.example/certs",
            "jwks_url: http://idp.example/certs",
            "access.issuers[0].jwks_url",
            "https",
        ),
        (
            "audiences: [ehr]",
            "audiences: []",
            "access.issuers[0].audiences",
            "audience",
        ),
        (
            "X-User-Id: sub",
            "Authorization: sub",
            "access.claims_to_headers.Authorization",
            "owns",
        ),
        (
            "      require: token",
            "      require: always",
            "routes[0].access.require",
            "unknown value",
        ),
        (
            "      require: token",
            "      mode: off",
            "routes[0].access.mode",
            "require: off",
        ),
    ];
    for (from, to, field, words) in cases {
        let text = WITH_ACCESS.replace(from, to);
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field, field, "{to}: {e}");
        assert!(e.message.contains(words), "{to}: {e}");
        let line = text.lines().position(|l| l.contains(to.trim())).unwrap() + 1;
        assert_eq!(e.line, line, "{to}: {e}");
    }
    // A route cannot require tokens nobody can issue.
    let text = MINIMAL.replace(
        "upstream: ehr\n",
        "upstream: ehr\n    access: {require: token}\n",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field, "routes[0].access.require", "{e}");
    assert!(e.message.contains("access.issuers"), "{e}");
}

#[test]
fn the_policy_applies_to_routes_that_check_tokens_unless_they_opt_out() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/policy");
    let with_policy =
        WITH_ACCESS.replacen("access:\n", &format!("access:\n  policy: [\"{dir}\"]\n"), 1);
    let c = parse(&with_policy).unwrap();
    assert_eq!(c.policy_dirs, [PathBuf::from(dir)]);
    assert!(c.routes[0].access.policy, "require: token + a policy");
    assert_eq!(c.routes[0].access.fhir_base, "/fhir");
    assert!(
        !c.routes[1].access.policy,
        "require: off never has a subject"
    );
    // Without a policy nothing is decided by one, as before.
    let c = parse(WITH_ACCESS).unwrap();
    assert!(c.policy_dirs.is_empty() && !c.routes[0].access.policy);
    // A route opts out, or names its FHIR base.
    let text = with_policy.replacen(
        "      require: token\n",
        "      require: token\n      policy: false\n",
        1,
    );
    assert!(!parse(&text).unwrap().routes[0].access.policy);
    let text = with_policy.replacen(
        "      require: token\n",
        "      require: token\n      fhir_base: /fhir/R4/\n",
        1,
    );
    assert_eq!(parse(&text).unwrap().routes[0].access.fhir_base, "/fhir/R4");
}

#[test]
fn policy_errors_name_line_and_field() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/policy");
    let with_policy =
        WITH_ACCESS.replacen("access:\n", &format!("access:\n  policy: [\"{dir}\"]\n"), 1);
    let cases = [
        (
            WITH_ACCESS.replacen("access:\n", "access:\n  policy: []\n", 1),
            "policy: []",
            "access.policy",
            "no directory",
        ),
        (
            WITH_ACCESS.replacen("access:\n", "access:\n  policy: [/p, /p]\n", 1),
            "policy: [/p, /p]",
            "access.policy[1]",
            "listed twice",
        ),
        (
            WITH_ACCESS.replacen(
                "      require: token\n",
                "      require: token\n      policy: true\n",
                1,
            ),
            "policy: true",
            "routes[0].access.policy",
            "needs a policy",
        ),
        (
            with_policy.replacen(
                "      require: token\n",
                "      require: \"off\"\n      policy: true\n",
                1,
            ),
            "policy: true",
            "routes[0].access.policy",
            "require: token",
        ),
        (
            with_policy.replacen(
                "      require: token\n",
                "      require: token\n      fhir_base: fhir%2FR4\n",
                1,
            ),
            "fhir_base: fhir%2FR4",
            "routes[0].access.fhir_base",
            "absolute path",
        ),
    ];
    for (text, needle, field, words) in cases {
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field, field, "{needle}: {e}");
        assert!(e.message.contains(words), "{needle}: {e}");
        let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        assert_eq!(e.line, line, "{needle}: {e}");
    }
}

#[test]
fn state_defaults_to_bounded_memory_and_sessions_to_fifteen_minutes_idle() {
    let c = parse(WITH_ACCESS).unwrap();
    assert_eq!(c.state.backend, StateBackend::Memory);
    assert_eq!(c.state.timeout, Duration::from_millis(25));
    assert_eq!(c.state.max_entries, 100_000);
    assert_eq!(c.state.key_file, None, "memory without a key: a random one");
    let s = c.access.sessions;
    assert_eq!(s.idle_timeout, Some(Duration::from_secs(900)));
    assert_eq!(s.max_session, Some(Duration::from_secs(43_200)));
    assert!(s.retain() >= Duration::from_secs(43_200));

    let text = format!(
        "{WITH_ACCESS}{AUDIT}state:\n  backend: redis\n  url: redis://10.0.0.5:6379/2\n  timeout_ms: 10\n  max_entries: 500\n"
    )
    .replace(
        "    X-User-Id: sub\n",
        "    X-User-Id: sub\n  sessions: {idle_timeout_seconds: 0, max_session_seconds: 0}\n",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.state.backend,
        StateBackend::Redis {
            url: "redis://10.0.0.5:6379/2".into(),
            password_file: None,
            ca_file: None
        }
    );
    assert_eq!(c.state.timeout, Duration::from_millis(10));
    assert_eq!(c.state.max_entries, 500);
    assert_eq!(
        c.state.key_file.as_deref(),
        Some(Path::new("/etc/gw/keys/audit-fingerprint.key")),
        "the deployment's fingerprint key by default"
    );
    assert!(!c.access.sessions.enabled());
}

#[test]
fn state_and_session_errors_name_line_and_field() {
    let redis = "state:\n  backend: redis\n  url: redis://127.0.0.1:6379\n";
    // (replace, with, field, words in the message, text on the line the error names)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "  backend: redis",
            "  backend: mysql",
            "state.backend",
            "unknown backend",
            "backend: mysql",
        ),
        (
            "  url: redis://127.0.0.1:6379\n",
            "",
            "state.url",
            "needs a `url`",
            "backend: redis",
        ),
        (
            "  url: redis://127.0.0.1:6379",
            "  url: http://127.0.0.1:6379",
            "state.url",
            "rediss://",
            "url: http://127.0.0.1:6379",
        ),
        (
            "  url: redis://127.0.0.1:6379",
            "  url: redis://admin:hunter2@127.0.0.1:6379",
            "state.url",
            "password_file",
            "url: redis://admin:hunter2@127.0.0.1:6379",
        ),
        (
            "  backend: redis",
            "  backend: memory",
            "state.url",
            "only applies",
            "url: redis",
        ),
        (
            "  url: redis://127.0.0.1:6379",
            "  url: redis://127.0.0.1:6379\n  timeout_ms: 5000",
            "state.timeout_ms",
            "between 1 and 1000",
            "timeout_ms: 5000",
        ),
        (
            "  url: redis://127.0.0.1:6379",
            "  url: redis://127.0.0.1:6379\n  ca_file: /etc/gw/ca.pem",
            "state.ca_file",
            "rediss://",
            "ca_file: /etc/gw/ca.pem",
        ),
        (
            "  url: redis://127.0.0.1:6379",
            "  url: redis://127.0.0.1:6379\n  key_file: /nonexistent/state.key",
            "state.key_file",
            "not a readable file",
            "key_file: /nonexistent/state.key",
        ),
    ];
    for (from, to, field, words, at) in cases {
        let text = format!("{WITH_ACCESS}{AUDIT}{redis}").replace(from, to);
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field, *field, "{to}: {e}");
        assert!(e.message.contains(words), "{to}: {e}");
        let line = text.lines().position(|l| l.contains(at)).unwrap() + 1;
        assert_eq!(e.line, line, "{to}: {e}");
    }
    // Redis with no secret to fingerprint keys with: every gateway must derive the same keys.
    let e = parse(&format!("{WITH_ACCESS}{redis}")).unwrap_err();
    assert_eq!(e.field, "state.key_file", "{e}");
    assert!(e.message.contains("same on every gateway"), "{e}");
    // An absolute limit below the idle limit is a mistake, not a choice.
    let text = WITH_ACCESS.replace(
        "    X-User-Id: sub\n",
        "    X-User-Id: sub\n  sessions:\n    idle_timeout_seconds: 900\n    max_session_seconds: 60\n",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field, "access.sessions.max_session_seconds", "{e}");
    assert_eq!(
        e.line,
        text.lines()
            .position(|l| l.contains("max_session_seconds"))
            .unwrap()
            + 1
    );
    let e = parse(&format!(
        "{WITH_ACCESS}state:\n  backend: memory\n  shards: 4\n"
    ))
    .unwrap_err();
    assert!(e.message.contains("unknown field"), "{e}");
}

#[test]
fn introspection_issuers_are_validated_with_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s\n").unwrap();
    let intro = format!(
        "    - name: opaque\n      issuer: https://as.example\n      audiences: [ehr]\n      introspection:\n        url: https://as.example/introspect\n        client_id: gw\n        client_secret_file: \"{}\"\n",
        secret.display()
    );
    let with = |extra: &str| {
        WITH_ACCESS.replacen(
            "  claims_to_headers:\n",
            &format!("{intro}{extra}  claims_to_headers:\n"),
            1,
        )
    };
    let c = parse(&with("")).unwrap();
    match &c.access.issuers[1].jwks {
        JwksSource::Introspection(ix) => {
            assert_eq!(ix.url, "https://as.example/introspect");
            assert_eq!(ix.client_id, "gw");
            assert_eq!(ix.client_secret_file, secret);
            assert!(!format!("{ix:?}").contains("s\n"));
        }
        other => panic!("not an introspection issuer: {other:?}"),
    }
    // (text, the text on the line the error names, field, words)
    let cases = [
        (
            with("").replace(
                "      introspection:\n",
                "      algorithms: [RS256]\n      introspection:\n",
            ),
            "algorithms: [RS256]",
            "access.issuers[1].algorithms",
            "opaque tokens",
        ),
        (
            with("").replace(
                "      introspection:\n",
                "      jwks_url: https://as.example/certs\n      introspection:\n",
            ),
            "jwks_url: https://as.example/certs",
            "access.issuers[1].jwks_url",
            "no key set",
        ),
        (
            with("").replace(
                "url: https://as.example/introspect",
                "url: http://as.example/introspect",
            ),
            "url: http://as.example/introspect",
            "access.issuers[1].introspection.url",
            "https://",
        ),
        (
            with("").replace("client_id: gw", "client_id: \"g:w\""),
            "client_id: \"g:w\"",
            "access.issuers[1].introspection.client_id",
            "without `:`",
        ),
        (
            with("").replace(&secret.display().to_string(), "/nonexistent/secret"),
            "client_secret_file: \"/nonexistent/secret\"",
            "access.issuers[1].introspection.client_secret_file",
            "not a readable file",
        ),
        (
            with(
                &intro
                    .replace("name: opaque", "name: opaque2")
                    .replace("issuer: https://as.example", "issuer: https://as2.example"),
            ),
            "name: opaque2",
            "access.issuers[2].introspection",
            "only one issuer",
        ),
    ];
    for (text, at, field, words) in cases {
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field, field, "{at}: {e}");
        assert!(e.message.contains(words), "{at}: {e}");
        let line = text.lines().position(|l| l.contains(at)).unwrap() + 1;
        if field.ends_with("].introspection") {
            // The section's span starts at its first key.
            assert!(e.line > line, "{at}: {e}");
        } else {
            assert_eq!(e.line, line, "{at}: {e}");
        }
    }
    // A JWKS issuer still needs its algorithms pinned.
    let e = parse(&WITH_ACCESS.replace("      algorithms: [ES256, RS256]\n", "")).unwrap_err();
    assert_eq!(e.field, "access.issuers[0].algorithms", "{e}");
}

#[test]
fn break_glass_is_off_without_its_section_and_validated_with_it() {
    let c = parse(WITH_ACCESS).unwrap();
    assert!(!c.access.break_glass.enabled, "absent: off");
    let with = |lines: &str| {
        WITH_ACCESS.replace(
            "    X-User-Id: sub\n",
            &format!("    X-User-Id: sub\n  break_glass:\n{lines}"),
        )
    };
    assert!(
        parse(&with("")).unwrap().access.break_glass.enabled,
        "a bare `break_glass:` is on with the defaults"
    );
    let c = parse(&with("    min_justification_chars: 30\n")).unwrap();
    let b = &c.access.break_glass;
    assert!(b.enabled, "present: on unless `enabled: false`");
    assert_eq!(b.header, "x-break-glass-justification");
    assert_eq!(b.min_justification_chars, 30);
    assert_eq!(
        b.duration,
        Duration::from_secs(3600),
        "60 minutes by default"
    );
    let c = parse(&with(
        "    enabled: false\n    header: X-BTG-Reason\n    duration_seconds: 5\n",
    ))
    .unwrap();
    let b = &c.access.break_glass;
    assert!(!b.enabled);
    assert_eq!(b.header, "x-btg-reason");
    assert_eq!(b.duration, Duration::from_secs(5));
    assert_eq!(
        parse(&with("    duration_minutes: 15\n"))
            .unwrap()
            .access
            .break_glass
            .duration,
        Duration::from_secs(900)
    );
    // (lines, field, words in the message, text on the line the error names)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "    min_justification_chars: 0\n",
            "access.break_glass.min_justification_chars",
            "between 1 and 256",
            "min_justification_chars: 0",
        ),
        (
            "    duration_minutes: 5000\n",
            "access.break_glass.duration_minutes",
            "between 1 and 1440",
            "duration_minutes: 5000",
        ),
        (
            "    duration_minutes: 5\n    duration_seconds: 5\n",
            "access.break_glass.duration_seconds",
            "not both",
            "duration_seconds: 5",
        ),
        (
            "    header: \"bad header\"\n",
            "access.break_glass.header",
            "not a valid HTTP header name",
            "header: \"bad header\"",
        ),
        (
            "    header: authorization\n",
            "access.break_glass.header",
            "owns",
            "header: authorization",
        ),
    ];
    for (lines, field, words, at) in cases {
        let text = with(lines);
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field, *field, "{lines}: {e}");
        assert!(e.message.contains(words), "{lines}: {e}");
        let line = text.lines().position(|l| l.contains(at)).unwrap() + 1;
        assert_eq!(e.line, line, "{lines}: {e}");
    }
    let e = parse(&with("    justification: required\n")).unwrap_err();
    assert!(
        e.message.contains("justification"),
        "unknown fields refused: {e}"
    );
}

/// `defence.anomaly`: off without the section, the documented defaults, integers for the
/// float knobs, and every error naming its line and field.
#[test]
fn defence_anomaly_defaults_bounds_and_located_errors() {
    assert!(parse(MINIMAL).unwrap().anomaly.is_none());
    let with = |body: &str| format!("{MINIMAL}defence:\n  anomaly:\n{body}");
    let a = parse(&with("    mode: enforce\n"))
        .unwrap()
        .anomaly
        .unwrap();
    assert_eq!(a.mode, AnomalyMode::Enforce);
    assert_eq!(a.window, Duration::from_secs(3600));
    assert_eq!((a.sub_windows, a.k, a.z, a.min_history), (12, 3.0, 4.0, 24));
    assert_eq!(a.sub_window(), Duration::from_secs(300));
    assert!(!a.peer_group, "the peer group is opt-in");
    assert_eq!(
        a.suspension.when,
        vec![SuspendWhen::SecondTrigger, SuspendWhen::HighTier]
    );
    assert_eq!(a.signals.len(), 4);
    assert!(a
        .signals
        .iter()
        .all(|s| s.enabled && s.cold_start_ceiling >= s.floor));
    let a = parse(&with(
        "    window_seconds: 60\n    sub_windows: 6\n    baseline:\n      k: 2\n      z: 3.5\n    signals:\n      blocked:\n        enabled: false\n    fail_closed_routes: [fhir]\n    suspension:\n      when: [first_trigger]\n",
    ))
    .unwrap()
    .anomaly
    .unwrap();
    assert_eq!(
        (a.k, a.z, a.fail_closed_routes.clone()),
        (2.0, 3.5, vec![0])
    );
    assert!(!a.signals[2].enabled);
    assert!(parse(&with("    mode: off\n")).unwrap().anomaly.is_none());
    for (body, field, says) in [
        ("    mode: block\n", "defence.anomaly.mode", "unknown mode"),
        (
            "    window_seconds: 60\n    sub_windows: 7\n",
            "defence.anomaly.sub_windows",
            "divide",
        ),
        (
            "    baseline:\n      k: 0.5\n",
            "defence.anomaly.baseline.k",
            "between 1 and 1000",
        ),
        (
            "    fail_closed_routes: [nope]\n",
            "defence.anomaly.fail_closed_routes",
            "no route named `nope`",
        ),
        (
            "    suspension:\n      when: [never]\n",
            "defence.anomaly.suspension.when",
            "unknown condition",
        ),
        (
            "    signals:\n      patient_requests:\n        floor: 10\n        cold_start_ceiling: 5\n",
            "defence.anomaly.signals.patient_requests.cold_start_ceiling",
            "between 10 and",
        ),
    ] {
        let text = with(body);
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field, field, "{body}: {e}");
        assert!(e.message.contains(says), "{e}");
        let last = body.lines().last().unwrap().trim();
        let needle = last.split(':').next().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let want = lines.iter().rposition(|l| l.contains(needle)).unwrap() + 1;
        assert_eq!(e.line, want, "{body}: {e}");
    }
    let e = parse(&with("    signals:\n      bytes_returned: {}\n")).unwrap_err();
    assert!(e.message.contains("bytes_returned"), "{e}");
    // admin.token_file must be a readable file.
    let text = format!(
        "{MINIMAL}admin:\n  address: 127.0.0.1:9901\n  token_file: /nonexistent/admin.token\n"
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field, "admin.token_file", "{e}");
}

#[test]
fn response_guard_defaults_and_errors() {
    let c = parse(MINIMAL).unwrap();
    let g = &c.routes[0].response_guard;
    assert_eq!(g.mode, Mode::Enforce, "on for error statuses by default");
    assert_eq!(g.statuses, vec![(400, 599)]);
    assert!(!g.include_2xx && !g.fhir);
    assert_eq!(g.max_bytes, DEFAULT_GUARD_MAX_BYTES);
    assert_eq!(
        c.limits.response_hold_budget_bytes,
        DEFAULT_RESPONSE_HOLD_BUDGET_BYTES
    );
    let with = |guard: &str| parse(&format!("{MINIMAL}    response_guard:\n{guard}"));
    let g = with("      mode: monitor\n      statuses: [500, \"502-504\", \"4xx\"]\n      include_2xx: true\n      answer: fhir\n")
        .unwrap()
        .routes[0]
        .response_guard
        .clone();
    assert_eq!(g.statuses, vec![(500, 500), (502, 504), (400, 499)]);
    assert!(g.include_2xx && g.fhir && g.mode == Mode::Monitor);
    // Each mistake names the line and the field.
    for (guard, field, line) in [
        (
            "      include_2xx: true\n",
            "routes[0].response_guard.include_2xx",
            15,
        ),
        (
            "      statuses: [\">=200\"]\n",
            "routes[0].response_guard.statuses[0]",
            15,
        ),
        (
            "      max_bytes: 10\n",
            "routes[0].response_guard.max_bytes",
            15,
        ),
    ] {
        let e = with(guard).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.line, line, "{e}");
    }
    assert!(
        with("      mood: enforce\n").is_err(),
        "unknown keys are refused"
    );
    // A route whose policy or fhir_base makes it a FHIR route answers with an OperationOutcome.
    let fhir = parse(&format!("{MINIMAL}    access:\n      fhir_base: /fhir\n")).unwrap();
    assert!(fhir.routes[0].response_guard.fhir);
}
