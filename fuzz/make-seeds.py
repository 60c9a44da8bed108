#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/seeds/<target>/<name>.

Small synthetic inputs (the test SSN 536-22-1234 and published example shapes only) that start
each target inside the interesting syntax. Re-run after changing a target's input layout:
    python3 fuzz/make-seeds.py
"""

import base64
import gzip
import os
import shutil
import subprocess
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
RULES = os.path.join(HERE, "..", "rules")

SSN = b"536-22-1234"
PATIENT = (
    b'{"resourceType":"Patient","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn",'
    b'"value":"536-22-1234"}],"name":[{"family":"Example","given":["Alex"]}],'
    b'"birthDate":"1950-02-03","telecom":[{"system":"phone","value":"617-555-0123"}]}'
)
HL7 = (
    b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000||ADT^A01|MSG1|P|2.5\r"
    b"PID|1||12345^^^HOSP^MR~536221234^^^SSA^SS||EXAMPLE^ALEX||19500203|U|||"
    b"1 MAIN ST^^BOSTON^MA^02139||(617)555-0123|||||AC555444444|536-22-1234|S99985931^MA\r"
    b"NK1|1|EXAMPLE^JO|SPO||\\X3533362D32322D31323334\\\r"
)
HL7_CUSTOM = b"MSH#*!$%#APP\rPID###1*2*3*4*SS##NAME*ALEX###$F$536$F$22-1234\r"
MULTIPART = (
    b"preamble 536-22-1234\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="ssn"\r\n\r\n'
    b"536-22-1234\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="doc"; filename="p.json"\r\n'
    b"Content-Type: application/fhir+json\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PATIENT)
    + b"\r\n--XyZ\r\n"
    b'Content-Disposition: form-data; name="qp"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"SSN=3A 536=2D22=2D=\r\n1234\r\n"
    b"--XyZ\r\n"
    b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n"
    b"--inner\r\nContent-Type: x-application/hl7-v2+er7\r\n\r\n" + HL7 + b"\r\n--inner--\r\n"
    b"\r\n--XyZ--\r\nepilogue"
)
JWS = b"eyJhbGciOiJIUzI1NiJ9." + base64.urlsafe_b64encode(b'{"ssn":"536-22-1234"}').rstrip(b"=") + b".c2ln"
JWE = (
    b"eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..SGVsbG9Xb3JsZDEy."
    + base64.urlsafe_b64encode(bytes(range(48))).rstrip(b"=")
    + b"."
    + base64.urlsafe_b64encode(bytes(range(16))).rstrip(b"=")
)


def raw_deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zstd(data):
    try:
        return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)

    # decode_content: [mode, pick, body]; mode bit 0 = round trip. ENCODINGS index in pick.
    write("decode_content", "gzip", b"\x00\x01" + gzip.compress(PATIENT))
    write("decode_content", "zlib", b"\x00\x02" + zlib.compress(PATIENT))
    write("decode_content", "raw-deflate", b"\x00\x02" + raw_deflate(PATIENT))
    write("decode_content", "multi-member-gzip", b"\x00\x05" + gzip.compress(b"a ") + gzip.compress(SSN))
    write("decode_content", "stacked", b"\x00\x07" + gzip.compress(gzip.compress(PATIENT)))
    write("decode_content", "bomb", b"\x00\x01" + gzip.compress(b"\0" * (3 << 20)))
    write("decode_content", "truncated", b"\x00\x01" + gzip.compress(PATIENT)[:-7])
    z = zstd(PATIENT)
    if z:
        write("decode_content", "zstd", b"\x00\x04" + z)
    write("decode_content", "roundtrip", b"\x01\x00" + PATIENT)
    write("decode_content", "roundtrip-stacked", b"\x05\x8b" + PATIENT)

    # decode_text: percent, entities, Unicode, quoted-printable, HL7 escapes.
    write("decode_text", "percent", b"ssn=536%2D22%2D1234 %u0035%253%36 %FF%E2%80")
    write("decode_text", "entities", b"&#53;&#x33;&#0054;-22-1234 &amp;&lt;&nbsp;&#x10FFFF; &#xD800;")
    write("decode_text", "unicode", "５３６－２２－１２３４ ٥٣٦ 536\u200b-22\u20111234 \ufdfa".encode())
    write("decode_text", "qp", b"SSN=3A 536=2D22=\r\n-1234 =XY =\n")
    write("decode_text", "hl7", b"MSH|^~\\&|A\r\\X3533362D\\22\\F\\1234\\S\\\\E\\\\.br\\open\\X")

    # decode_base64: runs in text and JOSE tokens.
    write("decode_base64", "run", b"note " + base64.b64encode(b"SSN 536-22-1234") + b" end")
    write("decode_base64", "url", base64.urlsafe_b64encode(b"\xfb\xff ssn 536221234").rstrip(b"="))
    write("decode_base64", "jws", JWS)
    write("decode_base64", "jwe", JWE)
    write("decode_base64", "pgp", b"-----BEGIN PGP MESSAGE-----\n\nwcBMA0\n=abcd\n-----END PGP MESSAGE-----\n")
    write("decode_base64", "vault", b"vault:v1:" + base64.b64encode(bytes(range(40))))

    # decode_json_string.
    write("decode_json_string", "escapes", b'{"a":"\\u0035\\u0033\\u0036-22-1234","b":[1,"x\\/y"],"a":null}')
    write("decode_json_string", "surrogates", b"\\ud83d\\ude00 text \\u00e9\\n\\t")
    write("decode_json_string", "patient", PATIENT)

    # Inspectors: [flags, body].
    for flag in (b"\x00", b"\x01"):
        tag = "explain" if flag == b"\x01" else "plain"
        write("inspect_json", "patient-" + tag, flag + PATIENT)
    write("inspect_json", "jws-value", b"\x00" + b'{"token":"' + JWS + b'","enc":"' + JWE + b'"}')
    write("inspect_json", "deep", b"\x00" + b"[" * 80 + b'"536-22-1234"' + b"]" * 80)
    write("inspect_json", "numbers", b'\x00{"ssn":536221234,"f":1.23456789e8,"n":-5}')
    # fast_path_agrees: bodies the whole-body check takes, with and without PHI (a narrative
    # with the escapes it reads, one it refuses, a clean Bundle, the Patient).
    write("fast_path_agrees", "patient", PATIENT)
    write("fast_path_agrees", "narrative",
          b'{"resourceType":"Observation","text":{"status":"generated","div":"<div xmlns=\\"http://www.w3.org/1999/xhtml\\">'
          b'<p>SSN\\n536221234</p>\\r\\n<p>\\"ok\\"\\t</p></div>"},"status":"final"}')
    write("fast_path_agrees", "refused-escape", b'{"note":"SSN 536\\u002D22-1234","x":"a\\/b"}')
    write("fast_path_agrees", "clean-bundle",
          b'{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation",'
          b'"id":"obs-1","meta":{"versionId":"100000007","lastUpdated":"2024-03-01T10:00:00Z"},"status":"final"}}]}')
    write("inspect_hl7", "adt", b"\x00" + HL7)
    write("inspect_hl7", "custom-delims", b"\x01" + HL7_CUSTOM)
    write("inspect_multipart", "form-data", b"\x00" + MULTIPART)
    write("inspect_form", "form", b"\x00q=x&ssn=536+22+1234&note=%35%33%36%2D22%2D1234&t=" + JWS)

    # engine_body: [ct index, enc index, flags, body]; flags bit 1 = we encode.
    write("engine_body", "json-gzip", b"\x01\x01\x00" + gzip.compress(PATIENT))
    write("engine_body", "hl7-br-ours", b"\x04\x03\x02" + HL7)
    write("engine_body", "multipart", b"\x05\x00\x01" + MULTIPART)
    write("engine_body", "utf16", b"\x08\x00\x00" + "SSN 536-22-1234".encode("utf-16-le"))
    write("engine_body", "sniff-json", b"\x00\x00\x00" + PATIENT)

    # http_request.
    write("http_request", "content-length",
          b"POST /fhir/Patient?ssn=536%2D22%2D1234 HTTP/1.1\r\nHost: ehr\r\n"
          b"Content-Type: application/fhir+json\r\nX-Patient: 536-22-1234\r\n"
          b"Authorization: Bearer " + JWS + b"\r\n"
          b"Content-Length: " + str(len(PATIENT)).encode() + b"\r\n\r\n" + PATIENT)
    write("http_request", "chunked",
          b"POST http://ehr/x HTTP/1.1\nTransfer-Encoding: chunked\nContent-Encoding: gzip\n\n"
          + b"%x\n" % len(gzip.compress(SSN)) + gzip.compress(SSN) + b"\n0\n\n")
    write("http_request", "get", b"GET /patients/by-ssn/536-22-1234 HTTP/1.0\r\n\r\n")

    # token_parse: [query length, query, Authorization value].
    b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    claims = b64u(b'{"iss":"https://idp.example","aud":"ehr","sub":"u1","iat":1799999990,"exp":1800000600}')
    for name, header in [
        ("eddsa", b'{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}'),
        ("es256", b'{"alg":"ES256","kid":"k2"}'),
        ("none", b'{"alg":"none"}'),
        ("jku", b'{"alg":"EdDSA","kid":"k1","jku":"https://evil.example/"}'),
    ]:
        write("token_parse", name, b"\x00Bearer " + b64u(header) + b"." + claims + b"." + b64u(bytes(64)))
    write("token_parse", "query", b"\x0eaccess_token=xBearer a.b.c")

    # rules_load: [flags, yaml]; flags bit 0 = layer over a small base file.
    for name in sorted(os.listdir(RULES)):
        if name.endswith(".yaml"):
            with open(os.path.join(RULES, name), "rb") as f:
                write("rules_load", name, b"\x00" + f.read())
    write("rules_load", "override",
          b"\x01disable: [base-ssn]\nrules:\n  - id: base-ssn\n    override: true\n    category: G\n"
          b"    severity: low\n    patterns:\n      - regex: '(?P<value>[0-9]{9})'\n        score: 0.9\n")

    # access_scope: a scope claim.
    write("access_scope", "v1-v2", b"openid fhirUser launch/patient patient/Observation.read user/*.cruds")
    write("access_scope", "qualified",
          b"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category%7Claboratory")
    write("access_scope", "bad-order", b"patient/Observation.sr */*.* system/observation.rs")

    # access_fhir: [method index, target, "\n", body].
    write("access_fhir", "search", b"\x00/fhir/Observation?subject=Patient/pat-1,Patient%2Fpat-2&_has:Group:member:_id=g\n")
    write("access_fhir", "traversal", b"\x00/fhir/Patient/pat-1/%2e%2e/pat-2?%255Fhas=x\n")
    write("access_fhir", "create", b"\x01/fhir/Observation\n"
          b'{"resourceType":"Observation","subject":{"reference":"Patient/pat-1"}}')
    write("access_fhir", "transaction", b"\x01/fhir\n"
          b'{"resourceType":"Bundle","type":"transaction","entry":['
          b'{"request":{"method":"GET","url":"Patient/pat-2"}},'
          b'{"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation",'
          b'"subject":{"reference":"Patient/pat-1"}}}]}')

    # access_policy: [flags, yaml]; flags bit 0 = layer over the shipped policy.
    with open(os.path.join(HERE, "..", "deploy", "policy", "default.yaml"), "rb") as f:
        write("access_policy", "default.yaml", b"\x00" + f.read())
    write("access_policy", "override",
          b"\x01disable: [billing]\nroles:\n  - name: nurse\n    override: true\n    grants:\n"
          b"      - types: [Observation]\n        interactions: [read]\n")


if __name__ == "__main__":
    main()
