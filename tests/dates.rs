//! Effective dates (contract section 9) against moto's IAM, Secrets Manager, SES
//! and EventBridge Scheduler. moto stores schedules and never fires them: a test
//! delivers a schedule's stored input itself, as Scheduler would at its time.

mod common;

use common::*;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:hr-events.fifo";
const ROLE: &str = "arn:aws:iam::123456789012:role/hr-scheduler";
const GROUP: &str = "hr-provisioner";

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("formats")
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("valid")
}

/// An event of employee `id` (user `user`) with extra employee fields.
fn event(
    kind: &str,
    event_id: &str,
    at: OffsetDateTime,
    id: &str,
    user: &str,
    extra: &[(&str, String)],
) -> String {
    let mut v: Value =
        serde_json::from_str(&body(kind, event_id, &ts(at), id, user, "engineering")).unwrap();
    for (k, x) in extra {
        v["employee"][*k] = Value::String(x.clone());
    }
    v.to_string()
}

struct Env {
    moto: Moto,
    sdk: aws_config::SdkConfig,
    logs: Logs,
    _guard: CaptureGuard,
}

async fn setup() -> Env {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    // The stack creates the group; the function never does.
    aws_sdk_scheduler::Client::new(&sdk)
        .create_schedule_group()
        .name(GROUP)
        .send()
        .await
        .expect("schedule group");
    let (logs, _guard) = Logs::capture();
    Env {
        moto,
        sdk,
        logs,
        _guard,
    }
}

impl Env {
    async fn provisioner(
        &self,
        extra: &[(&str, &str)],
    ) -> hr_iam_provisioner::service::Provisioner {
        let mut env = vec![("SCHEDULE_TARGET_ARN", QUEUE), ("SCHEDULER_ROLE_ARN", ROLE)];
        env.extend_from_slice(extra);
        self.moto.provisioner(&env).await
    }

    /// (expression, input, message group, action after completion) of a schedule.
    async fn schedule(&self, name: &str) -> Option<(String, String, String, String)> {
        let out = aws_sdk_scheduler::Client::new(&self.sdk)
            .get_schedule()
            .group_name(GROUP)
            .name(name)
            .send()
            .await
            .ok()?;
        let t = out.target().expect("target");
        assert_eq!((t.arn(), t.role_arn()), (QUEUE, ROLE));
        assert_eq!(out.schedule_expression_timezone(), Some("UTC"));
        assert_eq!(
            out.flexible_time_window().map(|w| w.mode().as_str()),
            Some("OFF")
        );
        Some((
            out.schedule_expression().unwrap_or_default().to_owned(),
            t.input().unwrap_or_default().to_owned(),
            t.sqs_parameters()
                .and_then(|p| p.message_group_id())
                .unwrap_or_default()
                .to_owned(),
            out.action_after_completion()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
        ))
    }

    async fn schedule_names(&self) -> Vec<String> {
        let out = aws_sdk_scheduler::Client::new(&self.sdk)
            .list_schedules()
            .group_name(GROUP)
            .send()
            .await
            .expect("list");
        let mut names: Vec<String> = out
            .schedules()
            .iter()
            .filter_map(|s| s.name().map(str::to_owned))
            .collect();
        names.sort();
        names
    }
}

async fn send(
    p: &hr_iam_provisioner::service::Provisioner,
    id: &str,
    body: &str,
    group: &str,
) -> Vec<String> {
    failures(&run(p, sqs(&[(id, body, Some(group))])).await)
}

