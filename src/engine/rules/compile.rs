//! Validation and compilation: one raw YAML rule into its [`RuleInfo`] and [`CompiledRule`].
//! Every error names the file, the line and the field (`rules[2].patterns[0].regex`).

use std::path::Path;

use aho_corasick::{AhoCorasickBuilder, MatchKind};
use regex::RegexBuilder;

use super::compiled::{
    CompiledContext, CompiledPattern, CompiledRule, EncryptionReq, Exception, ExceptionValue,
    Scope, SelectorProbe,
};
use super::fingerprint::{parse_fingerprint, ParsedFingerprint};
use super::model::{RawContext, RawException, RawPattern, RawRule, RawTestCase, RuleInfo};
use super::selftest::{InlineTest, TestInput};
use crate::engine::source::{SourceError, Spanned};
use crate::engine::validate::Validator;

/// Default characters of text before a match searched for hotwords.
const DEFAULT_WINDOW_BEFORE: usize = 50;
/// Default characters of text after a match searched for hotwords.
const DEFAULT_WINDOW_AFTER: usize = 20;
/// Google DLP caps hotword proximity at 1000 characters; larger windows are a config mistake.
const MAX_WINDOW: u64 = 1000;
/// Presidio's context enhancement: +0.35, floored at 0.4.
const DEFAULT_BOOST: f64 = 0.35;
pub(crate) const CONTEXT_FLOOR: f32 = 0.4;
const DEFAULT_MIN_SCORE: f64 = 0.5;

/// Envelope formats the classifier recognises.
pub(crate) const ENCRYPTION_FORMATS: &[&str] =
    &["jwe", "pgp", "age", "vault", "sops", "aws-esdk", "tink"];

