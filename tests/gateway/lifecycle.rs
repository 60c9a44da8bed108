//! Process lifecycle: the `demo` smoke test (banner commands, SIGINT) and readiness.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn demo_banner_commands_work_and_sigint_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (listen, admin) = (free_port(), free_port());
    let stdout_path = tmp.path().join("stdout.log");
    let stderr_path = tmp.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_phi-gateway"))
        .args(["demo", "--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .arg("--data-dir")
        .arg(&data)
        // No ./rules here, so the demo uses its built-in pack.
        .current_dir(tmp.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn demo");
    let logs = || {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        )
    };

    // Ready: /readyz answers 200 and the banner lists three curl commands.
    let deadline = Instant::now() + Duration::from_secs(15);
    let commands = loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("demo exited early with {status}\n{}", logs());
        }
        let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        let cmds: Vec<String> = out
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("curl "))
            .map(str::to_string)
            .collect();
        if cmds.len() >= 3 && matches!(http_get(admin, "/readyz"), Some((200, _))) {
            break cmds;
        }
        if Instant::now() > deadline {
            let _ = stop_child(&mut child, Duration::from_secs(3));
            panic!("demo not ready within 15 s\n{}", logs());
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(commands.len(), 3, "{commands:?}");
    // The proxy port may open a moment after the admin one.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(25));
    }

    let mut codes = Vec::new();
    for cmd in &commands {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "{cmd} -sS -m 10 --noproxy '*' -o /dev/null -w '%{{http_code}}'"
            ))
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .output()
            .expect("run banner command");
        codes.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }

    let stopped = stop_child(&mut child, Duration::from_secs(3));
    assert_eq!(
        codes,
        ["200", "403", "403"],
        "banner commands {commands:?}\n{}",
        logs()
    );
    assert!(
        stopped.is_some(),
        "demo did not exit within 3 s of SIGINT\n{}",
        logs()
    );

    // The demo's audit trail: records for the three requests, keys apart from the logs, and
    // the verify command the banner prints passes.
    let banner = std::fs::read_to_string(&stdout_path).unwrap();
    let verify_cmd = banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains("phi-gateway audit verify --dir"))
        .unwrap_or_else(|| panic!("no verify command in the banner:\n{banner}"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(verify_cmd)
        .output()
        .expect("run the banner's verify command");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("RESULT: VALID"),
        "{verify_cmd}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let records = audit_records(&data.join("audit"));
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(records[0]["resource_id"], "Patient/example", "{records:#?}");
    let (code, report) = audit_verify(&data.join("audit"), &data.join("audit-signing.pub"));
    assert_eq!(code, 0, "{report:#}");
    use std::os::unix::fs::PermissionsExt as _;
    for key in ["keys/audit-signing.key", "keys/audit-fingerprint.key"] {
        let mode = std::fs::metadata(data.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    assert!(!data.join("audit").join("audit-signing.key").exists());
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
