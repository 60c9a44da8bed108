//! Process lifecycle: the `demo` end to end (banner commands with `dev-token` tokens, SIGINT,
//! restart with the same data directory), `dev-token` errors, and readiness.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// A running `phi-gateway demo` and where its output goes.
struct Demo {
    child: std::process::Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
    listen: u16,
}

impl Demo {
    /// Starts the demo on fresh ports with `data` as its data directory, from `cwd` (which has
    /// no ./rules or ./deploy, so the demo uses its built-in pack and policy), and waits until
    /// `/readyz` answers 200, the banner lists its eight curl commands and the proxy port
    /// accepts connections.
    fn start(cwd: &std::path::Path, data: &std::path::Path, run: &str) -> Demo {
        let (listen, admin) = (free_port(), free_port());
        let stdout = cwd.join(format!("stdout-{run}.log"));
        let stderr = cwd.join(format!("stderr-{run}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
            .args(["demo", "--listen", &format!("127.0.0.1:{listen}")])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .arg("--data-dir")
            .arg(data)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn demo");
        let mut demo = Demo {
            child,
            stdout,
            stderr,
            listen,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = demo.child.try_wait() {
                panic!("demo exited early with {status}\n{}", demo.logs());
            }
            if demo.banner_lines("curl ").len() >= 8
                && matches!(http_get(admin, "/readyz"), Some((200, _)))
            {
                break;
            }
            if Instant::now() > deadline {
                let _ = stop_child(&mut demo.child, Duration::from_secs(3));
                panic!("demo not ready within 15 s\n{}", demo.logs());
            }
            thread::sleep(Duration::from_millis(50));
        }
        // The proxy port may open a moment after the admin one.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err()
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(25));
        }
        demo
    }

    fn logs(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// The banner's lines that start with `prefix` (indentation removed).
    fn banner_lines(&self, prefix: &str) -> Vec<String> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    /// The banner's token assignments (`CLINICIAN=$(… dev-token …)`), as a shell prelude.
    fn token_prelude(&self) -> String {
        let lines: Vec<String> = std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| {
                l.split_once("=$(").is_some_and(|(name, _)| {
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                })
            })
            .map(|l| format!("{l} || exit 97"))
            .collect();
        lines.join("\n")
    }
}

/// Runs `script` in bash with curl's output made parseable: the body, then the status on the
/// last line. Returns (status, body).
fn run_curl(cwd: &std::path::Path, prelude: &str, curl: &str) -> (String, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e\n{prelude}\n{curl} -sS -m 10 --noproxy '*' -w '\\n%{{http_code}}'"
        ))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run banner command");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().to_string(),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn reason_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The demo end to end: its banner's commands (tokens from `dev-token`, the sample EHR's two
