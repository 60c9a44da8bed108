//! Loading and layering policy directories, like the rules: every `*.yaml`/`*.yml` of a
//! directory in file-name order; later directories may add roles, replace one
//! (`override: true`) or remove roles (`disable: [name]`), and set settings again.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::model::{
    Expect, Grant, Kind, OpSpec, PolicyTest, RawFile, RawGrant, RawTest, Role, Settings, Types,
};
use super::{Policy, PostCheck, Reason, Subject};
use crate::access::fhir::is_resource_type;
use crate::engine::source::{SourceError, Spanned, YamlDirError};

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A parse or validation error located in a policy file (`file:line:col: field: message`).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The directory could not be listed.
    #[error("{dir}: cannot read policy directory: {source}", dir = dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory holds no `*.yaml` / `*.yml` file.
    #[error("{dir}: no policy files (*.yaml, *.yml) found", dir = dir.display())]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
}

fn at<T>(s: &Spanned<T>) -> (usize, usize) {
    (s.referenced.line() as usize, s.referenced.column() as usize)
}

fn err<T>(file: &Path, s: &Spanned<T>, field: String, msg: String) -> PolicyError {
    let (l, c) = at(s);
    SourceError::new(file, l, c, field, msg).into()
}

impl Policy {
    /// Loads every policy file of `dir`.
    pub fn load_dir(dir: &Path) -> Result<Policy, PolicyError> {
        Policy::load_dirs(&[dir.to_path_buf()])
    }

    /// Loads layered policy directories (the first is the base).
    pub fn load_dirs(dirs: &[PathBuf]) -> Result<Policy, PolicyError> {
        let mut layers = Vec::with_capacity(dirs.len());
        for dir in dirs {
            layers.push(read_dir_sources(dir)?);
        }
        Policy::from_layers(&layers)
    }

    /// Loads in-memory sources, one layer: (file name for errors, YAML text).
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Policy, PolicyError> {
        Policy::from_layers(&[sources.to_vec()])
    }

