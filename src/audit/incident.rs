//! The record of an incident the gateway raised (issue 12 §1: an access anomaly): a record of
//! its own in the same hash chain as the request records, so `phi-gateway audit verify`
//! checks it like any other and an investigator finds it between the requests it is about.
//!
//! Its request-record fields say what it is and hold nothing from a request:
//! `action_type: incident`, `decision` = the action (`alert`, `suspend`), `reason:
//! access_anomaly`, `user_id: principal:<key>` (the keyed state key, never a user id),
//! `request_id` = the incident id, `route: defence`, `method: -`.

use super::record::{AuditRecord, IncidentRecord};
use super::{writer, AuditLog};

impl AuditLog {
    /// The audit record of `incident`.
    pub fn incident_record(&self, incident: IncidentRecord) -> AuditRecord {
        AuditRecord {
            log_id: uuid::Uuid::new_v4().to_string(),
            user_id: format!("principal:{}", incident.principal),
            action_type: "incident".into(),
            resource_id: None,
            timestamp: writer::now_rfc3339(),
            ip_address: None,
            user_agent: None,
            request_id: incident.id.clone(),
            audit_header: None,
            route: "defence".into(),
            method: "-".into(),
            fhir_interaction: None,
            decision: incident.action.clone(),
            reason: Some("access_anomaly".into()),
            mode: None,
            rule_ids: vec![incident.rule.clone()],
            field_paths: Vec::new(),
            status: 0,
            bytes_in: 0,
            bytes_out: None,
            tls_version: None,
            config_version: String::new(),
            body_hmac: None,
            access: None,
            incident: Some(incident),
            response_leak: None,
            seq: 0,
            prev_hash: String::new(),
        }
    }
}
