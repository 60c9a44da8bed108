//! Hot reload of the configuration, the rules and the listener certificate.
//!
//! A reload runs the same steps as start-up ([`crate::gateway::build`]): parse, validate,
//! compile, load the certificate. Only when every step has succeeded does it swap, in this
//! order: the certificate resolver (next handshakes), then the request snapshot (next
//! requests). Requests in flight keep the `Arc<Snapshot>` they loaded in `new_ctx`, so they
//! finish on the rules they started with. A failed reload changes nothing, logs the precise
//! error (file, line, field) and counts `phi_gateway_config_reloads_total{result="failure"}`.
//!
//! Three triggers share one [`Reloader`], and a mutex serialises them: SIGHUP, `POST /reload`
//! on the admin listener, and the file watch ([`spawn_watch`]).
//!
//! Settings that shape listeners or the process (addresses, threads, grace periods, logging)
//! cannot change in place; a reload that changes one fails and names the field, instead of
//! half-applying the file. Those need a restart or pingora's SIGQUIT upgrade.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::gateway::tls::SwappableCert;
use crate::gateway::Snapshot;
use crate::runtime::server::StartError;
use crate::telemetry::Metrics;

/// What asked for a reload (logged with the result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trigger {
    /// `POST /reload` on the admin listener.
    Admin,
    /// SIGHUP.
    Signal,
    /// The file watch saw a change.
    Watch,
}

impl Trigger {
    /// Name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Admin => "admin",
            Trigger::Signal => "sighup",
            Trigger::Watch => "file-watch",
        }
    }
}

/// Why a reload was refused. The running configuration is unchanged in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new configuration, rules or certificate are invalid.
    #[error("{0}")]
    Invalid(#[from] StartError),
    /// The new file changes a setting that only a restart can apply.
    #[error("{file}: `{field}` changed; that needs a restart (or a SIGQUIT upgrade), so nothing was reloaded")]
    RestartRequired {
        /// The configuration file.
        file: PathBuf,
        /// The first such setting.
        field: &'static str,
    },
}

/// The outcome of a successful reload.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The new configuration version.
    pub config_version: String,
    /// Rules now loaded.
    pub rules: usize,
    /// Routes now configured.
    pub routes: usize,
}

/// Re-reads the configuration file and swaps what it produces into the running gateway.
pub struct Reloader {
    config_file: PathBuf,
    current: Arc<ArcSwap<Snapshot>>,
    cert: Arc<SwappableCert>,
    metrics: Metrics,
    /// Serialises reloads: two triggers at once must not interleave their swaps.
    lock: Mutex<()>,
}

impl Reloader {
    /// A reloader for the gateway serving `current` with the certificate in `cert`.
    pub fn new(
        config_file: PathBuf,
        current: Arc<ArcSwap<Snapshot>>,
        cert: Arc<SwappableCert>,
        metrics: Metrics,
    ) -> Self {
        Self {
            config_file,
            current,
            cert,
            metrics,
            lock: Mutex::new(()),
        }
    }

