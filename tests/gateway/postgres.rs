//! The PostgreSQL audit sink against a real PostgreSQL server that this test starts itself
//! (Debian's `postgresql` package, installed by `.ci/setup test`): a throwaway cluster in a
//! temp dir on a loopback port, owned by the `postgres` user when the suite runs as root
//! (initdb refuses root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A throwaway PostgreSQL cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn pg_bin() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(&p));
            return real.parent().unwrap().to_path_buf();
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| r.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").is_file());
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().expect(
        "PostgreSQL server binaries not found (initdb); run `.ci/setup test` to install Debian's postgresql",
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    /// Command that runs `prog` as the cluster owner.
    fn cmd(&self, prog: &str) -> Command {
        let exe = self.bin.join(prog);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, prog: &str, args: &[&str]) {
        let out = self
            .cmd(prog)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// initdb + start on a free loopback port.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("phi-gw-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(st.success(), "chown the cluster dir to postgres");
        }
        let pg = Postgres {
            dir,
            bin: pg_bin(),
            port: free_port(),
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown); `start_again` brings it back on the same port.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"],
        );
    }

    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2",
            self.port
        )
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .args([
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Rows in `hipaa_audit_log`, waiting (bounded) until there are at least `n`.
pub async fn rows_when(pg: &Postgres, n: i64) -> Vec<tokio_postgres::Row> {
    let c = pg.client().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = c
            .query(
                "SELECT log_id::text AS log_id, user_id, action_type, resource_id, \
                 to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') AS ts, \
                 host(ip_address) AS ip, user_agent, details::text AS details \
                 FROM hipaa_audit_log ORDER BY (details->>'seq')::bigint",
                &[],
            )
            .await;
        if let Ok(rows) = rows {
            if rows.len() as i64 >= n || Instant::now() > deadline {
                return rows;
            }
        } else if Instant::now() > deadline {
            panic!("hipaa_audit_log never became queryable: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn pg_opts(up: std::net::SocketAddr, pg: &Postgres) -> GatewayOpts {
    let mut o = GatewayOpts::new(up);
    o.audit_extra = vec![
        "  postgres:".into(),
        format!("    url: \"{}\"", pg.url()),
        "    batch_size: 50".into(),
        "    batch_interval_ms: 20".into(),
        "    retry_initial_backoff_ms: 50".into(),
        "    retry_max_backoff_ms: 300".into(),
    ];
    o
}

#[tokio::test]
async fn records_reach_postgresql_with_the_compliance_schema() {
    let pg = Postgres::start();
    let up = RecordingUpstream::start();
    let gw = Gateway::start(pg_opts(up.addr(), &pg));
    let c = gw.client(false);
    for i in 0..3 {
        let r = c
            .get(gw.url(&format!("/fhir/Patient/p{i}")))
            .header(AUDIT, format!("pg-{i}"))
            .header("user-agent", "pg-test/1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    expect_refusal(
        c.post(gw.url("/fhir/Patient"))
            .header(AUDIT, "pg-block")
            .header("content-type", "application/fhir+json")
            .body(ssn_patient()),
        403,
        "phi_detected",
    )
    .await;

    let rows = rows_when(&pg, 4).await;
    let file = gw.audit_records();
    assert_eq!(rows.len(), 4, "{}", gw.logs());
    assert_eq!(file.len(), 4);
    for (row, rec) in rows.iter().zip(&file) {
        let log_id: String = row.get("log_id");
        assert_eq!(log_id, rec["log_id"].as_str().unwrap());
        let user: String = row.get("user_id");
        assert_eq!(user, "anonymous");
        let ip: String = row.get("ip");
        assert_eq!(ip, "127.0.0.1");
        let ua: Option<String> = row.get("user_agent");
        assert_eq!(ua.as_deref(), rec["user_agent"].as_str());
        let ts: String = row.get("ts");
        assert!(
            rec["timestamp"].as_str().unwrap().starts_with(&ts[..19]),
            "{ts} vs {}",
            rec["timestamp"]
        );
        let details: serde_json::Value =
            serde_json::from_str(row.get::<_, &str>("details")).unwrap();
        assert_eq!(details["request_id"], rec["request_id"]);
        assert_eq!(details["decision"], rec["decision"]);
        assert_eq!(details["seq"], rec["seq"]);
        assert!(
            details.get("log_id").is_none(),
            "columns are not repeated in details"
        );
    }
    let action: String = rows[3].get("action_type");
    assert_eq!(action, "create");
    // The indexes auditors rely on exist.
    let client = pg.client().await;
    let idx: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'hipaa_audit_log' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for want in [
        "hipaa_audit_log_pkey",
        "hipaa_audit_log_user_time",
        "hipaa_audit_log_resource_time",
        "hipaa_audit_log_time",
    ] {
        assert!(idx.iter().any(|i| i == want), "{want} missing: {idx:?}");
    }
    let _ = pg.dir();
}

/// PostgreSQL goes away: fail-closed routes refuse (503), /readyz says so; it comes back: the
/// sink reconnects with backoff, stores everything it held, and traffic flows again.
#[tokio::test]
async fn postgres_outage_fails_closed_then_recovers_without_loss() {
    let pg = Postgres::start();
    let up = RecordingUpstream::start();
    let gw = Gateway::start(pg_opts(up.addr(), &pg));
    let c = gw.client(false);
    let send = |tag: String| {
        let c = c.clone();
        let url = gw.url("/fhir/Patient/1");
        async move {
            let r = c.get(url).header(AUDIT, tag).send().await.unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(send("up-1".into()).await, 200);
    rows_when(&pg, 1).await;

    pg.stop();
    // Records keep flowing to the sink until an insert fails; then the route fails closed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut refused = false;
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        if send(format!("down-{i}")).await == 503 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "never failed closed\n{}", gw.logs());
    let ready = http_get(gw.files.admin_port, "/readyz").unwrap();
    assert_eq!(ready.0, 503, "{ready:?}");
    assert!(ready.1.contains("\"postgres\""), "{ready:?}");
    let scrape = gw.scrape_metrics();
    assert!(
        metric_value(
            &scrape,
            "phi_gateway_audit_write_errors_total",
            &[("sink", "postgres")]
        ) >= 1.0,
        "{scrape}"
    );

    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_get(gw.files.admin_port, "/readyz").map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "sink never recovered\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(send("back".into()).await, 200);
    let file = gw.audit_records();
    let rows = rows_when(&pg, file.len() as i64).await;
    assert_eq!(
        rows.len(),
        file.len(),
        "every record in the file sink also reached PostgreSQL\n{}",
        gw.logs()
    );
}
