//! The scheduled audit inside Lambda: the same bootstrap tells an EventBridge
//! schedule (or `{"hr-iam-audit":"audit"}`) apart from an SQS batch, runs the
//! review, logs one WARN line per finding and one EMF document of counts.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde::Serialize;
use serde_json::{json, Value};

use super::model::{Code, Report};
use super::read::{Quiet, Reader};
use super::ReviewError;
use crate::config::Config;

/// The CloudWatch namespace of the audit's counts.
pub const NAMESPACE: &str = "HrProvisioner/Audit";

/// What one invocation is.
#[derive(Debug)]
pub enum Invocation {
    Audit,
    /// The credential lifecycle writer (contract section 11): its own schedule
    /// sends `{"hr-iam-lifecycle":"run"}`.
    Lifecycle,
    Sqs(SqsEvent),
}

/// The function's answer: an SQS batch gets exactly the `SqsBatchResponse` it
/// always had; an audit a small summary.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Sqs(SqsBatchResponse),
    Audit(Value),
}

/// Tells an audit request from an SQS batch. Anything that is not an audit
/// request is read as an SQS event, as before (an error if it is not one).
pub fn dispatch(payload: Value) -> Result<Invocation, serde_json::Error> {
    let scheduled = payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        && payload.get("source").and_then(Value::as_str) == Some("aws.events");
    let asked = payload.get("hr-iam-audit").and_then(Value::as_str) == Some("audit");
    if scheduled || asked {
        return Ok(Invocation::Audit);
    }
    if payload.get("hr-iam-lifecycle").and_then(Value::as_str) == Some("run") {
        return Ok(Invocation::Lifecycle);
    }
    serde_json::from_value(payload).map(Invocation::Sqs)
}

/// One EMF document: a count per finding code, zeros included (alarms need data
/// points), and `findings`, the total.
pub fn metrics_json(report: &Report, timestamp_ms: u128) -> Value {
    let names: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(["findings"])
        .collect();
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": names.iter().map(|n| json!({"Name": n, "Unit": "Count"})).collect::<Vec<_>>(),
            }]
        }
    });
    for c in Code::ALL {
        doc[c.as_str()] = json!(report.findings.iter().filter(|f| f.code == c).count());
    }
    doc["findings"] = json!(report.findings.len());
    doc
}

/// The summary the invocation returns (no user names: those are in the log).
pub fn summary_json(report: &Report) -> Value {
    json!({
        "hr-iam-audit": "audit",
        "users": report.summary.users,
        "secrets": report.summary.secrets,
        "findings": report.findings.len(),
        "by_code": report.summary.by_code,
        "calls": report.calls.as_ref().map(|c| c.total),
    })
}

/// Logs the report: one WARN line per finding, one line per gap, then the EMF.
pub fn log(report: &Report) {
    for f in &report.findings {
        let json = serde_json::to_string(f).unwrap_or_default();
        tracing::warn!(target: "review", json = %json, "{} {}", f.code.as_str(), f.subject());
    }
    for i in &report.incomplete {
        tracing::error!(target: "review", incomplete = %i, "audit incomplete");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let json = metrics_json(report, now).to_string();
    tracing::info!(target: "emf", json = %json, "metrics");
}

/// Runs the scheduled audit. A read that fails, or an incomplete audit (exit
/// status 2 of the command), is an invocation error, so the function's `Errors`
/// metric (and the alarm on it) sees it; its findings are logged first.
pub async fn scheduled(config: &Config, reader: &Reader) -> Result<Value, ReviewError> {
    match super::run(config, reader, &Quiet).await {
        Ok(report) => {
            log(&report);
            if report.incomplete.is_empty() {
                Ok(summary_json(&report))
            } else {
                Err(ReviewError::Incomplete(report.incomplete.join("; ")))
            }
        }
        Err(e) => {
            tracing::error!(target: "review", error = %e, "audit could not read AWS");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::model::Finding;

    #[test]
    fn schedules_and_explicit_requests_audit_everything_else_is_sqs() {
        let schedule = json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-26T00:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/audit"], "detail": {}
        });
        assert!(matches!(dispatch(schedule).unwrap(), Invocation::Audit));
        assert!(matches!(
            dispatch(json!({"hr-iam-audit": "audit"})).unwrap(),
            Invocation::Audit
        ));
        let sqs = json!({"Records": [{"messageId": "m1", "body": "{}", "attributes": {}, "messageAttributes": {}}]});
        match dispatch(sqs).unwrap() {
            Invocation::Sqs(e) => assert_eq!(e.records[0].message_id.as_deref(), Some("m1")),
            other => panic!("{other:?}"),
        }
        // Look-alikes are not audits: another source, another value.
        let other = json!({"detail-type": "Scheduled Event", "source": "custom.app"});
        assert!(dispatch(other).is_err());
        assert!(dispatch(json!({"hr-iam-audit": "plan"})).is_err());
        assert!(matches!(
            dispatch(json!({"hr-iam-lifecycle": "run"})).unwrap(),
            Invocation::Lifecycle
        ));
        assert!(dispatch(json!({"hr-iam-lifecycle": "audit"})).is_err());
    }

    #[test]
    fn an_sqs_answer_is_serialised_as_before() {
        let mut r = SqsBatchResponse::default();
        r.batch_item_failures.push(Default::default());
        r.batch_item_failures[0].item_identifier = "m1".into();
        assert_eq!(
            serde_json::to_value(Response::Sqs(r.clone())).unwrap(),
            serde_json::to_value(r).unwrap()
        );
    }

    #[test]
    fn emf_has_every_code_and_the_total() {
        let mut report = Report::default();
        report.findings.push(Finding::user(Code::NoMfa, "a", "x"));
        report.findings.push(Finding::user(Code::NoMfa, "b", "x"));
        let v = metrics_json(&report, 1);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        let metrics = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert_eq!(metrics.len(), Code::ALL.len() + 1);
        assert_eq!(v["no-mfa"], 2);
        assert_eq!(v["extra-grant"], 0);
        assert_eq!(v["findings"], 2);
    }
}
