//! `multipart/*` bodies.

use super::*;

fn multipart(parts: &[(&str, &str)], preamble: &str) -> (String, Vec<u8>) {
    let boundary = "XyZ123boundary";
    let mut b = String::from(preamble);
    for (head, content) in parts {
        b.push_str(&format!("--{boundary}\r\n{head}\r\n\r\n{content}\r\n"));
    }
    b.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary=\"{boundary}\""),
        b.into_bytes(),
    )
}

#[test]
fn multipart_fields_and_transfer_encodings() {
    let (ct, b) = multipart(
        &[("Content-Disposition: form-data; name=\"ssn\"", "536221234")],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(
        has(&s, "us-ssn", "body:multipart:ssn", "multipart"),
        "{:?}",
        hits(&s)
    );
    let note = b64std(b"Patient SSN 536-22-1234, seen today.");
    let (ct, b) = multipart(
        &[(
            "Content-Disposition: form-data; name=\"note\"; filename=\"n.txt\"\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64",
            &note,
        )],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(
        hits(&s)
            .iter()
            .any(|(r, _, c)| r == "us-ssn" && c == "multipart>base64>text"),
        "{:?}",
        hits(&s)
    );
    let (ct, b) = multipart(
        &[(
            "Content-Disposition: form-data; name=\"q\"\r\nContent-Transfer-Encoding: quoted-printable",
            "SSN 536=2D22=2D=\r\n1234",
        )],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(
        has(
            &s,
            "us-ssn",
            "body:multipart:q",
            "multipart>quoted-printable"
        ),
        "{:?}",
        hits(&s)
    );
    // Smuggled before the first boundary.
    let (ct, b) = multipart(
        &[("Content-Disposition: form-data; name=\"a\"", "x")],
        "SSN 536-22-1234\r\n",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(rule_hits(&s, "us-ssn") > 0, "{:?}", hits(&s));
    // JSON part parsed as JSON.
    let (ct, b) = multipart(
        &[(
            "Content-Disposition: form-data; name=\"doc\"; filename=\"p.json\"\r\nContent-Type: application/fhir+json",
            r#"{"ssn":"536-22-1234"}"#,
        )],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(
        has(&s, "us-ssn", "body:multipart:doc:/ssn", "multipart>json"),
        "{:?}",
        hits(&s)
    );
    // Negative: a clean multipart upload with order numbers.
    let (ct, b) = multipart(
        &[
            ("Content-Disposition: form-data; name=\"order\"", "536221234"),
            (
                "Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Transfer-Encoding: base64",
                &b64std(b"order 536221234 shipped"),
            ),
        ],
        "",
    );
    let s = ok(body(Some(&ct), None, &b));
    assert!(s.findings.is_empty(), "{:?}", hits(&s));
}
