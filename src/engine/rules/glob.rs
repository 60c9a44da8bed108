//! Glob matching for routes, content types and field selectors.

/// Glob match where `*` matches any run of characters (including none) and everything else
/// matches itself. Linear in practice; used for routes, content types and field selectors.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    // Fast paths (this runs for every structural rule on every FHIR value): no `*` is plain
    // equality; otherwise the literal prefix and suffix must match, and one `*` is then enough.
    let Some(first) = pattern.find('*') else {
        return pattern == text;
    };
    let last = pattern.rfind('*').unwrap_or(first);
    let (prefix, suffix) = (
        pattern.get(..first).unwrap_or(""),
        pattern.get(last + 1..).unwrap_or(""),
    );
    if text.len() < prefix.len() + suffix.len()
        || !text.starts_with(prefix)
        || !text.ends_with(suffix)
    {
        return false;
    }
    if first == last {
        return true;
    }
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == b'*'))
}