    /// Loads layered in-memory sources.
    pub fn from_layers(layers: &[Vec<(PathBuf, String)>]) -> Result<Policy, PolicyError> {
        let mut settings = Settings::default();
        let mut roles: Vec<Role> = Vec::new();
        let mut permissions: Vec<(String, String, Role)> = Vec::new();
        let mut tests = Vec::new();
        let mut disabled: Vec<(PathBuf, Spanned<String>)> = Vec::new();
        for (layer_no, layer) in layers.iter().enumerate() {
            let mut this_layer: HashMap<String, (PathBuf, usize)> = HashMap::new();
            let mut settings_file: Option<PathBuf> = None;
            for (file, text) in layer {
                let raw: RawFile =
                    crate::engine::source::parse(file, text).map_err(without_span_segments)?;
                if let Some(s) = raw.settings {
                    if let Some(prev) = &settings_file {
                        return Err(err(
                            file,
                            &s,
                            "settings".into(),
                            format!(
                                "settings are already set in {} of the same directory",
                                prev.display()
                            ),
                        ));
                    }
                    settings_file = Some(file.clone());
                    let s = s.value;
                    if let Some(w) = s.without_roles {
                        settings.without_roles = w;
                    }
                    if let Some(r) = s.require_scopes {
                        settings.require_scopes = r;
                    }
                    if let Some(c) = s.capabilities {
                        settings.capabilities = c;
                    }
                    if let Some(types) = s.shared_types {
                        let mut set = BTreeSet::new();
                        for (k, t) in types.iter().enumerate() {
                            if !is_resource_type(&t.value) || t.value == "Patient" {
                                return Err(err(
                                    file,
                                    t,
                                    format!("settings.shared_types[{k}]"),
                                    format!(
                                        "`{}` is not an R4 resource type outside the patient \
                                         compartment (types are case-sensitive)",
                                        t.value
                                    ),
                                ));
                            }
                            if crate::access::compartment::in_compartment_type(&t.value) {
                                return Err(err(
                                    file,
                                    t,
                                    format!("settings.shared_types[{k}]"),
                                    format!(
                                        "`{}` can hold patient data (it is in the patient \
                                         compartment): it cannot be shared",
                                        t.value
                                    ),
                                ));
                            }
                            set.insert(t.value.clone());
                        }
                        settings.shared_types = set;
                    }
                }
                for (i, r) in raw.roles.into_iter().enumerate() {
                    let field = format!("roles[{i}]");
                    let name = r.value.name.value.trim().to_string();
                    let (line, col) = at(&r.value.name);
                    if name.is_empty() {
                        return Err(err(
                            file,
                            &r.value.name,
                            format!("{field}.name"),
                            "empty role name".into(),
                        ));
                    }
                    if let Some((pf, pl)) = this_layer.get(&name) {
                        return Err(SourceError::new(
                            file,
                            line,
                            col,
                            format!("{field}.name"),
                            format!(
                                "duplicate role `{name}`; first defined at {}:{pl}",
                                pf.display()
                            ),
                        )
                        .into());
                    }
                    this_layer.insert(name.clone(), (file.clone(), line));
                    let role = Role {
                        name: name.clone(),
                        grants: compile_grants(file, &field, &r.value.grants, &r)?,
                        operations: compile_ops(file, &field, &r.value.operations)?,
                        break_glass_eligible: r.value.break_glass_eligible,
                        file: file.clone(),
                        line,
                    };
                    let existing = roles.iter().position(|x| x.name == name);
                    match (existing, r.value.override_role) {
                        (Some(idx), true) if layer_no > 0 => roles[idx] = role,
                        (Some(idx), _) => {
                            return Err(SourceError::new(
                                file,
                                line,
                                col,
                                format!("{field}.name"),
                                format!(
                                    "duplicate role `{name}`; first defined at {}:{}{}",
                                    roles[idx].file.display(),
                                    roles[idx].line,
                                    if layer_no > 0 {
                                        " (set `override: true` to replace it)"
                                    } else {
                                        ""
                                    }
                                ),
                            )
                            .into())
                        }
                        (None, true) => {
                            return Err(err(
                                file,
                                &r.value.name,
                                format!("{field}.override"),
                                format!(
                                "`override: true` but no earlier policy directory defines `{name}`"
                            ),
                            ))
                        }
                        (None, false) => roles.push(role),
                    }
                }
                for (i, p) in raw.permissions.into_iter().enumerate() {
                    let field = format!("permissions[{i}]");
                    let claim = p.value.claim.value.clone();
                    let value = p.value.value.value.clone();
                    if claim.is_empty() || value.is_empty() {
                        return Err(err(
                            file,
                            &p,
                            field,
                            "`claim` and `value` must not be empty".into(),
                        ));
                    }
                    if permissions
                        .iter()
                        .any(|(c, v, _)| *c == claim && *v == value)
                    {
                        return Err(err(
                            file,
                            &p.value.value,
                            format!("{field}.value"),
                            format!("duplicate permissions entry `{claim}: {value}`"),
                        ));
                    }
                    let role = Role {
                        name: format!("{claim}:{value}"),
                        grants: compile_grants(file, &field, &p.value.grants, &p)?,
                        operations: compile_ops(file, &field, &p.value.operations)?,
                        break_glass_eligible: false,
                        file: file.clone(),
                        line: at(&p).0,
                    };
                    permissions.push((claim, value, role));
                }
                for d in raw.disable {
                    disabled.push((file.clone(), d));
                }
                for (i, t) in raw.tests.into_iter().enumerate() {
                    tests.push(compile_test(file, i, t)?);
                }
            }
        }
        for (k, (file, d)) in disabled.iter().enumerate() {
            match roles.iter().position(|r| r.name == d.value) {
                Some(idx) => {
                    roles.remove(idx);
                }
                None => {
                    return Err(err(
                        file,
                        d,
                        format!("disable[{k}]"),
                        format!("cannot disable `{}`: no role has this name", d.value),
                    ))
                }
            }
        }
        let all: Vec<(PathBuf, String)> = layers.iter().flatten().cloned().collect();
        Ok(Policy {
            settings,
            roles,
            permissions,
            tests,
            digest: digest(&all),
            sources: all.into_iter().map(|(f, _)| f).collect(),
        })
    }
}

fn compile_grants<T>(
    file: &Path,
    field: &str,
    raw: &[RawGrant],
    owner: &Spanned<T>,
) -> Result<Vec<Grant>, PolicyError> {
    let mut out = Vec::with_capacity(raw.len());
    for (g, grant) in raw.iter().enumerate() {
        if grant.types.is_empty() || grant.interactions.is_empty() {
            return Err(err(
                file,
                owner,
                format!("{field}.grants[{g}]"),
                "a grant needs at least one type and one interaction".into(),
            ));
        }
        let mut types = BTreeSet::new();
        let mut any = false;
        for (k, t) in grant.types.iter().enumerate() {
            if t.value == "*" {
                any = true;
            } else if is_resource_type(&t.value) {
                types.insert(t.value.clone());
            } else {
                return Err(err(
                    file,
                    t,
                    format!("{field}.grants[{g}].types[{k}]"),
                    format!(
                        "unknown resource type `{}` (R4 types are case-sensitive)",
                        t.value
                    ),
                ));
            }
        }
        let mut kinds = BTreeSet::new();
        for (k, i) in grant.interactions.iter().enumerate() {
            match Kind::parse(&i.value) {
                Some(kind) => {
                    kinds.insert(kind);
                }
                None => {
                    return Err(err(
                        file,
                        i,
                        format!("{field}.grants[{g}].interactions[{k}]"),
                        format!(
                            "unknown interaction `{}`; expected one of {}",
                            i.value,
                            Kind::NAMES
                        ),
                    ))
                }
            }
        }
        out.push(Grant {
            types: if any { Types::Any } else { Types::Some(types) },
            kinds,
        });
    }
    Ok(out)
}