pub(crate) fn compile_rule(
    file: &Path,
    i: usize,
    spanned: Spanned<RawRule>,
) -> Result<(RuleInfo, CompiledRule, Vec<String>), SourceError> {
    let (line, _) = location(&spanned);
    let raw = spanned.value;
    let f = |name: &str| format!("rules[{i}].{name}");
    if !valid_id(&raw.id.value) {
        return Err(err_at(
            file,
            &raw.id,
            f("id"),
            "id must match ^[a-z0-9][a-z0-9-]{1,63}$ (lowercase letters, digits, hyphens)",
        ));
    }
    let raw_patterns: &[Spanned<RawPattern>] = raw.patterns.as_ref().map_or(&[], |p| &p.value);
    if raw_patterns.is_empty() && raw.require_encrypted.is_none() {
        let msg = "a rule needs at least one pattern (or `require_encrypted`)";
        return Err(match &raw.patterns {
            Some(p) => err_at(file, p, f("patterns"), msg),
            None => SourceError::new(file, line, location_col(line), f("patterns"), msg),
        });
    }
    let mut patterns = Vec::with_capacity(raw_patterns.len());
    for (j, p) in raw_patterns.iter().enumerate() {
        patterns.push(compile_pattern(file, &f(&format!("patterns[{j}]")), p)?);
    }
    let mut validators = Vec::new();
    for (j, v) in raw.validators.iter().enumerate() {
        match Validator::from_name(v.value.trim()) {
            Some(val) => validators.push(val),
            None => {
                return Err(err_at(
                    file,
                    v,
                    f(&format!("validators[{j}]")),
                    format!(
                        "unknown validator `{}`; valid validators: {}",
                        v.value,
                        Validator::names()
                    ),
                ))
            }
        }
    }
    let context = match &raw.context {
        Some(c) => Some(compile_context(file, &f("context"), c)?),
        None => None,
    };
    let min_score = match &raw.min_score {
        None => DEFAULT_MIN_SCORE,
        Some(m) if (0.0..=1.0).contains(&m.value) => m.value,
        Some(m) => {
            return Err(err_at(
                file,
                m,
                f("min_score"),
                "min_score must be between 0 and 1",
            ))
        }
    } as f32;
    // A rule that cannot reach min_score even with context is dead weight and almost always a
    // mistake (e.g. a 0.1 pattern and no context words).
    let best = patterns
        .iter()
        .map(|p| match &context {
            Some(c) => (p.score + c.boost).clamp(CONTEXT_FLOOR, 1.0),
            None => p.score,
        })
        .fold(0.0f32, f32::max);
    if !patterns.is_empty() && best + 1e-6 < min_score {
        return Err(SourceError::new(
            file,
            line,
            location_col(line),
            f("min_score"),
            format!(
                "no pattern can reach min_score {min_score} (best possible score {best:.2}); \
                 raise a pattern score or add context"
            ),
        ));
    }
    let mut keywords = Vec::new();
    for (j, k) in raw.keywords.iter().enumerate() {
        let kw = k.value.trim();
        if kw.is_empty() {
            return Err(err_at(
                file,
                k,
                f(&format!("keywords[{j}]")),
                "keyword must not be empty",
            ));
        }
        keywords.push(kw.to_ascii_lowercase());
    }
    let scope = compile_scope(file, &f("where"), &raw.scope)?;
    let encryption = match &raw.require_encrypted {
        None => None,
        Some(req) => {
            if scope.fields.is_empty() {
                return Err(err_at(
                    file,
                    req,
                    f("require_encrypted"),
                    "`require_encrypted` needs field selectors in `where` (json:, fhir:, hl7:, \
                     form:, multipart:) naming the fields that must be encrypted",
                ));
            }
            let mut formats = Vec::new();
            for (k, fm) in req.value.formats.iter().enumerate() {
                let v = fm.value.trim().to_ascii_lowercase();
                if !ENCRYPTION_FORMATS.contains(&v.as_str()) {
                    return Err(err_at(
                        file,
                        fm,
                        f(&format!("require_encrypted.formats[{k}]")),
                        format!(
                            "unknown format `{v}`; known formats: {}",
                            ENCRYPTION_FORMATS.join(", ")
                        ),
                    ));
                }
                formats.push(v);
            }
            Some(EncryptionReq {
                formats,
                enc: req.value.enc.iter().map(|e| e.trim().to_string()).collect(),
            })
        }
    };
    let mut exceptions = Vec::new();
    for (j, e) in raw.exceptions.iter().enumerate() {
        exceptions.push(compile_exception(file, &f(&format!("exceptions[{j}]")), e)?);
    }
    let mut tests = Vec::new();
    if let Some(t) = raw.tests {
        for (j, case) in t.should_match.into_iter().enumerate() {
            tests.push(compile_test(
                file,
                f(&format!("tests.match[{j}]")),
                case,
                true,
            )?);
        }
        for (j, case) in t.no_match.into_iter().enumerate() {
            tests.push(compile_test(
                file,
                f(&format!("tests.no_match[{j}]")),
                case,
                false,
            )?);
        }
    }
    let category = raw.category.map(|c| c.value);
    if category.is_none() && scope.request {
        // Only a rule that never sees a request (an error signature) may go without a Safe
        // Harbor letter: every finding in a request is reported as one of the 18.
        return Err(SourceError::new(
            file,
            line,
            location_col(line),
            f("category"),
            "a rule that applies to requests needs a Safe Harbor `category` (A-R); only \
             `where: [response]` rules may omit it",
        ));
    }
    let min_digits = validators.iter().map(|v| v.min_digits()).max().unwrap_or(0);
    let info = RuleInfo {
        id: raw.id.value,
        description: raw.description,
        category,
        severity: raw.severity,
        mode: raw.mode,
        file: file.to_path_buf(),
        line,
    };
    let compiled = CompiledRule {
        patterns,
        validators,
        context,
        min_score,
        scope,
        has_keywords: !keywords.is_empty(),
        first_keyword: keywords.first().map(|k| k.to_lowercase()),
        min_digits,
        exceptions,
        encryption,
        tests,
    };
    Ok((info, compiled, keywords))
}