fn acts(a: &Value) -> Vec<String> {
    a["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_future_joiner_is_scheduled_and_its_input_delivered_twice_creates_the_user_once() {
    let env = setup().await;
    // Entered 20 days ago (accepted then: the age limit was 30 days), starting
    // tomorrow: provisioned PROVISION_LEAD (P1D) before, in 3 minutes.
    let scheduler_then = env.provisioner(&[("MAX_EVENT_AGE_DAYS", "30")]).await;
    let start = now() + Duration::days(1) + Duration::minutes(3);
    let entered = now() - Duration::days(20);
    let hire = event(
        "joined",
        "ev-hire",
        entered,
        "E2001",
        "ann.lee",
        &[("start_date", ts(start))],
    );
    assert!(send(&scheduler_then, "m1", &hire, "E2001").await.is_empty());
    let a = audit_of(&env.logs, "m1");
    let due = ts(start - Duration::days(1));
    assert_eq!(a["outcome"], "scheduled", "{a}");
    assert_eq!(a["due_at"], due.as_str());
    assert_eq!(acts(&a), ["CreateSchedule:hr-start-E2001"]);
    // Nothing in IAM, Secrets Manager or SES.
    let s = snapshot(&env.sdk, "ann.lee").await;
    assert!(!s.exists && s.secret.is_none() && !s.secret_scheduled);
    assert!(env.moto.mails().is_empty());
    assert_eq!(env.schedule_names().await, ["hr-start-E2001"]);
    let (expr, input, group, after) = env.schedule("hr-start-E2001").await.expect("schedule");
    let d = start - Duration::days(1);
    assert_eq!(expr, format!("at({})", &ts(d)[..19]));
    assert_eq!((group.as_str(), after.as_str()), ("E2001", "DELETE"));
    let delivered: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(delivered["event_id"], "ev-hire");
    assert_eq!(delivered["occurred_at"], ts(entered).as_str());
    assert_eq!(delivered["schedule"]["due_at"], due.as_str());
    assert_eq!(delivered["schedule"]["by_event_id"], "ev-hire");
    println!("stored input of hr-start-E2001: {input}");
    println!("audit (scheduled): {a}");

    // The same hire, sent again today: 20 days old, too old for MAX_EVENT_AGE_DAYS.
    let p = env.provisioner(&[]).await;
    assert_eq!(send(&p, "m-old", &hire, "E2001").await, ["m-old"]);
    assert!(audit_of(&env.logs, "m-old")["reason"]
        .as_str()
        .unwrap()
        .contains("MAX_EVENT_AGE_DAYS"));

    // Scheduler delivers the input (due now, within the clock-skew tolerance):
    // applied, its age counted from the due time.
    assert!(send(&p, "m2", &input, "E2001").await.is_empty());
    let a = audit_of(&env.logs, "m2");
    assert_eq!(a["outcome"], "applied", "{a}");
    let made = acts(&a);
    assert_eq!(made.first().map(String::as_str), Some("CreateUser"));
    assert_eq!(
        made.last().map(String::as_str),
        Some("DeleteSchedule:hr-start-E2001")
    );
    println!("audit (delivered): {a}");
    // Delivered twice (Scheduler retries): one user, one mail.
    assert!(send(&p, "m3", &input, "E2001").await.is_empty());
    let a = audit_of(&env.logs, "m3");
    assert_eq!(a["outcome"], "unchanged", "{a}");
    let s = snapshot(&env.sdk, "ann.lee").await;
    assert!(s.exists && s.secret.is_some());
    assert_eq!(s.tag("hr:last-event-id"), Some("ev-hire"));
    assert_eq!(s.tag("hr:start-date"), Some(ts(start).as_str()));
    assert_eq!(env.moto.mails().len(), 1);
    assert!(env.schedule_names().await.is_empty());
}

#[tokio::test]
async fn a_hire_rescinded_before_its_start_deletes_the_schedule_and_creates_nothing() {
    let env = setup().await;
    let p = env.provisioner(&[]).await;
    let start = now() + Duration::days(14);
    let hire = event(
        "joined",
        "ev-h",
        now() - Duration::hours(2),
        "E2002",
        "bo.chen",
        &[("start_date", ts(start))],
    );
    assert!(send(&p, "m1", &hire, "E2002").await.is_empty());
    assert_eq!(env.schedule_names().await, ["hr-start-E2002"]);
    let (_, input, _, _) = env.schedule("hr-start-E2002").await.unwrap();
    let rescind = event(
        "left",
        "ev-r",
        now() - Duration::hours(1),
        "E2002",
        "bo.chen",
        &[],
    );
    assert!(send(&p, "m2", &rescind, "E2002").await.is_empty());
    let a = audit_of(&env.logs, "m2");
    assert_eq!(a["outcome"], "applied", "{a}");
    assert_eq!(acts(&a), ["DeleteSchedule:hr-start-E2002"]);
    println!("audit (rescinded): {a}");
    assert!(env.schedule_names().await.is_empty());
    assert!(!snapshot(&env.sdk, "bo.chen").await.exists);
    // The rescind, redelivered, changes nothing.
    assert!(send(&p, "m3", &rescind, "E2002").await.is_empty());
    assert_eq!(audit_of(&env.logs, "m3")["outcome"], "unchanged");
    assert!(input.contains("\"due_at\""));
    assert!(env.moto.mails().is_empty());
}

#[tokio::test]
async fn an_end_date_schedules_the_leaver_a_moved_date_replaces_it_and_delivery_retires() {
    let env = setup().await;
    let p = env.provisioner(&[]).await;
    // A contractor ending in 2 minutes (a date that close still gets a schedule:
    // only one within a minute acts at once).
    let end = now() + Duration::minutes(2);
    let hire = event(
        "joined",
        "ev-c1",
        now() - Duration::hours(3),
        "E2003",
        "cy.diaz",
        &[("end_date", ts(end))],
    );
    assert!(send(&p, "m1", &hire, "E2003").await.is_empty());
    let a = audit_of(&env.logs, "m1");
    assert_eq!(a["outcome"], "applied");
    assert_eq!(
        acts(&a).last().map(String::as_str),
        Some("CreateSchedule:hr-end-E2003")
    );
    let s = snapshot(&env.sdk, "cy.diaz").await;
    assert!(s.exists);
    assert_eq!(s.tag("hr:end-date"), Some(ts(end).as_str()));
    let (expr, input, group, after) = env.schedule("hr-end-E2003").await.unwrap();
    assert_eq!(expr, format!("at({})", &ts(end)[..19]));
    assert_eq!((group.as_str(), after.as_str()), ("E2003", "DELETE"));
    let leaver: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(leaver["event_type"], "employee.left");
    assert_eq!(leaver["occurred_at"], ts(end).as_str());
    assert!(leaver["event_id"].as_str().unwrap().starts_with("end-"));
    assert_eq!(leaver["schedule"]["by_event_id"], "ev-c1");
    println!("stored input of hr-end-E2003: {input}");

    // A mover moves the date: the schedule is replaced (same name).
    let moved_end = now() + Duration::minutes(3);
    let moved = event(
        "changed",
        "ev-c2",
        now() - Duration::hours(2),
        "E2003",
        "cy.diaz",
        &[("end_date", ts(moved_end))],
    );
    assert!(send(&p, "m2", &moved, "E2003").await.is_empty());
    let a = audit_of(&env.logs, "m2");
    assert_eq!(a["outcome"], "applied", "{a}");
    assert!(
        acts(&a).contains(&"UpdateSchedule:hr-end-E2003".to_owned()),
        "{a}"
    );
    println!("audit (moved end date): {a}");
    assert_eq!(env.schedule_names().await, ["hr-end-E2003"]);
    let (expr, input2, _, _) = env.schedule("hr-end-E2003").await.unwrap();
    assert_eq!(expr, format!("at({})", &ts(moved_end)[..19]));
    // The first leaver, fired just before the move took effect and delivered
    // after it: stale (its record is older than the user's newest event).
    assert!(send(&p, "m3", &input, "E2003").await.is_empty());
    let a = audit_of(&env.logs, "m3");
    assert_eq!(a["outcome"], "stale", "{a}");
    println!("audit (replaced leaver delivered): {a}");
    assert!(snapshot(&env.sdk, "cy.diaz").await.tag("hr:status") == Some("active"));

    // The moved one, delivered at its time, retires the contractor.
    assert!(send(&p, "m4", &input2, "E2003").await.is_empty());
    let a = audit_of(&env.logs, "m4");
    assert_eq!(a["outcome"], "applied", "{a}");
    println!("audit (end date delivered): {a}");
    let s = snapshot(&env.sdk, "cy.diaz").await;
    assert_eq!(s.tag("hr:status"), Some("retired"));
    assert!(!s.login_profile && s.keys.is_empty());
    assert!(env.schedule_names().await.is_empty());
}

#[tokio::test]
async fn without_target_and_role_a_dated_record_is_rejected_and_nothing_changes() {
    let env = setup().await;
    let p = env.moto.provisioner(&[]).await;
    let hire = event(
        "joined",
        "ev-x",
        now() - Duration::hours(1),
        "E2004",
        "di.eze",
        &[("start_date", ts(now() + Duration::days(9)))],
    );
    assert_eq!(send(&p, "m1", &hire, "E2004").await, ["m1"]);
    let a = audit_of(&env.logs, "m1");
    assert_eq!(a["outcome"], "rejected");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("SCHEDULE_TARGET_ARN"),
        "{a}"
    );
    assert!(!snapshot(&env.sdk, "di.eze").await.exists);
    assert!(env.schedule_names().await.is_empty());
}

