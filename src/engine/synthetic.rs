//! Synthetic FHIR traffic for the scan benchmarks and the fast-path agreement tests. Not part
//! of the supported API (hidden from the docs): one generator shared by `benches/scan.rs` and
//! the engine's tests, so that what is measured is what is proved sound.
//!
//! Everything here is made up: logical ids, encounter, order and accession numbers of a
//! fictional hospital's own systems, and NPIs that pass the NPI check digit but are generated
//! from a counter. No value is taken from a real record.

/// The namespace of the fictional hospital's identifier systems.
const SYSTEMS: &str = "http://hospital.example.org/fhir/sid";

/// A FHIR `collection` Bundle of about `size` bytes (at least one cycle of entries) the way an
/// EHR's traffic looks once the identifiers that are PHI are gone: Encounters, Conditions,
/// MedicationRequests and Observations with `identifier` elements of non-PHI systems
/// (encounter, order and accession numbers) and references to patients by logical id, and the
/// Practitioners (with their NPIs) and Organizations they name. No 10-digit identifier value
/// outside a provider resource, no `urn:oid:2.16.840.1.113883.4.*` system.
pub fn ehr_bundle(size: usize) -> String {
    let mut entries: Vec<String> = Vec::new();
    let mut len = 0usize;
    let mut i = 0u64;
    while len < size || entries.len() < 6 {
        let e = entry(i);
        len += e.len() + 1;
        entries.push(e);
        i += 1;
    }
    format!(
        r#"{{"resourceType":"Bundle","id":"ehr-{size}","type":"collection","entry":[{}]}}"#,
        entries.join(",")
    )
}

/// Entry `i` of [`ehr_bundle`]: the kinds cycle, ids and dates vary with `i`.
fn entry(i: u64) -> String {
    let (d, h, m) = (1 + i % 28, 8 + i % 10, i % 60);
    let pat = 1000 + i % 97;
    let enc = 40_000 + i / 6;
    let prac = i % 11;
    let resource = match i % 6 {
        0 => format!(
            r#"{{"resourceType":"Encounter","id":"enc-{enc}","meta":{{"versionId":"{v}","lastUpdated":"2024-05-{d:02}T{h:02}:{m:02}:00Z"}},"identifier":[{{"use":"official","system":"{SYSTEMS}/encounter-number","value":"E24-{enc:07}"}}],"status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB","display":"ambulatory"}},"type":[{{"coding":[{{"system":"http://snomed.info/sct","code":"185349003","display":"Encounter for check up"}}]}}],"subject":{{"reference":"Patient/pat-{pat}"}},"participant":[{{"individual":{{"reference":"Practitioner/prac-{prac}"}}}}],"period":{{"start":"2024-05-{d:02}T{h:02}:{m:02}:00-05:00","end":"2024-05-{d:02}T{h2:02}:{m:02}:00-05:00"}},"serviceProvider":{{"reference":"Organization/org-1"}}}}"#,
            v = 3 + i % 5,
            h2 = h + 1,
        ),
        1 => format!(
            r#"{{"resourceType":"Condition","id":"cond-{i}","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},"verificationStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}}]}},"category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"encounter-diagnosis"}}]}}],"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"}},{{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9"}}],"text":"Type 2 diabetes"}},"subject":{{"reference":"Patient/pat-{pat}"}},"encounter":{{"reference":"Encounter/enc-{enc}"}},"onsetDateTime":"2019-0{o}-{d:02}","recordedDate":"2024-05-{d:02}T{h:02}:{m:02}:00Z"}}"#,
            o = 1 + i % 9,
        ),
        2 => format!(
            r#"{{"resourceType":"MedicationRequest","id":"medrx-{i}","identifier":[{{"use":"official","system":"{SYSTEMS}/order-number","value":"ORD-{ord}"}}],"status":"active","intent":"order","medicationCodeableConcept":{{"coding":[{{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"860975","display":"24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"}}]}},"subject":{{"reference":"Patient/pat-{pat}"}},"encounter":{{"reference":"Encounter/enc-{enc}"}},"authoredOn":"2024-05-{d:02}","requester":{{"reference":"Practitioner/prac-{prac}"}},"dosageInstruction":[{{"sequence":1,"text":"Take 1 tablet by mouth once daily with the evening meal","timing":{{"repeat":{{"frequency":1,"period":1,"periodUnit":"d"}}}},"doseAndRate":[{{"doseQuantity":{{"value":500,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}}}}]}}],"dispenseRequest":{{"numberOfRepeatsAllowed":3,"quantity":{{"value":90,"unit":"tablet"}}}}}}"#,
            ord = 7_700_000 + i * 13,
        ),
        3 => format!(
            r#"{{"resourceType":"Observation","id":"obs-{i}","identifier":[{{"system":"{SYSTEMS}/accession","value":"ACC24-{acc:06}"}}],"status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2339-0","display":"Glucose [Mass/volume] in Blood"}}]}},"subject":{{"reference":"Patient/pat-{pat}"}},"encounter":{{"reference":"Encounter/enc-{enc}"}},"effectiveDateTime":"2024-05-{d:02}T{h:02}:{m:02}:00Z","issued":"2024-05-{d:02}T{h2:02}:{m:02}:00Z","valueQuantity":{{"value":{val},"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}},"referenceRange":[{{"low":{{"value":70,"unit":"mg/dL"}},"high":{{"value":99,"unit":"mg/dL"}}}}]}}"#,
            acc = 100_000 + i * 7,
            h2 = h + 1,
            val = 80 + i % 60,
        ),
        4 => format!(
            r#"{{"resourceType":"Practitioner","id":"prac-{prac}","identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{npi}"}}],"active":true,"name":[{{"family":"Synthetic{prac}","given":["Provider"],"prefix":["Dr."]}}],"qualification":[{{"code":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v2-0360","code":"MD","display":"Doctor of Medicine"}}]}}}}]}}"#,
            npi = npi(100_000 + prac),
        ),
        _ => format!(
            r#"{{"resourceType":"Organization","id":"org-{o}","identifier":[{{"system":"http://hl7.org/fhir/sid/us-npi","value":"{npi}"}},{{"system":"{SYSTEMS}/department","value":"DEPT-{o:03}"}}],"active":true,"type":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/organization-type","code":"prov","display":"Healthcare Provider"}}]}}],"name":"Example General Hospital Unit {o}"}}"#,
            o = 1 + i % 4,
            npi = npi(500_000 + i % 4),
        ),
    };
    format!(
        r#"{{"fullUrl":"urn:uuid:0c3e4a52-{i:04x}-4f1e-8b7a-5d2e{i:08x}","resource":{resource}}}"#
    )
}

/// A 10-digit NPI built from `n`: `1` and eight digits of `n`, then the check digit (Luhn over
/// the prefix `80840` and the nine digits).
pub fn npi(n: u64) -> String {
    let body = format!("1{:08}", n % 100_000_000);
    let full = format!("80840{body}");
    // Luhn: from the right of the payload, double every other digit starting with the first.
    let sum: u32 = full
        .bytes()
        .rev()
        .enumerate()
        .map(|(k, c)| {
            let d = u32::from(c - b'0');
            if k % 2 == 0 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}