fn compile_pattern(
    file: &Path,
    field: &str,
    raw: &Spanned<RawPattern>,
) -> Result<CompiledPattern, SourceError> {
    let p = &raw.value;
    let re_field = format!("{field}.regex");
    // Messages name the pattern when it has a name: easier to find than an index.
    let named = |msg: &str| match &p.name {
        Some(n) => format!("pattern `{n}`: {msg}"),
        None => msg.to_string(),
    };
    let regex = RegexBuilder::new(&p.regex.value)
        .size_limit(4 << 20)
        .build()
        .map_err(|e| {
            if uses_lookaround_or_backref(&p.regex.value) {
                err_at(
                    file,
                    &p.regex,
                    re_field.clone(),
                    "lookaround ((?=, (?!, (?<=, (?<!) and backreferences (\\1, \\k<name>) are \
                     unsupported: patterns run on a linear-time engine. Use `boundary: digit` or \
                     `boundary: alnum` for edges, `same_separators: true` for repeated \
                     delimiters, or a validator",
                )
            } else {
                err_at(
                    file,
                    &p.regex,
                    re_field.clone(),
                    named(&format!("invalid regex: {}", regex_message(&e))),
                )
            }
        })?;
    if regex.is_match("") {
        return Err(err_at(
            file,
            &p.regex,
            re_field,
            named("the regex matches the empty string, so it would match everywhere"),
        ));
    }
    if !(0.0..=1.0).contains(&p.score.value) {
        return Err(err_at(
            file,
            &p.score,
            format!("{field}.score"),
            named("score must be between 0 and 1"),
        ));
    }
    let value_group = regex.capture_names().position(|n| n == Some("value"));
    Ok(CompiledPattern {
        name: p
            .name
            .clone()
            .unwrap_or_else(|| field.rsplit('.').next().unwrap_or("pattern").to_string()),
        regex,
        value_group,
        score: p.score.value as f32,
        boundary: p.boundary,
        same_separators: p.same_separators,
        quote_free: quote_free(&p.regex.value),
        escape_free: free_of(&p.regex.value, ESCAPED),
        needs: crate::engine::fastpath::Needs::of_regex(&p.regex.value),
        scan: regex_automata::meta::Regex::builder()
            .configure(
                regex_automata::meta::Config::new()
                    .auto_prefilter(false)
                    .nfa_size_limit(Some(4 << 20)),
            )
            .build(&p.regex.value)
            .ok(),
    })
}

/// Whether a regex can never consume `"` and has no look-around assertions (see
/// [`CompiledPattern::quote_free`]). Anything the parser does not accept counts as not
/// quote-free.
pub(crate) fn quote_free(src: &str) -> bool {
    free_of(src, b"\"")
}

/// The characters a JSON string escape the whole-body check takes decodes to (`\"`, `\\`,
/// `\n`, `\r`, `\t`; see [`CompiledPattern::escape_free`]).
pub(crate) const ESCAPED: &[u8] = b"\"\\\n\r\t";

/// Whether a regex can never consume any of the ASCII bytes `set` and has no look-around
/// assertions. Anything the parser does not accept counts as not free.
pub(crate) fn free_of(src: &str, set: &[u8]) -> bool {
    use regex_syntax::hir::{Class, Hir, HirKind};
    fn ok(h: &Hir, set: &[u8]) -> bool {
        match h.kind() {
            HirKind::Empty => true,
            HirKind::Literal(l) => !l.0.iter().any(|c| set.contains(c)),
            HirKind::Class(Class::Unicode(c)) => !c.ranges().iter().any(|r| {
                set.iter()
                    .any(|&b| r.start() <= char::from(b) && char::from(b) <= r.end())
            }),
            HirKind::Class(Class::Bytes(c)) => !c
                .ranges()
                .iter()
                .any(|r| set.iter().any(|&b| r.start() <= b && b <= r.end())),
            HirKind::Look(_) => false,
            HirKind::Repetition(r) => ok(&r.sub, set),
            HirKind::Capture(c) => ok(&c.sub, set),
            HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().all(|h| ok(h, set)),
        }
    }
    regex_syntax::Parser::new()
        .parse(src)
        .is_ok_and(|h| ok(&h, set))
}

