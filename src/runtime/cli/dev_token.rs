//! `phi-gateway dev-token`: the arguments (a clap `Args`, flattened by `src/main.rs`) and the
//! call into [`crate::runtime::demo_issuer::issue`]. Development only: it signs with the key
//! `phi-gateway demo` made in its data directory, for that demo's gateway only.

use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::demo_issuer::{self, DemoIssuerError, TokenRequest};

/// Print a signed access token from the demo's built-in issuer (development only).
///
/// The token is an ES256 JWT signed with DIR/keys/demo-issuer.key, which `phi-gateway demo
/// --data-dir DIR` makes on its first run; its `iss`, `aud` and maximum lifetime are read from
/// DIR/gateway.yaml, so the demo's gateway accepts it. It carries `iat`, `exp` (iat + --ttl) and
/// a random `jti`, plus the claims below. Only the token is printed (stdout), so
/// `TOKEN=$(phi-gateway dev-token …)` works.
///
/// Example, a patient app bound to pat-1: `phi-gateway dev-token --data-dir DIR --sub app-user
/// --patient pat-1 --scope 'patient/*.rs'`.
///
/// Exit codes: 0 printed; 1 no demo data in DIR (run `phi-gateway demo` first) or an unusable
/// key or configuration; 2 usage error (bad --ttl or --claim, --ttl over the issuer's maximum).
#[derive(Debug, clap::Args)]
#[command(long_about, max_term_width = 100)]
pub struct DevTokenArgs {
    /// The demo's data directory (the `--data-dir` given to `phi-gateway demo`, printed in its
    /// banner).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The `sub` claim: who the token is for (the audit record's `user_id`).
    #[arg(long, value_name = "SUBJECT")]
    pub sub: String,
    /// The `scope` claim: space-separated SMART scopes, v1 or v2 (`user/*.rs`,
    /// `patient/Observation.read`, `launch/patient openid fhirUser`). Quote it.
    #[arg(long, value_name = "SCOPES")]
    pub scope: Option<String>,
    /// The `patient` claim: the patient context. With `patient/` scopes every request must stay
    /// in this patient's compartment.
    #[arg(long, value_name = "ID")]
    pub patient: Option<String>,
    /// A role for the `roles` claim (repeat for several); the access policy maps roles to
    /// resource types and interactions (deploy/policy: clinician, nurse, billing, emergency).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// The `purpose_of_use` claim, a v3-PurposeOfUse code (`TREAT`, `EMER`, `ETREAT`, `BTG`);
    /// recorded in the audit record.
    #[arg(long, value_name = "CODE")]
    pub purpose_of_use: Option<String>,
    /// Lifetime: `90s`, `15m`, `1h` or seconds. At most the issuer's `max_lifetime_seconds`
    /// (3600 in the demo).
    #[arg(long, value_name = "DURATION", default_value = demo_issuer::DEFAULT_TTL, value_parser = demo_issuer::parse_ttl)]
    pub ttl: Duration,
    /// The `sid` claim: the session id. Tokens with the same sid share one session (automatic
    /// logoff after 15 idle minutes); without it each token is its own session.
    #[arg(long, value_name = "ID")]
    pub sid: Option<String>,
    /// Any other claim as name=JSON (repeatable): `--claim 'fhirUser="Practitioner/p-1"'`,
    /// `--claim auth_time=1767225600`, `--claim 'permissions={"ehr_read":["patient.*"]}'`.
    /// Claims with a flag of their own, and iss, aud, iat, exp, jti, are refused here.
    #[arg(long = "claim", value_name = "NAME=JSON", value_parser = demo_issuer::parse_claim)]
    pub claims: Vec<(String, serde_json::Value)>,
}

/// Signs the token `args` describe, issued now.
pub fn dev_token(args: &DevTokenArgs) -> Result<String, DemoIssuerError> {
    let req = TokenRequest {
        sub: args.sub.clone(),
        scope: args.scope.clone(),
        patient: args.patient.clone(),
        roles: args.roles.clone(),
        purpose_of_use: args.purpose_of_use.clone(),
        sid: args.sid.clone(),
        ttl: args.ttl,
        claims: args.claims.clone(),
    };
    demo_issuer::issue(&args.data_dir, &req, crate::access::identity::now_unix())
}
