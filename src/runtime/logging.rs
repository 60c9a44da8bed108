//! Operational logging through `tracing`, as text or one JSON object per line.
//!
//! pingora logs through the `log` crate; the `tracing-log` bridge routes those records into
//! the same subscriber. `RUST_LOG` overrides the configured level. Nothing here ever formats a
//! request body, path, query string or header value: call sites log ids and decisions only.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        _ => builder.try_init(),
    };
}