fn compile_context(
    file: &Path,
    field: &str,
    raw: &Spanned<RawContext>,
) -> Result<CompiledContext, SourceError> {
    let c = &raw.value;
    let mut words = Vec::new();
    for (k, w) in c.words.value.iter().enumerate() {
        let word = w.value.trim();
        if word.is_empty() {
            return Err(err_at(
                file,
                w,
                format!("{field}.words[{k}]"),
                "context word must not be empty",
            ));
        }
        words.push(word.to_ascii_lowercase());
    }
    if words.is_empty() {
        return Err(err_at(
            file,
            &c.words,
            format!("{field}.words"),
            "context needs at least one word",
        ));
    }
    let window = |w: &Option<Spanned<u64>>, name: &str, default: usize| match w {
        None => Ok(default),
        Some(s) if s.value <= MAX_WINDOW => Ok(usize::try_from(s.value).unwrap_or(default)),
        Some(s) => Err(err_at(
            file,
            s,
            format!("{field}.{name}"),
            format!("{name} must be at most {MAX_WINDOW} characters"),
        )),
    };
    let window_before = window(&c.window_before, "window_before", DEFAULT_WINDOW_BEFORE)?;
    let window_after = window(&c.window_after, "window_after", DEFAULT_WINDOW_AFTER)?;
    let boost = match &c.boost {
        None => DEFAULT_BOOST,
        Some(b) if (0.0..=1.0).contains(&b.value) => b.value,
        Some(b) => {
            return Err(err_at(
                file,
                b,
                format!("{field}.boost"),
                "boost must be between 0 and 1",
            ))
        }
    };
    let first_word = words[0].clone();
    let automaton = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(&words)
        .map_err(|e| err_at(file, &c.words, format!("{field}.words"), e.to_string()))?;
    let mut probe_order: Vec<usize> = (0..words.len()).collect();
    probe_order.sort_by_key(|&i| words.get(i).map_or(0, String::len));
    let parts = crate::engine::fastpath::WordSet::new(words.iter().flat_map(|w| w.split(' ')));
    Ok(CompiledContext {
        words: automaton,
        probe_order,
        parts,
        word_list: words,
        window_before,
        window_after,
        boost: boost as f32,
        required: c.required,
        first_word,
    })
}

/// Field selector kinds accepted in `where` and `exceptions.fields`.
const FIELD_KINDS: &[&str] = &[
    "json:",
    "fhir:",
    "hl7:",
    "form:",
    "multipart:",
    "query:",
    "header:",
];

fn valid_selector(v: &str) -> bool {
    FIELD_KINDS
        .iter()
        .any(|k| v.strip_prefix(k).is_some_and(|rest| !rest.is_empty()))
}

