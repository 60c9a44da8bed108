//! Form bodies and query strings: `name=value&…` pairs, names as context for their values.

use super::jose::scan_value;
use crate::engine::scan::{FieldCtx, Loc, Scanner, Segment};

/// Scans `name=value&…` pairs (query strings and form bodies): `+` and `%XX` are decoded,
/// names are scanned on their own and serve as field context for their values.
pub(crate) fn scan_form(
    sc: &mut Scanner<'_>,
    text: &str,
    prefix: &str,
    chain: &[&'static str],
    layers: usize,
) {
    if !sc.active() {
        return;
    }
    for (name, value) in form_urlencoded::parse(text.as_bytes()) {
        let loc = Loc::Named {
            prefix,
            name: &name,
        };
        sc.segment(&Segment {
            text: &name,
            loc,
            ctx: FieldCtx::default(),
            chain,
            sel: None,
        });
        let extra = [name.as_ref()];
        let ctx = FieldCtx {
            path: &[],
            extra: &extra,
        };
        scan_value(sc, &value, loc, ctx, chain, layers);
    }
}
