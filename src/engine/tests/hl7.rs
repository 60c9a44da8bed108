//! HL7 v2 messages.

use super::*;

#[test]
fn hl7_pid19_is_found_with_its_field_label() {
    let s = ok(body(Some("x-application/hl7-v2+er7"), None, ADT.as_bytes()));
    assert!(
        has(&s, "us-ssn", "body:hl7:PID-19", "hl7"),
        "{:?}",
        hits(&s)
    );
    // Sniffed without a content type too.
    let s = ok(body(None, None, ADT.as_bytes()));
    assert!(
        has(&s, "us-ssn", "body:hl7:PID-19", "hl7"),
        "{:?}",
        hits(&s)
    );
    // Negative: the same message without PID-19 has no SSN finding (the 12-digit timestamps
    // and the message control id are not SSNs).
    let clean = ADT.replace("|536221234|", "||");
    let s = ok(body(
        Some("x-application/hl7-v2+er7"),
        None,
        clean.as_bytes(),
    ));
    assert_eq!(rule_hits(&s, "us-ssn"), 0, "{:?}", hits(&s));
}

#[test]
fn hl7_custom_delimiters_and_escapes() {
    // `#` as field separator, `$` as escape: declared in MSH, honoured.
    let msg =
        "MSH#*!$%#APP#FAC\rPID#1##X*^^^*MR##DOE*JANE##############$X3533362D32322D31323334$\r";
    let s = ok(body(Some("x-application/hl7-v2+er7"), None, msg.as_bytes()));
    assert!(
        has(&s, "us-ssn", "body:hl7:PID-19", "hl7>hl7-escape"),
        "{:?}",
        hits(&s)
    );
    // Negative: the escape decodes to something that is not an SSN.
    let msg = "MSH#*!$%#APP#FAC\rPID#1##X*^^^*MR##DOE*JANE##############$X414243$\r";
    let s = ok(body(Some("x-application/hl7-v2+er7"), None, msg.as_bytes()));
    assert_eq!(rule_hits(&s, "us-ssn"), 0, "{:?}", hits(&s));
    // `\F\` inside a field is the field separator, not a split.
    let msg = "MSH|^~\\&|A\rNTE|1||SSN 536\\F\\22\\F\\1234\r";
    let s = ok(body(Some("x-application/hl7-v2+er7"), None, msg.as_bytes()));
    assert_eq!(
        rule_hits(&s, "us-ssn"),
        0,
        "536|22|1234 is not an SSN shape"
    );
}
