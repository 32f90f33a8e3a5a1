//! The audit trail (contract section 6): one line per record, and EMF counts per
//! invocation. Both are built as JSON here and written through `tracing`, whose
//! formatter ([`crate::logging`]) merges the `json` field into the line.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Applied,
    Unchanged,
    Stale,
    Rejected,
    Failed,
    Planned,
    /// Takes effect later: a schedule will deliver it (contract section 9).
    Scheduled,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Applied,
        Outcome::Unchanged,
        Outcome::Stale,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::Planned,
        Outcome::Scheduled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Stale => "stale",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Planned => "planned",
            Outcome::Scheduled => "scheduled",
        }
    }

    /// Whether SQS must see the record again (it is in `batchItemFailures`).
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Rejected | Outcome::Failed)
    }
}

/// The audit line of one record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLine {
    pub audit: bool,
    pub message_id: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub employee_id: Option<String>,
    pub user_name: Option<String>,
    pub outcome: Outcome,
    /// AWS changes made, in order (for `planned`: the changes a real run would make).
    pub actions: Vec<String>,
    /// Why it did not succeed: a stable code (`tampered`,
    /// `stale-leaver-on-active-user`) or, for the others, a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The sentence behind a coded reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every user acted on, when a leaver retired more than one of one employee.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// For `scheduled` (and a dry run of one): when the record takes effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
}

/// Reasons that are stable codes: alarms and people search for them.
pub const REASON_CODES: [&str; 2] = [
    crate::plan::TAMPERED,
    crate::plan::STALE_LEAVER_ON_ACTIVE_USER,
];

/// Splits `code: sentence` into the code and the sentence, for the coded reasons.
pub fn split_reason(reason: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(r) = reason else {
        return (None, None);
    };
    for code in REASON_CODES {
        if let Some(rest) = r.strip_prefix(code).and_then(|t| t.strip_prefix(": ")) {
            return (Some(code.to_owned()), Some(rest.to_owned()));
        }
    }
    (Some(r.to_owned()), None)
}

pub fn emit(line: &AuditLine) {
    let json = serde_json::to_string(line).unwrap_or_default();
    if line.outcome.is_failure() {
        tracing::error!(target: "audit", json = %json, "{} {}", line.outcome.as_str(), line.message_id);
    } else if line.outcome == Outcome::Stale && line.event_type.as_deref() == Some("employee.left")
    {
        // An offboarding that did nothing deserves a look.
        tracing::warn!(target: "audit", json = %json, "{} {}", line.outcome.as_str(), line.message_id);
    } else {
        tracing::info!(target: "audit", json = %json, "{} {}", line.outcome.as_str(), line.message_id);
    }
}

/// CloudWatch Embedded Metric Format: one count per outcome (zeros included, so
/// alarms see data points), namespace `HrProvisioner`.
pub fn metrics_json(counts: &BTreeMap<Outcome, u64>, timestamp_ms: u128) -> serde_json::Value {
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": "HrProvisioner",
                "Dimensions": [[]],
                "Metrics": Outcome::ALL.iter().map(|o| json!({"Name": o.as_str(), "Unit": "Count"})).collect::<Vec<_>>(),
            }]
        }
    });
    for o in Outcome::ALL {
        doc[o.as_str()] = json!(counts.get(&o).copied().unwrap_or(0));
    }
    doc
}

pub fn emit_metrics(counts: &BTreeMap<Outcome, u64>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let json = metrics_json(counts, now).to_string();
    tracing::info!(target: "emf", json = %json, "metrics");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coded_reasons_are_split_from_their_sentence() {
        assert_eq!(
            split_reason(Some("tampered: the tag is in the future")),
            (
                Some("tampered".into()),
                Some("the tag is in the future".into())
            )
        );
        assert_eq!(
            split_reason(Some("stale-leaver-on-active-user: newer mover")),
            (
                Some("stale-leaver-on-active-user".into()),
                Some("newer mover".into())
            )
        );
        assert_eq!(
            split_reason(Some("user x is outside USER_PATH")),
            (Some("user x is outside USER_PATH".into()), None)
        );
        assert_eq!(split_reason(None), (None, None));
    }

    #[test]
    fn emf_document_has_every_outcome() {
        let mut c = BTreeMap::new();
        c.insert(Outcome::Applied, 3);
        let v = metrics_json(&c, 1);
        assert_eq!(v["applied"], 3);
        assert_eq!(v["failed"], 0);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "HrProvisioner"
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            7
        );
    }
}