#[tokio::test]
async fn a_leaver_is_cut_off_even_when_its_schedules_cannot_be_read() {
    let env = setup().await;
    let p = env.provisioner(&[]).await;
    let hire = event(
        "joined",
        "ev-j",
        now() - Duration::hours(3),
        "E2005",
        "ed.fox",
        &[],
    );
    assert!(send(&p, "m1", &hire, "E2005").await.is_empty());
    // The same function, but Scheduler unreachable (a closed local port).
    let mut m = std::collections::HashMap::new();
    for (k, v) in [
        ("SENDER_EMAIL", SENDER),
        ("PROVISIONING_RULES", RULES),
        ("SCHEDULE_TARGET_ARN", QUEUE),
        ("SCHEDULER_ROLE_ARN", ROLE),
    ] {
        m.insert(k.to_owned(), v.to_owned());
    }
    let config = hr_iam_provisioner::config::Config::from_env(|k| m.get(k).cloned()).unwrap();
    let mut services = hr_iam_provisioner::wiring::services(&env.sdk, &config, true);
    let dead = aws_sdk_scheduler::config::Builder::from(&env.sdk)
        .endpoint_url("http://127.0.0.1:9")
        .build();
    services.scheduler = Some(hr_iam_provisioner::aws::scheduler::Scheduler::new(
        aws_sdk_scheduler::Client::from_conf(dead),
        GROUP.into(),
    ));
    let degraded = hr_iam_provisioner::service::Provisioner::new(config, services);
    let leave = event(
        "left",
        "ev-l",
        now() - Duration::hours(1),
        "E2005",
        "ed.fox",
        &[],
    );
    assert_eq!(send(&degraded, "m2", &leave, "E2005").await, ["m2"]);
    let a = audit_of(&env.logs, "m2");
    assert_eq!(a["outcome"], "failed", "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("schedules could not be read"),
        "{a}"
    );
    assert!(
        acts(&a).iter().any(|x| x.starts_with("PutUserPolicy")),
        "cut off: {a}"
    );
    let s = snapshot(&env.sdk, "ed.fox").await;
    assert_eq!(s.tag("hr:status"), Some("retired"));
    assert!(!s.login_profile);
}
