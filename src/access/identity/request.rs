//! Where a request's bearer token is, and whether there is exactly one (RFC 6750 §2).
//!
//! Only the `Authorization: Bearer` header is accepted. A token in the query string
//! (`access_token=`, RFC 6750 §2.3) is refused because URLs end up in logs, histories and
//! audit trails; one in a form body (§2.2) is refused because the upstream could read it
//! instead of the verified one. Two tokens (two `Authorization` headers, or a header and a
//! query or body token) are refused: which one would the upstream trust?

use super::TokenError;

/// The token in the `Authorization` header values and the query string, if any. A
/// non-Bearer scheme (`Basic`) counts as no token.
pub fn bearer<'a>(
    mut authorization: impl Iterator<Item = &'a [u8]>,
    query: Option<&str>,
) -> Result<Option<&'a str>, TokenError> {
    let first = authorization.next();
    if authorization.next().is_some() {
        return Err(TokenError::Multiple);
    }
    let token = match first {
        None => None,
        Some(v) => {
            let v = std::str::from_utf8(v).map_err(|_| TokenError::Malformed)?;
            let v = v.trim_matches([' ', '\t']);
            match v.split_once([' ', '\t']) {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                    let t = rest.trim_start_matches([' ', '\t']);
                    // token68 (RFC 9110 §11.2): a JWS compact token is a subset of it.
                    let ok = !t.is_empty()
                        && t.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
                        });
                    if !ok {
                        return Err(TokenError::Malformed);
                    }
                    Some(t)
                }
                None if v.eq_ignore_ascii_case("bearer") => return Err(TokenError::Malformed),
                _ => None,
            }
        }
    };
    if query.is_some_and(query_has_token) {
        return Err(if token.is_some() {
            TokenError::Multiple
        } else {
            TokenError::InQuery
        });
    }
    Ok(token)
}

/// Whether a query string (or an `application/x-www-form-urlencoded` body) has an
/// `access_token` parameter, after percent-decoding its name (`access%5Ftoken` too).
pub fn query_has_token(query: &str) -> bool {
    form_has_token(query.as_bytes())
}

/// [`query_has_token`] for a form body.
pub fn form_has_token(form: &[u8]) -> bool {
    form_urlencoded::parse(form).any(|(k, _)| k.trim() == "access_token")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[&'static str]) -> impl Iterator<Item = &'static [u8]> {
        v.iter()
            .map(|s| s.as_bytes())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn finds_exactly_one_bearer_token() {
        assert_eq!(bearer(h(&["Bearer a.b.c"]), None), Ok(Some("a.b.c")));
        assert_eq!(
            bearer(h(&["bearer   a.b.c "]), Some("x=1")),
            Ok(Some("a.b.c"))
        );
        assert_eq!(bearer(h(&[]), None), Ok(None));
        assert_eq!(bearer(h(&["Basic dXNlcjpwdw=="]), None), Ok(None));
        assert_eq!(bearer(h(&["Bearer"]), None), Err(TokenError::Malformed));
        assert_eq!(bearer(h(&["Bearer a b"]), None), Err(TokenError::Malformed));
        assert_eq!(
            bearer(h(&["Bearer a\"b"]), None),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            bearer(h(&["Bearer a.b.c", "Bearer d.e.f"]), None),
            Err(TokenError::Multiple)
        );
    }

    #[test]
    fn refuses_query_tokens_and_two_tokens() {
        assert_eq!(
            bearer(h(&[]), Some("access_token=x")),
            Err(TokenError::InQuery)
        );
        assert_eq!(
            bearer(h(&[]), Some("a=1&access%5Ftoken=x")),
            Err(TokenError::InQuery)
        );
        assert_eq!(
            bearer(h(&["Bearer a.b.c"]), Some("access_token=x")),
            Err(TokenError::Multiple)
        );
        assert_eq!(bearer(h(&[]), Some("my_access_token=x")), Ok(None));
        assert!(form_has_token(b"grant=1&access_token=abc"));
        assert!(!form_has_token(b"token=abc"));
    }
}