fn compile_ops(
    file: &Path,
    field: &str,
    raw: &[Spanned<String>],
) -> Result<Vec<OpSpec>, PolicyError> {
    raw.iter()
        .enumerate()
        .map(|(k, o)| {
            OpSpec::parse(&o.value).ok_or_else(|| {
                err(
                    file,
                    o,
                    format!("{field}.operations[{k}]"),
                    format!(
                        "`{}` is not `$name`, `Type/$name` or `Type/[id]/$name` (Type an R4 type or `*`)",
                        o.value
                    ),
                )
            })
        })
        .collect()
}

fn compile_test(file: &Path, i: usize, t: Spanned<RawTest>) -> Result<PolicyTest, PolicyError> {
    let field = format!("tests[{i}]");
    let line = at(&t).0;
    let raw = t.value;
    if let Some(r) = &raw.reason {
        if !Reason::all().contains(&r.value.as_str()) {
            return Err(err(
                file,
                r,
                format!("{field}.reason"),
                format!(
                    "unknown reason `{}`; expected one of {}",
                    r.value,
                    Reason::all().join(", ")
                ),
            ));
        }
        if raw.expect.value == Expect::Allow && r.value != "allowed" {
            return Err(err(
                file,
                r,
                format!("{field}.reason"),
                "an `expect: allow` test can only have `reason: allowed`".into(),
            ));
        }
    }
    let post_check = match &raw.post_check {
        None => None,
        Some(p) => Some(match p.value.as_str() {
            "none" => PostCheck::None,
            "response" => PostCheck::Response,
            "target" => PostCheck::Target,
            _ => {
                return Err(err(
                    file,
                    p,
                    format!("{field}.post_check"),
                    format!(
                        "unknown post_check `{}`; expected none, response or target",
                        p.value
                    ),
                ))
            }
        }),
    };
    let body = raw.request.body.map(|b| match b {
        serde_json::Value::String(s) => s.into_bytes(),
        other => other.to_string().into_bytes(),
    });
    Ok(PolicyTest {
        name: raw.name.value,
        file: file.to_path_buf(),
        line,
        subject: Subject {
            scope: raw.subject.scope,
            roles: raw.subject.roles,
            permissions: raw.subject.permissions.unwrap_or(serde_json::Value::Null),
            patient: raw.subject.patient,
        },
        method: raw.request.method,
        url: raw.request.url,
        body,
        if_none_exist: raw.request.if_none_exist,
        expect: raw.expect.value,
        reason: raw.reason.map(|r| r.value),
        entries: raw.entries,
        post_check,
    })
}

/// Reads every `*.yaml` / `*.yml` file of `dir`, sorted by file name.
fn read_dir_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>, PolicyError> {
    crate::engine::source::read_yaml_dir(dir, "policy").map_err(|e| match e {
        YamlDirError::Dir(source) => PolicyError::Dir {
            dir: dir.to_path_buf(),
            source,
        },
        YamlDirError::Empty => PolicyError::Empty {
            dir: dir.to_path_buf(),
        },
        YamlDirError::File(e) => PolicyError::Source(e),
    })
}

/// `Spanned<T>` shows up in serde paths as a `value` segment; no policy field is called
/// `value` except `permissions[i].value`, which is a plain string and keeps its segment.
fn without_span_segments(mut e: SourceError) -> SourceError {
    let segs: Vec<&str> = e.field.split('.').collect();
    if segs.contains(&"value") {
        let mut out: Vec<&str> = Vec::with_capacity(segs.len());
        for (k, s) in segs.iter().enumerate() {
            let last = k + 1 == segs.len();
            let after_permission = out
                .last()
                .is_some_and(|p: &&str| p.starts_with("permissions["));
            if *s == "value" && !(last && after_permission) {
                continue;
            }
            out.push(s);
        }
        e.field = out.join(".");
    }
    e
}

fn digest(sources: &[(PathBuf, String)]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (file, text) in sources {
        let name = file.to_string_lossy();
        ctx.update(&(name.len() as u64).to_le_bytes());
        ctx.update(name.as_bytes());
        ctx.update(&(text.len() as u64).to_le_bytes());
        ctx.update(text.as_bytes());
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
