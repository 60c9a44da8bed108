//! The `phi-gateway` command: a thin edge over the library. `anyhow` lives only here.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use phi_gateway::config;
use phi_gateway::gateway::{self, tls};
use phi_gateway::runtime::{cli, demo, demo_issuer, logging, server};

/// Exit code for an invalid configuration, rule set or certificate (sysexits `EX_CONFIG`).
const EXIT_CONFIG: u8 = 78;

/// A TLS 1.3-only reverse proxy that keeps unencrypted PHI out of EHR APIs.
///
/// It requires an audit header on every request, scans the URL (path and query), selected
/// headers and the body (after decompression) for PHI such as SSNs, Medicare IDs, NPIs and
/// card numbers, then blocks (403) or logs (monitor mode) according to YAML rules. On routes
/// that ask for it, it verifies bearer tokens (JWT) and decides each request by an access
/// policy (SMART scopes, roles, patient binding). Clean, allowed traffic goes on to the
/// upstream unchanged.
///
/// Try it: `phi-gateway demo` (a sample EHR, tokens from `phi-gateway dev-token`).
///
/// Exit codes: 0 success; 1 runtime failure; 2 usage error; 78 invalid configuration, rules or
/// certificate (nothing was bound).
#[derive(Debug, Parser)]
#[command(name = "phi-gateway", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway with a configuration file.
    ///
    /// The configuration, rules and certificates are validated before any port is bound.
    /// At start it logs its version, the config version hash, every bound address and the
    /// rule count.
    ///
    /// Reload (no connection is dropped): SIGHUP, `POST /reload` on the admin listener, or a
    /// change to the config file, rule directory or certificate files (`reload.watch`). A
    /// failed reload keeps the running configuration and logs why.
    ///
    /// Signals: SIGHUP reload; SIGINT fast shutdown; SIGTERM graceful shutdown (`/readyz`
    /// turns `draining`, listeners close after `server.shutdown_delay_seconds`, in-flight
    /// requests get up to `server.grace_period_seconds`, then exit); SIGQUIT pingora graceful
    /// upgrade to a process started with `run --upgrade`. See docs/operations.md.
    Run {
        /// Path to gateway.yaml (see deploy/gateway.yaml for every field).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Take over the listening sockets of a running gateway instead of binding them: start
        /// this, then send SIGQUIT to the old process within 5 seconds. Both use
        /// `server.upgrade_sock`. For changes a reload cannot apply (addresses stay the same,
        /// but e.g. threads or a new binary) without refusing a single connection.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a configuration like `nginx -t`, without binding any port.
    ///
    /// Checks the YAML (unknown keys are errors), the rule files, the certificate and key, and
    /// upstream CA files, and resolves upstream host names as `run` would. Prints `ok` and
    /// exits 0 when everything is valid; otherwise prints
    /// `FILE:LINE:COLUMN: field `PATH`: problem` and exits 78.
    Check {
        /// Path to gateway.yaml.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Do not look up upstream host names; only check that each is a well-formed
        /// `host:port`. For validating a configuration where the production DNS is not
        /// visible (CI, a build host). `run` always resolves, so run `check` without this flag
        /// on the target host (systemd's ExecStartPre does).
        #[arg(long)]
        no_resolve: bool,
    },
    /// Start a self-contained demo: the gateway, a sample EHR, a development CA, a token issuer.
    ///
    /// Generates a development CA and a server certificate for localhost and 127.0.0.1 into
    /// the data directory, and (once, reused by later runs with the same --data-dir) the audit
    /// keys and the demo token issuer's ES256 key (keys/demo-issuer.key) with its public
    /// jwks.json. Writes a gateway.yaml there that requires a bearer token from that issuer on
    /// /fhir/ and applies the shipped access policy (deploy/policy), starts a sample FHIR
    /// service on loopback behind the gateway (patients pat-1 and pat-2, observations obs-1 and
    /// obs-2), and prints curl commands to try, with tokens from `phi-gateway dev-token`.
    /// Ctrl-C stops it.
    Demo {
        /// TLS listener address.
        #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
        listen: SocketAddr,
        /// Admin listener address (/metrics, /livez, /readyz, POST /reload).
        #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
        admin: SocketAddr,
        /// Directory for generated certificates and configuration [default: a fresh temporary
        /// directory, printed at start].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Rule directory [default: ./rules when present, else the built-in default pack].
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Access policy directory [default: ./deploy/policy when present, else a copy of the
        /// shipped policy written into the data directory].
        #[arg(long, value_name = "DIR")]
        policy: Option<PathBuf>,
        /// Log format.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
    },
    /// The tamper-evident audit trail: make keys, verify a trail, list break-glass records.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Scan one body or raw HTTP request for PHI, as the gateway would; or, with --lines, a
    /// log file line by line.
    ///
    /// Prints one line per finding (or one JSON object per line with --json) with the rule,
    /// Safe Harbor category, location (JSON pointer, field name or byte offset) and decode
    /// chain. Matched values are never printed: only their shape (`###-##-####`). --explain
    /// adds the pattern, validator results, context word and score, plus near misses (why a
    /// candidate did not fire: checksum failed, no context, exception).
    ///
    /// Fingerprints (for `exceptions.values` in rule files) are printed by --explain only with
    /// --fingerprint-key, the deployment's secret key (`rules.fingerprint_key_file`, by default
    /// `audit.fingerprint_key_file`): a fingerprint under a known key is reversed by trying
    /// every value of its shape, so there is no built-in key.
    ///
    /// --lines FILE|- reads a log (plain text or JSON Lines) as a stream and scans each line on
    /// its own; a JSON line is walked as JSON, so its keys give the context. Each finding is
    /// `FILE:LINE  rule  category (severity)  location  shape`. Lines over --max-line-bytes are
    /// scanned as text in overlapping pieces (noted on stderr), so memory stays bounded. A
    /// summary (lines, bytes, findings, MB/s) goes to stderr.
    ///
    /// Exit codes, like grep: 0 clean, 1 findings, 2 error.
    Scan {
        /// Rule directory; repeat to layer a site directory over the default pack
        /// [default: ./rules when present, else the built-in default pack].
        #[arg(long, value_name = "DIR")]
        rules: Vec<PathBuf>,
        /// Content-Type of the body (ignored with --http) [default: sniffed: JSON, HL7 v2 or
        /// text].
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
        /// Content-Encoding of the body, e.g. `gzip` or `gzip, br` (ignored with --http).
        #[arg(long, value_name = "CODINGS")]
        content_encoding: Option<String>,
        /// Route name, for rules and exceptions scoped with `route:`.
        #[arg(long, value_name = "NAME")]
        route: Option<String>,
        /// One JSON object per finding (and per near miss with --explain).
        #[arg(long)]
        json: bool,
        /// Explain each finding and list near misses.
        #[arg(long)]
        explain: bool,
        /// The input is a raw HTTP/1.1 request (request line, headers, body); the path,
        /// query, headers and body are all scanned.
        #[arg(long, conflicts_with = "lines")]
        http: bool,
        /// The input is an upstream response body: scan it as the response leak guard does
        /// on an error status (the PHI rules and the `where: [response]` error signatures).
        #[arg(long, conflicts_with_all = ["lines", "http"])]
        response: bool,
        /// The input is a log: scan it line by line (plain text and JSON Lines) and report
        /// `FILE:LINE` for each finding.
        #[arg(long)]
        lines: bool,
        /// With --lines: the longest piece of one line scanned at once, in bytes; longer
        /// lines are scanned in overlapping pieces.
        #[arg(long, value_name = "BYTES", default_value_t = phi_gateway::runtime::cli::lines::DEFAULT_MAX_LINE_BYTES, requires = "lines")]
        max_line_bytes: usize,
        /// The deployment's fingerprint key file (PEM, as written by `audit keygen`). Without
        /// it no fingerprint is printed and exceptions by `values` do not apply.
        #[arg(long, value_name = "FILE")]
        fingerprint_key: Option<PathBuf>,
        /// Input file, or `-` for standard input.
        #[arg(value_name = "FILE", default_value = "-")]
        file: PathBuf,
    },
    /// Tools for rule authors.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Tools for access-policy authors.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    DevToken(cli::dev_token::DevTokenArgs),
    /// Generate a development CA and a localhost server certificate (never for production).
    DevCerts {
        /// Output directory; receives ca.pem, server.pem and server.key (mode 0600).
        #[arg(long, value_name = "DIR", default_value = "certs")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Make the checkpoint signing key, the fingerprint key and the public key.
    ///
    /// The two private keys go to --keys-dir (created 0700, files 0600); keep that directory
    /// outside the audit directory, ideally on another volume or in a secrets store. Hand the
    /// public key to the compliance team: it is all `audit verify` needs. Never overwrites.
    Keygen {
        /// Directory for audit-signing.key and audit-fingerprint.key.
        #[arg(long, value_name = "DIR", default_value = "keys")]
        keys_dir: PathBuf,
        /// Where to write the public key.
        #[arg(long, value_name = "FILE", default_value = "audit-signing.pub")]
        pubkey: PathBuf,
    },
    /// Verify an audit directory: signatures, checkpoint chain, record chain.
    ///
    /// Walks the signed checkpoints and every record like CloudTrail's validate-logs and
    /// reports each problem by class: invalid_signature, checkpoint_chain, hash_mismatch (at seq
    /// N), missing_segment, truncated_tail (errors); gap, unsigned_tail, torn_tail (warnings:
    /// downtime or a crash, not tampering). Exit 0 when there is no error, 1 when there is,
    /// 2 on a usage or I/O error.
    Verify {
        /// The audit directory (segments and checkpoints).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The Ed25519 public key (PEM) from `audit keygen`.
        #[arg(long, value_name = "FILE")]
        pubkey: PathBuf,
        /// Report only problems at or after this RFC 3339 time (e.g. 2026-01-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Report only problems at or before this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Print the report as JSON (for evidence packages).
        #[arg(long)]
        json: bool,
    },
    /// List the break-glass records of a verified audit trail, for the after-the-fact review.
    ///
    /// Verifies the trail first (like `audit verify`) and lists nothing when it does not
    /// verify. Each line is one record with `access.break_glass`: `started` (CRITICAL: a new
    /// time box, with who, the patient's fingerprint, the justification as stored and the
    /// expiry), `access` (a request under a box) or `refused`. No PHI: patients are
    /// fingerprints, a justification a detector fired on is a fingerprint. Exit 0 when the
    /// trail verified, 1 when it did not, 2 on a usage or I/O error.
    BreakGlass {
        /// The audit directory (segments and checkpoints).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The Ed25519 public key (PEM) from `audit keygen`.
        #[arg(long, value_name = "FILE")]
        pubkey: PathBuf,
        /// List only records at or after this RFC 3339 time (e.g. 2026-01-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Print the list (and the verification report) as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Load rule directories and run every rule's inline `tests:` and fixture files through
    /// the real engine, then lint the rules.
    ///
    /// Each `match` example must produce a finding of its rule; each `no_match` example must
    /// not. Fixture files in `DIR/tests/` (whole `.http` requests or bodies) carry
    /// `# ruleid: <id>` / `# ok: <id>` annotations. Lint: every rule needs a positive and a
    /// negative example; duplicate ids are load errors. Failures show the rule, the file and
    /// line, the expected and actual result, and the input masked. Exits 0 when all pass, 1
    /// when any fails, 78 when the rules do not load.
    Test {
        /// Rule directories, layered in order (later ones override or disable earlier rules).
        #[arg(default_value = "rules", value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// The deployment's fingerprint key file, for rules with exceptions by `values`
        /// (their tests cannot pass without it).
        #[arg(long, value_name = "FILE")]
        fingerprint_key: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Load policy directories, run every inline test (claims + request → allow or deny, the
    /// reason, the denied Bundle entries) through the real evaluator, then lint the policy.
    ///
    /// Lint: roles and `permissions` entries that grant nothing or that no test exercises, a
    /// policy without tests. Unknown fields, resource types, interactions and operations are
    /// load errors naming FILE:LINE:COLUMN and the field. Exits 0 when all pass, 1 when a test
    /// or the lint fails, 78 when the policy does not load.
    Test {
        /// Policy directories, layered in order (later ones override or disable roles).
        #[arg(default_value = "deploy/policy", value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, no_resolve } => {
            let dns = if no_resolve {
                config::Dns::Skip
            } else {
                config::Dns::Resolve
            };
            check(&config, dns)
        }
        Command::Run { config, upgrade } => run(&config, upgrade),
        Command::Demo {
            listen,
            admin,
            data_dir,
            rules,
            policy,
            log_format,
        } => match run_demo(listen, admin, data_dir, rules, policy, &log_format) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("phi-gateway demo: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Rules {
            command:
                RulesCommand::Test {
                    dirs,
                    fingerprint_key,
                },
        } => match cli::rules_test(&dirs, fingerprint_key.as_deref()) {
            Ok(report) => {
                print!("{}", report.text);
                if report.passed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Policy {
            command: PolicyCommand::Test { dirs },
        } => match cli::policy::policy_test(&dirs) {
            Ok(report) => {
                print!("{}", report.text);
                if report.passed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Audit {
            command: AuditCommand::Keygen { keys_dir, pubkey },
        } => print_or_refuse(cli::audit::keygen(&keys_dir, &pubkey).map(|t| (t, true))),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    dir,
                    pubkey,
                    from,
                    to,
                    json,
                },
        } => print_or_refuse(cli::audit::verify(
            &dir,
            &pubkey,
            from.as_deref(),
            to.as_deref(),
            json,
        )),
        Command::Audit {
            command:
                AuditCommand::BreakGlass {
                    dir,
                    pubkey,
                    since,
                    json,
                },
        } => print_or_refuse(
            cli::break_glass::review(&dir, &pubkey, since.as_deref(), json).map(|t| (t, true)),
        ),
        Command::Scan {
            rules,
            content_type,
            content_encoding,
            route,
            json,
            explain,
            http,
            response,
            lines,
            max_line_bytes,
            fingerprint_key,
            file,
        } => {
            let args = cli::scan::ScanArgs {
                content_type,
                content_encoding,
                route,
                json,
                explain,
                http,
                response,
            };
            let result = if lines {
                scan_lines(
                    &rules,
                    fingerprint_key.as_deref(),
                    &file,
                    args,
                    max_line_bytes,
                )
            } else {
                scan_body(&rules, fingerprint_key.as_deref(), &file, &args)
            };
            match result {
                Ok(true) => ExitCode::from(1),
                Ok(false) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("phi-gateway scan: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::DevToken(args) => match cli::dev_token::dev_token(&args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("phi-gateway dev-token: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::DevCerts { out } => match tls::generate_dev_ca(&out) {
            Ok(c) => {
                println!(
                    "wrote {}, {} and {} (development only)",
                    c.ca_cert.display(),
                    c.server_cert.display(),
                    c.server_key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("phi-gateway dev-certs: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(path: &Path, dns: config::Dns) -> ExitCode {
    let cfg = match config::load_with(path, dns) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match gateway::build(cfg) {
        Ok((snapshot, cert)) => {
            let c = &snapshot.config;
            let days_left = (cert.not_after_unix - now_unix()) / 86_400;
            if days_left < 0 {
                eprintln!("{}: certificate has expired", c.listen.cert_file.display());
                return ExitCode::from(EXIT_CONFIG);
            }
            let audit = match server::load_audit(c) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            // The alert receiver's secret and CA, as `run` would load them.
            if let Some(w) = &c.webhook {
                if let Err(e) = phi_gateway::defence::webhook::check(w) {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
            let audit = match &audit {
                Some(a) => format!("audit trail in {} (key {})", a.dir().display(), a.key_id()),
                None => "NO audit trail (no `audit:` section)".to_string(),
            };
            let policy = match &snapshot.policy {
                Some(p) => format!(
                    "access policy: {} roles, {} permissions entries, on {} routes; ",
                    p.roles().len(),
                    p.permission_count(),
                    c.routes.iter().filter(|r| r.access.policy).count()
                ),
                None => String::new(),
            };
            println!(
                "{}: ok ({} routes, {} upstreams, {} rules from {}, certificate valid for {} more days, config version {}, {policy}{audit}{})",
                path.display(),
                c.routes.len(),
                c.upstreams.len(),
                snapshot.engine.rules().len(),
                c.rules_dir.display(),
                days_left,
                snapshot.config_version,
                if dns == config::Dns::Skip {
                    "; upstream host names not resolved (--no-resolve)"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Prints a command's result, or its refusal to stderr with its exit code.
fn print_or_refuse(result: Result<(String, bool), cli::Refused>) -> ExitCode {
    match result {
        Ok((out, ok)) => {
            print!("{out}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(cli::Refused { code, message }) => {
            eprint!("{message}");
            ExitCode::from(code)
        }
    }
}

/// `scan FILE`: one body or request; `Ok(true)` when there were findings.
fn scan_body(
    rules: &[PathBuf],
    key: Option<&Path>,
    file: &Path,
    args: &cli::scan::ScanArgs,
) -> Result<bool, cli::CliError> {
    let rules = cli::load_rules(rules, key)?;
    if let Some(note) = cli::missing_key_note(&rules) {
        eprintln!("{note}");
    }
    let engine = phi_gateway::engine::Engine::new(std::sync::Arc::new(rules));
    let input = cli::scan::read_input(file)?;
    let (out, found) = cli::scan::scan(&engine, &input, file, args)?;
    print!("{out}");
    Ok(found)
}

/// `scan --lines FILE`: a log, line by line; `Ok(true)` when there were findings.
fn scan_lines(
    rules: &[PathBuf],
    key: Option<&Path>,
    file: &Path,
    args: cli::scan::ScanArgs,
    max_line_bytes: usize,
) -> Result<bool, cli::CliError> {
    use std::io::{BufReader, Write as _};
    let rules = cli::load_rules(rules, key)?;
    if let Some(note) = cli::missing_key_note(&rules) {
        eprintln!("{note}");
    }
    let engine = phi_gateway::engine::Engine::new(std::sync::Arc::new(rules));
    let name = if file == Path::new("-") {
        "(standard input)".to_string()
    } else {
        file.display().to_string()
    };
    let mut input: Box<dyn std::io::BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file).map_err(|source| cli::CliError::Read {
            what: name.clone(),
            source,
        })?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    let line_args = cli::lines::LinesArgs {
        name,
        route: args.route,
        json: args.json,
        max_line_bytes,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = cli::lines::scan_lines(
        &engine,
        &mut input,
        &mut out,
        &mut std::io::stderr(),
        &line_args,
    );
    out.flush().map_err(cli::CliError::Write)?;
    let summary = summary?;
    eprintln!("{}", summary.render(&line_args.name));
    Ok(summary.findings > 0)
}

fn run(path: &Path, upgrade: bool) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    logging::init(cfg.logging.format, &cfg.logging.level);
    let prepared = match server::prepare(cfg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let extra = server::Extra {
        sample_ehr: None,
        upgrade,
    };
    match server::run(prepared, extra) {
        Ok(()) => ExitCode::SUCCESS,
        // Refused before anything was bound: a configuration problem, like the others.
        Err(e @ server::StartError::UpgradeWithAudit { .. }) => {
            eprintln!("phi-gateway: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("phi-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(
    listen: SocketAddr,
    admin: SocketAddr,
    data_dir: Option<PathBuf>,
    rules: Option<PathBuf>,
    policy: Option<PathBuf>,
    log_format: &str,
) -> anyhow::Result<ExitCode> {
    for (what, addr) in [("--listen", listen), ("--admin", admin)] {
        TcpListener::bind(addr).with_context(|| {
            format!("{what} {addr} is not available (is another demo running? choose another with {what})")
        })?;
    }
    let dir = match data_dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create data directory {}", d.display()))?;
            d
        }
        None => server::fresh_data_dir().context("cannot create a temporary data directory")?,
    };
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let certs = tls::generate_dev_ca(&dir).context("cannot generate the development CA")?;
    demo::ensure_audit_keys(&dir).context("cannot create the demo's audit keys")?;
    demo_issuer::ensure_issuer(&dir).context("cannot create the demo token issuer's key")?;
    let rules_dir = match rules {
        Some(r) => r,
        None if Path::new("rules").is_dir() => PathBuf::from("rules"),
        None => demo::write_default_pack(&dir.join("rules"))
            .context("cannot write the built-in rule pack")?,
    };
    let rules_dir = std::fs::canonicalize(&rules_dir)
        .with_context(|| format!("rule directory {} not found", rules_dir.display()))?;
    let policy_dir = match policy {
        Some(p) => p,
        None if Path::new("deploy/policy").is_dir() => PathBuf::from("deploy/policy"),
        None => demo::write_default_policy(&dir.join("policy"))
            .context("cannot write the built-in access policy")?,
    };
    let policy_dir = std::fs::canonicalize(&policy_dir)
        .with_context(|| format!("policy directory {} not found", policy_dir.display()))?;
    // The sample EHR's port: ask the kernel for a free one. pingora cannot report the port it
    // bound for ":0", so pick it here (a tiny race with other processes is acceptable for a demo).
    let ehr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free loopback port for the sample EHR")?;
    let cfg_file = demo::write_demo_config(
        &dir,
        &listen.to_string(),
        &admin.to_string(),
        &ehr.to_string(),
        &rules_dir,
        &policy_dir,
    )
    .context("cannot write the demo configuration")?;
    let cfg = match config::load(&cfg_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let format = if log_format == "json" {
        config::LogFormat::Json
    } else {
        config::LogFormat::Text
    };
    logging::init(format, &cfg.logging.level);
    let prepared = match server::prepare(cfg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    println!(
        "{}",
        demo::banner(&demo::DemoPlaces {
            dir: &dir,
            ca: &certs.ca_cert,
            listen,
            admin,
            ehr,
            rules: &rules_dir,
            policy: &policy_dir,
            config: &cfg_file,
        })
    );
    server::run(
        prepared,
        server::Extra {
            sample_ehr: Some(ehr),
            upgrade: false,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