/// patients) give the answers the banner promises, record hopping is refused by URL and by the
/// response check, the audit trail verifies, SIGINT stops it, and a second run with the same
/// data directory keeps the issuer key, so a token printed before the restart still works.
#[test]
fn demo_banner_commands_work_and_sigint_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut demo = Demo::start(tmp.path(), &data, "1");
    let commands = demo.banner_lines("curl ");
    let prelude = demo.token_prelude();
    assert_eq!(prelude.lines().count(), 3, "{}", demo.logs());
    assert_eq!(commands.len(), 9, "{commands:?}");

    let results: Vec<(String, String)> = commands
        .iter()
        .map(|c| run_curl(tmp.path(), &prelude, c))
        .collect();
    // The patient-app token reads its own patient's observation by id: held back, checked,
    // released.
    let own = run_curl(
        tmp.path(),
        &prelude,
        &format!(
            "curl --cacert {} https://localhost:{}/fhir/Observation/obs-1 -H '{AUDIT}: own' \
             -H \"authorization: Bearer $PATIENT_APP\"",
            data.join("ca.pem").display(),
            demo.listen
        ),
    );
    let old_token = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}\necho \"$CLINICIAN\""))
        .output()
        .expect("run dev-token");
    let old_token = String::from_utf8_lossy(&old_token.stdout)
        .trim()
        .to_string();

    let stopped = stop_child(&mut demo.child, Duration::from_secs(3));
    let logs = demo.logs();
    let got: Vec<(&str, String)> = results
        .iter()
        .map(|(code, body)| (code.as_str(), reason_of(body)))
        .collect();
    assert_eq!(
        got,
        [
            ("200", String::new()),
            ("200", String::new()),
            ("403", "insufficient_scope".to_string()),
            ("403", "insufficient_scope".to_string()),
            ("401", "token_missing".to_string()),
            ("403", "missing_audit_header".to_string()),
            ("403", "phi_detected".to_string()),
            ("200", String::new()),
            ("500", String::new()),
        ],
        "banner commands {commands:?}\nresults {results:#?}\n{logs}"
    );
    assert!(results[0].1.contains("\"obs-1\""), "{results:#?}");
    let bundle: serde_json::Value = serde_json::from_str(&results[1].1).unwrap();
    assert_eq!(bundle["type"], "searchset", "{bundle}");
    assert_eq!(bundle["entry"][0]["resource"]["id"], "obs-1", "{bundle}");
    assert_eq!(bundle["total"], 1, "{bundle}");
    for refused in &results[2..4] {
        assert!(!refused.1.contains("pat-2"), "{refused:?}");
    }
    assert!(
        results[7].1.contains("\"pat-2\""),
        "break-glass opens pat-2: {results:#?}"
    );
    // The EHR's stack trace is withheld: the gateway's OperationOutcome, nothing of the trace.
    let withheld = &results[8].1;
    assert!(
        withheld.contains("OperationOutcome") && withheld.contains("response_leak_blocked"),
        "{withheld}"
    );
    for leak in [
        "IllegalStateException",
        "ChartService",
        "536-22-1234",
        "Tomcat",
    ] {
        assert!(!withheld.contains(leak), "`{leak}` leaked: {withheld}");
    }
    assert_eq!(own.0, "200", "{own:?}");
    assert!(own.1.contains("\"obs-1\""), "{own:?}");
    assert!(
        stopped.is_some(),
        "demo did not exit within 3 s of SIGINT\n{logs}"
    );

    // The demo's audit trail: a record per request, the users from the tokens, the policy's
    // own reasons; keys apart from the logs; the verify command the banner prints passes.
    let verify_cmd = demo
        .banner_lines("")
        .into_iter()
        .find(|l| l.contains("phi-gateway audit verify --dir"))
        .unwrap_or_else(|| panic!("no verify command in the banner:\n{logs}"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&verify_cmd)
        .output()
        .expect("run the banner's verify command");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("RESULT: VALID"),
        "{verify_cmd}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let records = audit_records(&data.join("audit"));
    // Eight banner commands, the break-glass start record and its request's, the own read.
    assert_eq!(records.len(), 11, "{records:#?}");
    // The withheld stack trace: the leak guard's record names the rules, not the text.
    let leak = records
        .iter()
        .find(|r| r["audit_header"] == "demo-ticket-9")
        .unwrap_or_else(|| panic!("no record of the stack trace request: {records:#?}"));
    assert_eq!(leak["reason"], "response_leak_blocked", "{leak}");
    assert_eq!(leak["response_leak"]["action"], "block", "{leak}");
    let rules = leak["response_leak"]["findings"].to_string();
    assert!(
        rules.contains("java-stack-trace") && rules.contains("us-ssn"),
        "{leak}"
    );
    assert!(!leak.to_string().contains("536-22-1234"), "{leak}");
    assert_eq!(
        records[7]["access"]["break_glass"]["event"], "started",
        "{records:#?}"
    );
    assert_eq!(
        records[8]["access"]["reason"], "break_glass",
        "{records:#?}"
    );
    let review_cmd = demo
        .banner_lines("")
        .into_iter()
        .find(|l| l.contains("phi-gateway audit break-glass --dir"))
        .unwrap_or_else(|| panic!("no break-glass review command in the banner:\n{logs}"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&review_cmd)
        .output()
        .expect("run the banner's break-glass review command");
    let review = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && review.contains("ed-doc-1") && !review.contains("pat-2"),
        "{review_cmd}\n{review}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        records[0]["resource_id"], "Observation/obs-1",
        "{records:#?}"
    );
    assert_eq!(records[0]["user_id"], "dr-demo", "{records:#?}");
    assert_eq!(
        records[2]["access"]["reason"], "patient_mismatch",
        "{records:#?}"
    );
    assert_eq!(
        records[3]["access"]["reason"], "response_outside_compartment",
        "{records:#?}"
    );
    let (code, report) = audit_verify(&data.join("audit"), &data.join("audit-signing.pub"));
    assert_eq!(code, 0, "{report:#}");
    use std::os::unix::fs::PermissionsExt as _;
    for key in [
        "keys/audit-signing.key",
        "keys/audit-fingerprint.key",
        "keys/demo-issuer.key",
    ] {
        let mode = std::fs::metadata(data.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    assert!(!data.join("audit").join("audit-signing.key").exists());
    let issuer_key = std::fs::read(data.join("keys/demo-issuer.key")).unwrap();

    // Second run, same data directory: the issuer key is kept and the old token still works.
    let mut again = Demo::start(tmp.path(), &data, "2");
    let reused = run_curl(
        tmp.path(),
        "",
        &format!(
            "curl --cacert {} https://localhost:{}/fhir/Observation/obs-1 -H '{AUDIT}: again' \
             -H 'authorization: Bearer {old_token}'",
            data.join("ca.pem").display(),
            again.listen
        ),
    );
    let stopped = stop_child(&mut again.child, Duration::from_secs(3));
    assert_eq!(reused.0, "200", "{reused:?}\n{}", again.logs());
    assert!(stopped.is_some(), "{}", again.logs());
    assert_eq!(
        std::fs::read(data.join("keys/demo-issuer.key")).unwrap(),
        issuer_key
    );
}

/// `dev-token` through the binary: its errors and exit codes, and its help naming every flag.
#[test]
fn dev_token_errors_and_help() {
    let dev_token = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
            .arg("dev-token")
            .args(args)
            .output()
            .expect("run dev-token");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();

    let (code, out, err) = dev_token(&["--data-dir", dir, "--sub", "u"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty());
    assert!(err.contains("run `phi-gateway demo --data-dir"), "{err}");

    // A data directory as the demo leaves it, made through the library the demo uses.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    phi_gateway::runtime::demo_issuer::ensure_issuer(tmp.path()).unwrap();
    phi_gateway::runtime::demo::write_demo_config(
        tmp.path(),
        "127.0.0.1:1",
        "127.0.0.1:2",
        "127.0.0.1:3",
        &repo.join("rules"),
        &repo.join("deploy/policy"),
    )
    .unwrap();
    let (code, out, err) = dev_token(&["--data-dir", dir, "--sub", "u", "--ttl", "90s"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim().split('.').count(), 3, "{out}");

    for (args, needle) in [
        (&["--ttl", "2h"][..], "max_lifetime_seconds (3600s)"),
        (&["--ttl", "15x"], "invalid value '15x' for '--ttl"),
        (&["--ttl", "0"], "at least 1s"),
        (&["--claim", "fhirUser=Practitioner/p-1"], "not JSON"),
        (&["--claim", "exp=1"], "set by dev-token itself"),
    ] {
        let mut all = vec!["--data-dir", dir, "--sub", "u"];
        all.extend_from_slice(args);
        let (code, out, err) = dev_token(&all);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }

    let (code, help, _) = dev_token(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--data-dir",
        "--sub",
        "--scope",
        "--patient",
        "--role",
        "--purpose-of-use",
        "--ttl",
        "--sid",
        "--claim",
        "Exit codes",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// `/readyz` must not say "ready" while the TLS listener is not accepting connections. Here
/// the listen port is held by the test, so pingora cannot bind it (it retries for 30 s and
/// then panics the service thread while the process stays up).
#[test]
fn readyz_is_not_200_while_the_listen_port_cannot_be_bound() {
    let up = RecordingUpstream::start();
    let files = GatewayFiles::new(&GatewayOpts::new(up.addr()));
    let holder = std::net::TcpListener::bind(("127.0.0.1", files.port)).expect("hold listen port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .arg("run")
        .arg("--config")
        .arg(&files.config)
        .current_dir(files.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn phi-gateway");
    let started = Instant::now();
    let mut ready_at = None;
    while started.elapsed() < Duration::from_secs(3) {
        if let Ok(Some(_)) = child.try_wait() {
            break; // exiting is an acceptable way to refuse
        }
        if let Some((200, _)) = http_get(files.admin_port, "/readyz") {
            ready_at = Some(started.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    stop_child(&mut child, Duration::from_secs(3));
    drop(holder);
    assert!(
        ready_at.is_none(),
        "/readyz answered 200 after {ready_at:?} although 127.0.0.1:{} (the TLS listener) \
         was held by another socket and never bound",
        files.port
    );
}

/// SIGTERM: the listener closes, the request in flight finishes, and the process exits as
/// soon as it has drained, not after pingora's unconditional grace-period sleep (30 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_without_waiting_out_the_grace() {
    let up = RecordingUpstream::start_slow(Duration::from_millis(1500));
    let mut o = GatewayOpts::new(up.addr());
    o.grace_period_seconds = 30;
    let mut gw = Gateway::start(o);

    let logs = gw.logs();
    let start_line = logs
        .lines()
        .find(|l| l.contains("phi-gateway starting"))
        .unwrap_or_else(|| panic!("no start-up line:\n{logs}"));
    for needle in [
        format!("127.0.0.1:{}", gw.port()),
        format!("127.0.0.1:{}", gw.files.admin_port),
        "config_version".to_string(),
        "\"rules\":".to_string(),
    ] {
        assert!(
            start_line.contains(&needle),
            "{needle} missing: {start_line}"
        );
    }

    let client = gw.client(false);
    let request = client
        .get(gw.url("/fhir/Patient/example"))
        .header(AUDIT, "drain")
        .send();
    let in_flight = tokio::spawn(request);
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let signalled = Instant::now();
    gw.signal(libc::SIGTERM);
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request cut by SIGTERM");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("recording"));

    let status = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(15)))
        .unwrap_or_else(|| panic!("still running 15 s after SIGTERM (grace is 30 s)"));
    assert!(status.success(), "exit status {status}\n{}", gw.logs());
    assert!(signalled.elapsed() < Duration::from_secs(15));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", gw.port())).is_err(),
        "listener still open after exit"
    );
    assert!(
        gw.logs().contains("no requests in flight; exiting"),
        "{}",
        gw.logs()
    );

    // The drained exit flushed the audit trail: the request has its record, nothing is left
    // unsigned, and the last checkpoint is the shutdown one.
    let records = gw.audit_records();
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "allow" && r["status"] == 200),
        "{records:#?}"
    );
    let (code, report) = audit_verify(&gw.audit_dir(), &gw.audit_pubkey());
    assert_eq!(code, 0, "{report:#}");
    assert!(
        report["issues"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    let last = last_checkpoint(&gw.audit_dir());
    assert!(last.contains("\"reason\":\"shutdown\""), "{last}");
}

/// With `shutdown_delay_seconds`, SIGTERM flips `/readyz` to `draining` at once while the
/// gateway keeps serving (so a load balancer can take it out first), then it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_shutdown_delay_reports_draining_while_still_serving() {
    let up = RecordingUpstream::start();
    let mut o = GatewayOpts::new(up.addr());
    o.grace_period_seconds = 10;
    o.shutdown_delay_seconds = 3;
    let mut gw = Gateway::start(o);
    assert!(matches!(
        http_get(gw.files.admin_port, "/readyz"),
        Some((200, _))
    ));

    gw.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match http_get(gw.files.admin_port, "/readyz") {
            Some((503, body)) => {
                assert!(body.contains("draining"), "{body}");
                break;
            }
            other => assert!(Instant::now() < deadline, "not draining: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Liveness never depends on draining or on the upstream.
    assert!(matches!(
        http_get(gw.files.admin_port, "/livez"),
        Some((200, _))
    ));
    let resp = gw
        .client(false)
        .get(gw.url("/fhir/metadata"))
        .header(AUDIT, "during-delay")
        .send()
        .await
        .expect("served during the shutdown delay");
    assert_eq!(resp.status(), 200);

    let status = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)))
        .unwrap_or_else(|| panic!("did not exit after the delay\n{}", gw.logs()));
    assert!(status.success(), "exit status {status}");
}

/// SIGQUIT + `run --upgrade`: the new process takes over the listening sockets and the old
/// one drains and exits; clients opening new connections throughout never see a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_hands_the_listeners_to_an_upgraded_process() {
    let up = RecordingUpstream::start();
    // One hash chain cannot have two writers while the processes overlap; `--upgrade` with an
    // audit trail is refused (tested below), so this gateway runs without one.
    let mut o = GatewayOpts::new(up.addr());
    o.audit = false;
    let mut old = Gateway::start(o);
    let dir = old.files.dir.path().to_path_buf();
    let mut new = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["run", "--upgrade", "--config"])
        .arg(&old.files.config)
        .current_dir(&dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("new-stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("new-stderr.log")).unwrap())
        .spawn()
        .expect("spawn upgraded gateway");
    let new_logs = || {
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
        format!("{}{}", read("new-stderr.log"), read("new-stdout.log"))
    };

    // New connection per request (a fresh client each time), before, during and after.
    let ca = old.ca_pem_path();
    let url = old.url("/fhir/metadata");
    let get = || {
        let (ca, url) = (ca.clone(), url.clone());
        async move {
            client(&ca, false)
                .get(url)
                .header(AUDIT, "upgrade")
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(get().await.unwrap(), 200);
    thread::sleep(Duration::from_millis(300));
    old.signal(libc::SIGQUIT);
    let signalled = Instant::now();

    let mut statuses = Vec::new();
    let mut retried = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut old_exit = None;
    while Instant::now() < deadline {
        let t = signalled.elapsed();
        // A connection the old process accepted in the instant its listeners stop (the end of
        // pingora's fixed 5 s hand-over window) can be closed before any response byte, even
        // during its TLS handshake (reqwest then calls it a connect error): the client sees a
        // closed connection, never a refused one. A GET retried once on a fresh connection
        // must then succeed; a refused connect, or a failed retry, fails the test.
        let first = get().await;
        let result = match first {
            Err(e) if !refused(&e) && e.status().is_none() => {
                retried.push(format!("at {t:?}: {}", error_chain(&e)));
                get().await
            }
            other => other,
        };
        statuses.push(result.map_err(|e| {
            format!(
                "at {t:?} (old exited: {}): {}",
                old_exit.is_some(),
                error_chain(&e)
            )
        }));
        if old_exit.is_none() {
            old_exit = tokio::task::block_in_place(|| old.wait_exit(Duration::from_millis(50)));
        } else if statuses.len() >= 10 {
            break;
        }
    }
    let failures: Vec<_> = statuses.iter().filter(|s| !matches!(s, Ok(200))).collect();
    // At most the one cut-over instant, not a pattern of dropped connections.
    assert!(
        retried.len() <= 1,
        "connections closed unanswered: {retried:?}"
    );
    let new_alive = new.try_wait().unwrap().is_none();
    stop_child(&mut new, Duration::from_secs(5));
    assert!(
        old_exit.is_some_and(|s| s.success()),
        "old process did not exit cleanly: {old_exit:?}\nold:\n{}\nnew:\n{}",
        old.logs(),
        new_logs()
    );
    assert!(new_alive, "upgraded process died\n{}", new_logs());
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the upgrade: {failures:?} (retried: {retried:?})\nold:\n{}\nnew:\n{}",
        failures.len(),
        statuses.len(),
        old.logs(),
        new_logs()
    );
    assert!(
        new_logs().contains("phi-gateway starting"),
        "{}",
        new_logs()
    );
}

/// Whether a request failed because the connection was refused (nothing listening): the one
/// failure a listener hand-over must never cause. Regression: CI saw a connection closed in
/// the old process's TLS handshake at the 5 s cut-over, which reqwest reports as a connect
/// error too; only a refusal is one.
fn refused(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// An error with its causes, for a failure message that says what the socket saw.
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}

/// `run --upgrade` with an audit trail is refused before anything is bound: two processes
/// would append to one hash chain while they overlap.
#[test]
fn upgrade_with_an_audit_trail_is_refused_with_exit_78() {
    let up = RecordingUpstream::start();
    let gw = Gateway::start(GatewayOpts::new(up.addr()));
    let out = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["run", "--upgrade", "--config"])
        .arg(&gw.files.config)
        .current_dir(gw.files.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run --upgrade");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("--upgrade") && stderr.contains("audit"),
        "{stderr}"
    );
    // The running gateway is untouched.
    assert!(matches!(
        http_get(gw.files.admin_port, "/readyz"),
        Some((200, _))
    ));
}

/// Regression (issue 14): the gateway logged an ERROR `Downstream handshake error … tls
/// handshake eof` at every start, because its readiness probe connected to its own TLS
/// listener and hung up. Nothing the gateway does by itself may log at ERROR: start it, wait
/// for `/readyz` without touching the TLS port, serve one clean request, stop it, and read
/// every log line.
#[test]
fn a_normal_start_and_request_log_no_error() {
    let up = RecordingUpstream::start();
    let files = GatewayFiles::new(&GatewayOpts::new(up.addr()));
    let log_path = files.dir.path().join("run.log");
    let mut child = spawn_run(
        &files,
        std::fs::File::create(&log_path).unwrap(),
        std::fs::File::create(files.dir.path().join("run.err")).unwrap(),
    );
    let logs = || {
        let read = |n: &str| std::fs::read_to_string(files.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("run.err"), read("run.log"))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(http_get(files.admin_port, "/readyz"), Some((200, _))) {
        assert!(
            Instant::now() < deadline,
            "not ready within 20 s\n{}",
            logs()
        );
        thread::sleep(Duration::from_millis(30));
    }
    let r = curl(
        &files.ca_pem_path(),
        &[
            "-H",
            &format!("{AUDIT}: start-1"),
            &format!("https://localhost:{}/fhir/Patient/1", files.port),
        ],
    );
    assert_eq!(r.status, 200, "clean request: {r:?}\n{}", logs());
    thread::sleep(Duration::from_millis(300));
    stop_child(&mut child, Duration::from_secs(5));
    let logs = logs();
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains(" ERROR "))
        .collect();
    assert!(
        errors.is_empty(),
        "ERROR lines at start-up:\n{}",
        errors.join("\n")
    );
    assert!(logs.contains("\"ready\""), "no ready line:\n{logs}");
}

/// The hand-over test's retry rule rests on telling a refused connection from one closed
/// unanswered: check both against real sockets.
#[tokio::test]
async fn a_refused_connection_is_told_apart_from_a_closed_one() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    thread::spawn(move || {
        // Accept and hang up in the TLS handshake, as a stopping listener does.
        for s in closed.incoming().take(1) {
            drop(s);
        }
    });
    let up = RecordingUpstream::start();
    let files = GatewayFiles::new(&GatewayOpts::new(up.addr()));
    let http = client(&files.ca_pem_path(), false);
    let e = http
        .get(format!("https://127.0.0.1:{refused_port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(refused(&e), "{}", error_chain(&e));
    let e = http
        .get(format!("https://127.0.0.1:{closed_port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(!refused(&e), "{}", error_chain(&e));
}