fn compile_scope(
    file: &Path,
    field: &str,
    raw: &Option<Spanned<Vec<Spanned<String>>>>,
) -> Result<Scope, SourceError> {
    let Some(spanned) = raw else {
        return Ok(Scope::everywhere());
    };
    if spanned.value.is_empty() {
        return Err(err_at(
            file,
            spanned,
            field.to_string(),
            "`where` must list at least one part (or be omitted for all parts)",
        ));
    }
    let mut scope = Scope::default();
    let mut parts = false;
    for (k, s) in spanned.value.iter().enumerate() {
        let v = s.value.trim();
        let bad = |msg: String| err_at(file, s, format!("{field}[{k}]"), msg);
        match v {
            // Directions, like limits, add no part: a response has only its body.
            "request" => {
                scope.request = true;
                continue;
            }
            "response" => {
                scope.response = true;
                scope.response_explicit = true;
                continue;
            }
            "query" => scope.query = true,
            "body" => scope.body = true,
            "header" => scope.all_headers = true,
            _ => {
                if let Some(name) = v.strip_prefix("header:") {
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b))
                    {
                        return Err(bad(format!("invalid header name in `{v}`")));
                    }
                    scope.headers.push(name.to_ascii_lowercase());
                } else if let Some(ct) = v.strip_prefix("content-type:") {
                    if ct.trim().is_empty() {
                        return Err(bad("`content-type:` needs a media type glob".into()));
                    }
                    scope.content_types.push(ct.trim().to_ascii_lowercase());
                    continue;
                } else if let Some(l) = v.strip_prefix("fhir-limit:") {
                    // A limit, like content-type and route: it adds no part.
                    let l = l.trim();
                    if l.is_empty() {
                        return Err(bad(
                            "`fhir-limit:` needs a FHIR address glob (`Patient.*`, `*.note.text`)"
                                .into(),
                        ));
                    }
                    scope.fhir_limits.push(format!("fhir:{l}"));
                    continue;
                } else if let Some(r) = v.strip_prefix("route:") {
                    if r.trim().is_empty() {
                        return Err(bad("`route:` needs a route name glob".into()));
                    }
                    scope.routes.push(r.trim().to_string());
                    continue;
                } else if valid_selector(v) && !v.starts_with("query:") {
                    scope.fields.push(v.to_string());
                    continue;
                } else {
                    return Err(bad(format!(
                        "unknown part `{v}`; expected one of: request, response, query, body, \
                         header, header:<name>, json:<pointer>, fhir:<Resource.path>, hl7:<SEG-n>, \
                         form:<field>, multipart:<part>, content-type:<type>, route:<name>, \
                         fhir-limit:<Resource.path> (`*` is a wildcard)"
                    )));
                }
            }
        }
        parts = true;
    }
    if !scope.request && !scope.response {
        // No direction named: requests, and the bodies of responses the leak guard scans (a
        // PHI detector must fire on an error page quoting an SSN too).
        scope.request = true;
        scope.response = true;
    }
    scope.probes = scope.fields.iter().map(|f| SelectorProbe::new(f)).collect();
    scope.needs_addr = scope
        .fields
        .iter()
        .any(|f| !f.starts_with("fhir:") && !f.starts_with("hl7:"));
    if !scope.fields.is_empty() {
        // Field selectors address the body.
        scope.body = true;
    } else if !parts {
        // Only content types / routes / FHIR limits: every part.
        scope.query = true;
        scope.body = true;
        scope.all_headers = true;
    }
    Ok(scope)
}

fn compile_exception(
    file: &Path,
    field: &str,
    raw: &Spanned<RawException>,
) -> Result<Exception, SourceError> {
    let e = &raw.value;
    if e.name.trim().is_empty() {
        return Err(err_at(
            file,
            raw,
            format!("{field}.name"),
            "an exception needs a name",
        ));
    }
    if e.routes.is_empty() && e.fields.is_empty() && e.values.is_empty() {
        return Err(err_at(
            file,
            raw,
            field.to_string(),
            "an exception needs at least one of `routes`, `fields`, `values` (it would \
             otherwise switch the rule off; use `mode: off` for that)",
        ));
    }
    for (k, f) in e.fields.iter().enumerate() {
        if !valid_selector(f.value.trim()) {
            return Err(err_at(
                file,
                f,
                format!("{field}.fields[{k}]"),
                format!(
                    "`{}` is not a field selector; use json:<pointer>, fhir:<Resource.path>, \
                     hl7:<SEG-n>, form:<field>, multipart:<part>, query:<param> or \
                     header:<name>",
                    f.value
                ),
            ));
        }
    }
    let mut values = Vec::with_capacity(e.values.len());
    for (k, v) in e.values.iter().enumerate() {
        let text = v.value.trim().to_ascii_lowercase();
        let at = format!("{field}.values[{k}]");
        match parse_fingerprint(&text) {
            ParsedFingerprint::Keyed { key_id } => {
                let (line, column) = location(v);
                values.push(ExceptionValue {
                    key_id: key_id.to_string(),
                    fingerprint: text.clone(),
                    file: file.to_path_buf(),
                    line,
                    column,
                    field: at,
                });
            }
            ParsedFingerprint::Legacy => {
                return Err(err_at(
                    file,
                    v,
                    at,
                    "this fingerprint has no key id: it was made with the public key of \
                     earlier versions and can be reversed by trying every value; recompute it \
                     with `phi-gateway scan --explain --fingerprint-key KEY_FILE` \
                     (`hmac-sha256:<key id>:<32 hex digits>`)",
                ));
            }
            ParsedFingerprint::Invalid => {
                return Err(err_at(
                    file,
                    v,
                    at,
                    "values are fingerprints `hmac-sha256:<key id>:<32 hex digits>` as printed \
                     by `phi-gateway scan --explain --fingerprint-key KEY_FILE`, never the value \
                     itself",
                ));
            }
        }
    }
    Ok(Exception {
        name: e.name.trim().to_string(),
        routes: e.routes.iter().map(|r| r.trim().to_string()).collect(),
        fields: e
            .fields
            .iter()
            .map(|f| f.value.trim().to_string())
            .collect(),
        values,
    })
}

