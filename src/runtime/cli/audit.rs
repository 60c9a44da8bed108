//! `phi-gateway audit keygen` (the trail's signing and fingerprint keys, and the public key
//! for the compliance team) and `phi-gateway audit verify` (the chain, the signed
//! checkpoints and the time window of a trail). The work is in `crate::audit::{keys,
//! verify}`; this file turns it into the text the binary prints.

use std::path::Path;

use super::Refused;
use crate::audit::{keys, verify};

/// Writes the keys below `keys_dir` and the public key to `pubkey`; the text says what was
/// written and the `audit:` lines that use it.
pub fn keygen(keys_dir: &Path, pubkey: &Path) -> Result<String, Refused> {
    let k = keys::generate(keys_dir, pubkey).map_err(|e| Refused {
        code: 1,
        message: format!("phi-gateway audit keygen: {e}\n"),
    })?;
    Ok(format!(
        "wrote {} (0600)\nwrote {} (0600)\nwrote {} (public; give it to the compliance team)\n\
         key id {}\n\ngateway.yaml:\n  audit:\n    dir: /var/lib/phi-gateway/audit\n    \
         signing_key_file: {}\n    fingerprint_key_file: {}\n",
        k.signing_key.display(),
        k.fingerprint_key.display(),
        k.public_key.display(),
        k.key_id,
        k.signing_key.display(),
        k.fingerprint_key.display(),
    ))
}

/// Verifies the trail in `dir` with `pubkey` within `from`..`to` (RFC 3339): the report (text
/// or JSON) and whether the trail verified.
pub fn verify(
    dir: &Path,
    pubkey: &Path,
    from: Option<&str>,
    to: Option<&str>,
    json: bool,
) -> Result<(String, bool), Refused> {
    let usage = |m: String| Refused {
        code: 2,
        message: format!("phi-gateway audit verify: {m}\n"),
    };
    let mut window = verify::Window::default();
    for (arg, value, slot) in [
        ("--from", from, &mut window.from),
        ("--to", to, &mut window.to),
    ] {
        if let Some(v) = value {
            *slot = Some(verify::parse_time(v).map_err(|m| usage(format!("{arg}: {m}")))?);
        }
    }
    let key = keys::load_public_key(pubkey).map_err(|e| usage(e.to_string()))?;
    let report = verify::verify(dir, &key, &window).map_err(|e| usage(e.to_string()))?;
    let text = if json {
        serde_json::to_string_pretty(&report)
            .map(|s| format!("{s}\n"))
            .map_err(|e| usage(e.to_string()))?
    } else {
        report.render()
    };
    Ok((text, report.valid))
}
