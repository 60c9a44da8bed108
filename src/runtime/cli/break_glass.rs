//! `phi-gateway audit break-glass`: the after-the-fact review list of break-glass use, from a
//! verified audit trail (the records are built in `audit::review`). Nothing is listed from a
//! trail that does not verify: it may have been edited.

use std::path::Path;

use super::Refused;
use crate::audit::{keys, review, verify};

fn usage(m: String) -> Refused {
    Refused {
        code: 2,
        message: format!("phi-gateway audit break-glass: {m}\n"),
    }
}

/// The review of the trail in `dir` verified with `pubkey`, records at or after `since`
/// (RFC 3339), as text or JSON (`json`).
pub fn review(
    dir: &Path,
    pubkey: &Path,
    since: Option<&str>,
    json: bool,
) -> Result<String, Refused> {
    let since = since
        .map(verify::parse_time)
        .transpose()
        .map_err(|m| usage(format!("--since: {m}")))?;
    let key = keys::load_public_key(pubkey).map_err(|e| usage(e.to_string()))?;
    let review = review::break_glass(dir, &key, since).map_err(|e| usage(e.to_string()))?;
    if !review.report.valid {
        return Err(Refused {
            code: 1,
            message: format!(
                "{}phi-gateway audit break-glass: the trail does not verify; nothing listed\n",
                review.report.render()
            ),
        });
    }
    if json {
        serde_json::to_string_pretty(&review)
            .map(|s| format!("{s}\n"))
            .map_err(|e| usage(e.to_string()))
    } else {
        Ok(review.render())
    }
}