    /// The snapshot requests currently start on.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Parses, validates and compiles the configuration file, then swaps it in. Blocking:
    /// call it from a blocking context (a thread or `spawn_blocking`).
    pub fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        // A poisoned lock only means an earlier reload panicked; the guarded value is `()`.
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let result = self.build();
        match result {
            Ok((snapshot, cert)) => {
                let done = Reloaded {
                    config_version: snapshot.config_version.clone(),
                    rules: snapshot.engine.rules().len(),
                    routes: snapshot.config.routes.len(),
                };
                self.cert.swap(&cert);
                self.current.store(Arc::new(snapshot));
                self.metrics
                    .config_reloads
                    .with_label_values(&["success"])
                    .inc();
                self.metrics.config_last_reload_success.set(unix_now());
                self.metrics.rules_loaded.set(done.rules as i64);
                self.metrics
                    .cert_not_after
                    .with_label_values(&["listener"])
                    .set(cert.not_after_unix);
                tracing::info!(
                    trigger = trigger.as_str(),
                    config_version = %done.config_version,
                    policy = %self.current.load().policy.as_ref().map(|p| p.digest()).unwrap_or("none"),
                    rules = done.rules,
                    routes = done.routes,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "configuration reloaded"
                );
                Ok(done)
            }
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::error!(
                    trigger = trigger.as_str(),
                    error = %e,
                    "reload failed; still serving the previous configuration"
                );
                Err(e)
            }
        }
    }

    fn build(&self) -> Result<(Snapshot, crate::gateway::tls::LoadedCert), ReloadError> {
        let config = crate::config::load(&self.config_file).map_err(StartError::from)?;
        if let Some(field) = config.restart_required_change(&self.current.load().config) {
            return Err(ReloadError::RestartRequired {
                file: self.config_file.clone(),
                field,
            });
        }
        Ok(crate::gateway::build(config).map_err(StartError::from)?)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Starts the file watch: every `interval` it looks at the configuration file, the rule
/// directories (base and overlays), the access policy directories, the listener certificate
/// and key and the upstream CA files, and reloads once a change has settled.
///
/// It polls by path rather than using inotify, on purpose: Kubernetes updates a ConfigMap
/// volume by swapping a `..data` symlink, editors replace files by rename, and both leave an
/// inotify watch on an old inode. Each poll compares the files' metadata through their
/// symlinks (device, inode, size, modification and change times, [`Look::Stat`]): a swap
/// or a rename shows as another inode, a write in place as a new change time, which no
/// client of the file system can set. Only when that changes are the contents hashed
/// ([`Look::Contents`]), so a `touch` is no reload, and a request-serving process does not
/// hash the whole rule pack every second. Every [`CONTENT_EVERY`]th poll hashes the contents
/// anyway, for file systems whose times are too coarse to see two writes in one tick. The
/// watched paths are re-read from the current snapshot each round, so a reload that moves the
/// rule directory moves the watch too.
pub fn spawn_watch(reloader: Arc<Reloader>, interval: Duration) -> std::io::Result<()> {
    // Metadata first: a write between the two reads then shows as changed metadata at the
    // first poll, instead of hiding behind contents hashed after it until a periodic look.
    let mut last_stat = fingerprint(&reloader.current().config, Look::Stat);
    let mut last = fingerprint(&reloader.current().config, Look::Contents);
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            for poll in 1u64.. {
                std::thread::sleep(interval);
                let current = reloader.current();
                let stat = fingerprint(&current.config, Look::Stat);
                if stat == last_stat && poll % CONTENT_EVERY != 0 {
                    continue;
                }
                last_stat = stat;
                let now = fingerprint(&current.config, Look::Contents);
                if now == last {
                    continue;
                }
                // Let a burst of writes (several files copied in, an editor's save) settle
                // before loading, so one change is one reload and a half-copied directory is
                // never read.
                last = settle(&reloader, now);
                // The error is logged and counted by `reload`; the next change triggers again.
                let _ = reloader.reload(Trigger::Watch);
            }
        })
        .map(|_| ())
}

/// How often (in polls) the watch hashes contents even though no file's metadata changed.
const CONTENT_EVERY: u64 = 30;

/// What a fingerprint reads of each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Metadata through symlinks: cheap, and it changes with every swap, rename or write.
    Stat,
    /// The bytes: what decides whether to reload.
    Contents,
}

/// Waits until two fingerprints in a row agree (at most ~5 s), returning the last one.
fn settle(reloader: &Reloader, mut seen: [u8; 32]) -> [u8; 32] {
    let step = Duration::from_millis(200);
    for _ in 0..25 {
        std::thread::sleep(step);
        let again = fingerprint(&reloader.current().config, Look::Contents);
        if again == seen {
            return seen;
        }
        seen = again;
    }
    seen
}

