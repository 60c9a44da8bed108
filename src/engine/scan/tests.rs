use std::cmp::Ordering;

use super::findings::natural_cmp;
use super::keywords::word_boundaries;
use super::matching::{best_per_cluster, Candidate};
use super::segment::{safe_segment, Loc, PathElem};

#[test]
fn safe_segments() {
    for ok in ["ssn", "identifier", "_x", "a.b-c", "v12", "value_1"] {
        assert_eq!(safe_segment(ok), ok);
    }
    for bad in [
        "536-22-1234",
        "",
        "1abc",
        "x123",
        "a b",
        "ключ",
        &"a".repeat(65),
    ] {
        assert_eq!(safe_segment(bad), "*", "{bad}");
    }
}

#[test]
fn pointer_rendering_sanitizes() {
    let path = [
        PathElem::Key("identifier"),
        PathElem::Index(0),
        PathElem::Key("536-22-1234"),
    ];
    let loc = Loc::Pointer {
        prefix: "body:",
        path: &path,
    };
    assert_eq!(loc.render(0), "body:/identifier/0/*");
    assert_eq!(Loc::Offset("body").render(17), "body@17");
}

#[test]
fn word_breaks() {
    let t = "duplicate patient_ssn SSN536221234 patientSsn x";
    let find = |w: &str| t.find(w).map(|i| word_boundaries(t, i, i + w.len()));
    assert_eq!(find("lic"), Some(false));
    assert_eq!(find("ssn"), Some(true));
    assert_eq!(find("SSN"), Some(true));
    assert_eq!(find("Ssn"), Some(true));
    assert_eq!(find("patient"), Some(true));
    assert_eq!(find("ati"), Some(false));
}

#[test]
fn natural_order() {
    assert_eq!(natural_cmp("body@9", "body@10"), Ordering::Less);
    assert_eq!(natural_cmp("body:/a/10", "body:/a/2"), Ordering::Greater);
    assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
    assert_eq!(natural_cmp("a01", "a1"), Ordering::Greater);
}

#[test]
fn clusters() {
    let mut c = vec![
        Candidate {
            start: 0,
            end: 10,
            score: 0.5,
            pattern: 0,
            context: None,
        },
        Candidate {
            start: 2,
            end: 8,
            score: 0.9,
            pattern: 0,
            context: None,
        },
        Candidate {
            start: 20,
            end: 25,
            score: 0.6,
            pattern: 0,
            context: None,
        },
    ];
    let best = best_per_cluster(&mut c);
    assert_eq!(best.len(), 2);
    assert!((best.first().map_or(0.0, |c| c.score) - 0.9).abs() < 1e-6);
}