fn compile_test(
    file: &Path,
    field: String,
    raw: Spanned<RawTestCase>,
    expect_match: bool,
) -> Result<InlineTest, SourceError> {
    let line = location(&raw).0;
    let mut route = None;
    let mut response = false;
    let input = match raw.value {
        RawTestCase::Text(t) => TestInput::Text(t),
        RawTestCase::Object(o) => {
            route = o.route.clone();
            let kinds = [
                o.text.is_some(),
                o.body.is_some(),
                o.response.is_some(),
                o.query.is_some(),
                o.header.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            let bad = |msg: &str| SourceError::new(file, line, 0, field.clone(), msg);
            const ONE_OF: &str =
                "a test object needs exactly one of: text, body, response, query, header";
            if kinds != 1 {
                return Err(bad(ONE_OF));
            }
            if o.content_type.is_some() && o.body.is_none() && o.response.is_none() {
                return Err(bad(
                    "`content_type` only applies to `body` and `response` tests",
                ));
            }
            response = o.response.is_some();
            match (o.text, o.body.or(o.response), o.query, o.header) {
                (Some(t), ..) => TestInput::Text(t),
                (_, Some(body), ..) => TestInput::Body {
                    body,
                    content_type: o.content_type,
                },
                (_, _, Some(q), ..) => TestInput::Query(q),
                (_, _, _, Some(line)) => match line.split_once(':') {
                    Some((name, value)) if !name.trim().is_empty() => TestInput::Header {
                        name: name.trim().to_ascii_lowercase(),
                        value: value.trim_start().to_string(),
                    },
                    _ => return Err(bad("a `header` test is a header line, `name: value`")),
                },
                _ => return Err(bad(ONE_OF)),
            }
        }
    };
    Ok(InlineTest {
        expect_match,
        line,
        input,
        route,
        response,
    })
}

pub(crate) fn location<T>(s: &Spanned<T>) -> (usize, usize) {
    (s.referenced.line() as usize, s.referenced.column() as usize)
}

/// Column placeholder for errors that are about a whole rule.
fn location_col(line: usize) -> usize {
    usize::from(line > 0)
}

fn err_at<T>(file: &Path, s: &Spanned<T>, field: String, msg: impl Into<String>) -> SourceError {
    SourceError::at(file, s, field, msg)
}

fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    (2..=64).contains(&b.len())
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter().all(ok_char)
}

/// On a regex compile failure, explain the two unsupported features rule authors reach for.
fn uses_lookaround_or_backref(re: &str) -> bool {
    let b = re.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => {
                if matches!(b.get(i + 1), Some(b'1'..=b'9' | b'k')) {
                    return true;
                }
                i += 2;
                continue;
            }
            b'(' => {
                let rest = b.get(i + 1..i + 4).unwrap_or(b.get(i + 1..).unwrap_or(&[]));
                if rest.starts_with(b"?=")
                    || rest.starts_with(b"?!")
                    || rest.starts_with(b"?<=")
                    || rest.starts_with(b"?<!")
                {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// The last line of a regex error (the crate renders the pattern and a caret above it).
fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid regex")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}