/// SHA-256 over the names and contents (or metadata) of everything a reload would read.
/// Unreadable files contribute their error kind, so "file vanished" is a change too.
fn fingerprint(config: &crate::config::GatewayConfig, look: Look) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for file in [
        &config.source,
        &config.listen.cert_file,
        &config.listen.key_file,
    ] {
        hash_file(&mut ctx, file, look);
    }
    for ca in config
        .upstreams
        .iter()
        .filter_map(|u| u.tls.as_ref()?.ca_file.as_ref())
    {
        hash_file(&mut ctx, ca, look);
    }
    for dir in config.rule_dirs() {
        hash_dir(&mut ctx, &dir, 0, look);
    }
    for dir in &config.policy_dirs {
        hash_dir(&mut ctx, dir, 0, look);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn hash_file(ctx: &mut ring::digest::Context, path: &Path, look: Look) {
    use std::os::unix::fs::MetadataExt as _;
    ctx.update(path.as_os_str().as_encoded_bytes());
    ctx.update(&[0]);
    let read = match look {
        Look::Contents => std::fs::read(path),
        // Follows symlinks, so a swapped `..data` link shows as the new file's inode.
        Look::Stat => std::fs::metadata(path).map(|m| {
            [
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime() as u64,
                m.mtime_nsec() as u64,
                m.ctime() as u64,
                m.ctime_nsec() as u64,
            ]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
        }),
    };
    match read {
        Ok(bytes) => {
            ctx.update(&(bytes.len() as u64).to_le_bytes());
            ctx.update(&bytes);
        }
        Err(e) => ctx.update(format!("error:{:?}", e.kind()).as_bytes()),
    }
}

/// Hidden entries (kubelet's `..data` and `..2024_…` directories) are skipped: the visible
/// names are symlinks into them, and reading through those sees every swap.
fn hash_dir(ctx: &mut ring::digest::Context, dir: &Path, depth: usize, look: Look) {
    const MAX_DEPTH: usize = 4;
    const MAX_ENTRIES: usize = 10_000;
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
            })
            .take(MAX_ENTRIES)
            .collect(),
        Err(e) => {
            ctx.update(format!("dir-error:{:?}", e.kind()).as_bytes());
            return;
        }
    };
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if depth < MAX_DEPTH {
                hash_dir(ctx, &path, depth + 1, look);
            }
        } else {
            hash_file(ctx, &path, look);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_print(d: &Path, look: Look) -> Vec<u8> {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        hash_dir(&mut c, d, 0, look);
        c.finish().as_ref().to_vec()
    }

    #[test]
    fn fingerprint_sees_content_changes_and_symlink_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A kubelet-style ConfigMap volume: rules.yaml -> ..data/rules.yaml, ..data -> ..v1.
        std::fs::create_dir(d.join("..v1")).unwrap();
        std::fs::create_dir(d.join("..v2")).unwrap();
        std::fs::write(d.join("..v1/rules.yaml"), "a").unwrap();
        std::fs::write(d.join("..v2/rules.yaml"), "b").unwrap();
        std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/rules.yaml", d.join("rules.yaml")).unwrap();

        let before = dir_print(d, Look::Contents);
        let before_stat = dir_print(d, Look::Stat);

        // The atomic swap kubelet does: a new symlink renamed over `..data`.
        std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        assert_ne!(before, dir_print(d, Look::Contents));
        assert_ne!(
            before_stat,
            dir_print(d, Look::Stat),
            "the swap is seen by metadata"
        );
    }

    /// The poll compares metadata first: a write in place that keeps the size must still show
    /// there, or the contents would never be hashed again until the periodic full look.
    #[test]
    fn metadata_sees_a_same_size_write_in_place() {
        use std::io::{Seek as _, Write as _};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, "mode: monitor").unwrap();
        let before = dir_print(dir.path(), Look::Stat);
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(b"mode: enforce").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap().len(), "mode: monitor".len());
        assert_ne!(before, dir_print(dir.path(), Look::Stat));
    }

    #[test]
    fn unchanged_tree_has_a_stable_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.yaml"), "rules: []").unwrap();
        for look in [Look::Stat, Look::Contents] {
            assert_eq!(dir_print(dir.path(), look), dir_print(dir.path(), look));
        }
    }
}
