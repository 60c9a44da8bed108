//! Query strings, form bodies, headers and the URL path.

use super::*;

#[test]
fn form_bodies_and_queries() {
    let form = Some("application/x-www-form-urlencoded");
    let s = body(form, None, b"a=1&ssn=536%2D22%2D1234").expect("scans");
    assert!(has(&s, "us-ssn", "body:form:ssn", "form"), "{:?}", hits(&s));
    let s = body(form, None, b"note=SSN+536+22+1234").expect("scans");
    assert!(
        has(&s, "us-ssn", "body:form:note", "form"),
        "{:?}",
        hits(&s)
    );
    let s = body(form, None, b"ssn=536%252D22%252D1234").expect("scans");
    assert!(
        has(&s, "us-ssn", "body:form:ssn", "form>percent"),
        "{:?}",
        hits(&s)
    );
    assert!(body(form, None, b"order=536221234&x=y")
        .expect("scans")
        .findings
        .is_empty());

    let s = scan(Part::Query("ssn=536%2D22%2D1234"));
    assert!(has(&s, "us-ssn", "query:ssn", "query"), "{:?}", hits(&s));
    let s = scan(Part::Query("q=SSN+536+22+1234&page=2"));
    assert!(has(&s, "us-ssn", "query:q", "query"), "{:?}", hits(&s));
    let s = scan(Part::Query("ssn=536%252D22%252D1234"));
    assert!(
        has(&s, "us-ssn", "query:ssn", "query>percent"),
        "{:?}",
        hits(&s)
    );
    // `%3D` before the digits must not defeat boundaries.
    let s = scan(Part::Query("filter=ssn%253D536%252D22%252D1234"));
    assert!(
        has(&s, "us-ssn", "query:filter", "query>percent"),
        "{:?}",
        hits(&s)
    );
    assert!(scan(Part::Query("order=536221234&page=2"))
        .findings
        .is_empty());
}

#[test]
fn headers_use_their_name_as_context() {
    let s = scan(Part::Header {
        name: "x-patient-ssn",
        value: b"536221234",
    });
    assert!(
        has(&s, "us-ssn", "header:x-patient-ssn", ""),
        "{:?}",
        hits(&s)
    );
    let s = scan(Part::Header {
        name: "x-request-id",
        value: b"536221234",
    });
    assert!(s.findings.is_empty());
    let s = scan(Part::Header {
        name: "referer",
        value: b"https://portal/search?ssn=536%2D22%2D1234",
    });
    assert!(
        has(&s, "us-ssn", "header:referer", "percent"),
        "{:?}",
        hits(&s)
    );
}

#[test]
fn cookies_are_pairs_and_the_cookie_name_is_context() {
    let s = scan(Part::Header {
        name: "cookie",
        value: b"session=8f2a9c1e; ssn=536221234; theme=dark",
    });
    assert!(has(&s, "us-ssn", "header:cookie:ssn", ""), "{:?}", hits(&s));
    let s = scan(Part::Header {
        name: "cookie",
        value: b"pt_ssn=\"536%2D22%2D1234\"",
    });
    assert!(
        s.findings.iter().any(|f| f.rule_id == "us-ssn"),
        "{:?}",
        hits(&s)
    );
    // The same digits under a name that is no context: a session id, not an SSN.
    let s = scan(Part::Header {
        name: "cookie",
        value: b"session=536221234; theme=dark",
    });
    assert!(s.findings.is_empty(), "{:?}", hits(&s));
}

#[test]
fn ssn_in_the_url_path_is_found_and_plain_paths_are_not() {
    let s = scan(Part::Path("/patients/by-ssn/536-22-1234"));
    assert!(s.findings.iter().any(|f| f.rule_id == "us-ssn"), "{s:?}");
    assert!(s.findings.iter().all(|f| f.location.starts_with("path")));
    let s = scan(Part::Path("/patients/by-ssn/536%252D22%252D1234"));
    assert!(s.findings.iter().any(|f| f.rule_id == "us-ssn"), "{s:?}");
    let s = scan(Part::Path("/fhir/Observation/100000007/_history/2"));
    assert!(s.findings.is_empty(), "{s:?}");
}
