//! The SQS batch: records run concurrently (bounded), except that records of one
//! FIFO message group, or naming one user, run one after another in batch order.
//! A record that fails for a reason that may pass (throttling, a transient error)
//! is run again within the invocation while its deadline allows, rather than handed
//! back to SQS to wait out the visibility timeout. A record that still fails stops
//! the rest of its FIFO group. The answer lists exactly the records that were not
//! fully applied.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use crate::apply::ActionLog;
use crate::audit::{emit, emit_metrics, split_reason, AuditLine, Outcome};
use crate::aws::queue::Release;
use crate::aws::{pace, with_notes, AwsError, Budget, ErrorKind, RecordNotes};
use crate::event::{check_window, parse_body, HrEvent, Rejection};
use crate::service::{Provisioner, Report};
use time::OffsetDateTime;

/// Time kept back from the Lambda deadline to log, count and answer.
const MARGIN: Duration = Duration::from_millis(1500);
/// Used when the runtime gives no deadline (tests, tools).
const DEFAULT_TIME: Duration = Duration::from_secs(60);
/// Runs of one record within the invocation, at most (the first included).
const MAX_RUNS: u32 = 4;
/// A record is not run again with less time than this left: it could not finish,
/// and SQS's redelivery does the same job.
const RERUN_MIN_TIME: Duration = Duration::from_secs(3);

struct Record {
    index: usize,
    message_id: String,
    group: Option<String>,
    parsed: Result<HrEvent, Rejection>,
    /// Where the record came from and its receipt: to release it when handed back.
    release: Option<Release>,
}

/// Turns the runtime's deadline (epoch milliseconds) into the records' deadline.
pub fn deadline_from(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let left = if deadline_ms > now_ms {
        Duration::from_millis(deadline_ms - now_ms).saturating_sub(MARGIN)
    } else {
        DEFAULT_TIME
    };
    Instant::now() + left
}

/// Groups record indexes into lanes that must run in order: connected by a shared
/// FIFO message group, user name or employee id (one employee, one user: two
/// records of one employee under different names may act on the same user).
fn lanes(records: &[Record]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..records.len()).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut first: HashMap<String, usize> = HashMap::new();
    for r in records {
        let keys = [
            r.group.as_ref().map(|g| format!("group:{g}")),
            r.parsed
                .as_ref()
                .ok()
                .map(|e| format!("user:{}", e.user_name)),
            r.parsed
                .as_ref()
                .ok()
                .map(|e| format!("employee:{}", e.employee.employee_id)),
        ];
        for key in keys.into_iter().flatten() {
            match first.get(&key) {
                Some(&j) => {
                    let (a, b) = (root(&mut parent, r.index), root(&mut parent, j));
                    parent[a.max(b)] = a.min(b);
                }
                None => {
                    first.insert(key, r.index);
                }
            }
        }
    }
    let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..records.len() {
        let r = root(&mut parent, i);
        by_root.entry(r).or_default().push(i);
    }
    by_root.into_values().collect()
}

impl Provisioner {
    pub async fn handle_batch(
        &self,
        event: SqsEvent,
        function_arn: &str,
        deadline: Instant,
    ) -> SqsBatchResponse {
        let records: Vec<Record> = event
            .records
            .into_iter()
            .enumerate()
            .map(|(index, m)| to_record(index, m))
            .collect();
        let lanes = lanes(&records);
        let results: Vec<(usize, Outcome, bool)> = futures::stream::iter(lanes)
            .map(|lane| self.run_lane(&records, lane, function_arn, deadline))
            .buffer_unordered(self.config.max_concurrency)
            .flat_map(futures::stream::iter)
            .collect()
            .await;

        let mut counts: BTreeMap<Outcome, u64> = BTreeMap::new();
        let mut failed: Vec<usize> = Vec::new();
        let mut handed_back: Vec<Release> = Vec::new();
        for (i, o, back) in results {
            *counts.entry(o).or_default() += 1;
            if o.is_failure() {
                failed.push(i);
                if back {
                    handed_back.extend(records[i].release.clone());
                }
            }
        }
        emit_metrics(&counts);
        self.release(&handed_back, deadline).await;
        failed.sort_unstable();
        let mut resp = SqsBatchResponse::default();
        resp.batch_item_failures = failed
            .into_iter()
            .map(|i| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = records[i].message_id.clone();
                f
            })
            .collect();
        resp
    }

    /// Records handed back untouched are made visible again at once; on any
    /// error they wait out the visibility timeout, as before (WARN).
    async fn release(&self, records: &[Release], deadline: Instant) {
        let (Some(queue), false) = (&self.queue, records.is_empty()) else {
            return;
        };
        match queue.release(records, &Budget::until(deadline)).await {
            Ok(n) => tracing::info!(
                released = n,
                "records handed back untouched are visible again at once"
            ),
            Err(e) => tracing::warn!(error = %e,
                "records handed back untouched could not be released: they wait out the queue's visibility timeout"),
        }
    }

    /// Each record's index, outcome, and whether it was handed back untouched
    /// (or held behind such a record of its FIFO group).
    async fn run_lane(
        &self,
        records: &[Record],
        lane: Vec<usize>,
        arn: &str,
        deadline: Instant,
    ) -> Vec<(usize, Outcome, bool)> {
        let lane = in_event_order(records, lane);
        // Failed FIFO groups, and whether their failure was a hand-back.
        let mut failed_groups: HashMap<&str, bool> = HashMap::new();
        let mut out = Vec::with_capacity(lane.len());
        for i in lane {
            let r = &records[i];
            let log = ActionLog::default();
            let blocked = r
                .group
                .as_deref()
                .and_then(|g| failed_groups.get(g).map(|back| (g, *back)));
            let report = match (blocked, admit(r, self.config.max_event_age_days)) {
                (Some((g, back)), _) => Report {
                    handed_back: back,
                    ..Report::new(
                        Outcome::Failed,
                        Some(format!(
                            "not applied: an earlier record of FIFO message group {g} failed in this batch"
                        )),
                    )
                },
                (None, Err(why)) => Report::new(Outcome::Rejected, Some(why)),
                (None, Ok(ev)) => self.run_record(ev, arn, deadline, &log).await,
            };
            if report.outcome.is_failure() {
                if let Some(g) = r.group.as_deref() {
                    failed_groups.entry(g).or_insert(report.handed_back);
                }
            }
            emit(&audit_line(r, &report, &log, self.config.dry_run));
            out.push((i, report.outcome, report.handed_back));
        }
        out
    }

    /// One record, isolated: a panic or the deadline fails this record only. A
    /// failure that may pass is retried here (see [`rerun_after`]); every run reads
    /// AWS afresh and finishes only the missing steps, as a redelivery would.
    async fn run_record(
        &self,
        ev: &HrEvent,
        arn: &str,
        deadline: Instant,
        log: &ActionLog,
    ) -> Report {
        let notes = Arc::new(RecordNotes::starting(deadline));
        let mut run = 1;
        loop {
            let report = self.run_once(ev, arn, deadline, log, &notes).await;
            let last = notes.take_last_error();
            let Some(pause) = rerun_after(&report, last.as_ref(), run, &notes) else {
                return report;
            };
            if Instant::now() + pause + RERUN_MIN_TIME > deadline {
                return report;
            }
            tracing::warn!(event_id = %ev.event_id, user_name = %ev.user_name, run,
                reason = report.reason.as_deref().unwrap_or_default(),
                "record failed for a reason that may pass: running it again");
            tokio::time::sleep(pause).await;
            run += 1;
        }
    }

    async fn run_once(
        &self,
        ev: &HrEvent,
        arn: &str,
        deadline: Instant,
        log: &ActionLog,
        notes: &Arc<RecordNotes>,
    ) -> Report {
        // Boxed: the record's future is deep, and one more level would exceed the
        // compiler's query depth where the lanes are polled together.
        let work = Box::pin(
            AssertUnwindSafe(self.process(ev, arn, Budget::until(deadline), log)).catch_unwind(),
        );
        let mut work = std::pin::pin!(tokio::time::timeout_at(
            deadline,
            with_notes(Arc::clone(notes), work)
        ));
        // A record that has not changed anything yet when only the time one more
        // record takes at the current pace is left (at most a quarter of its time;
        // the pacer serves records in the order they started) is handed back
        // untouched: SQS redelivers it, rather than the deadline cutting it halfway.
        let now = Instant::now();
        let tail = pace::tail_time().min(deadline.saturating_duration_since(now) / 4);
        let late = deadline.checked_sub(tail).unwrap_or(deadline);
        let first = tokio::select! {
            biased;
            r = &mut work => Some(r),
            () = tokio::time::sleep_until(late) => None,
        };
        let done =
            match first {
                Some(r) => r,
                None if log.is_empty() => return Report {
                    handed_back: true,
                    ..Report::new(
                        Outcome::Failed,
                        Some(
                            "not started: too little time left before the invocation's deadline"
                                .into(),
                        ),
                    )
                },
                None => work.await,
            };
        match done {
            Ok(Ok(report)) => report,
            Ok(Err(_)) => Report::new(
                Outcome::Failed,
                Some("internal error: the record's handler panicked".into()),
            ),
            // Cut by the deadline before it changed anything: untouched too.
            Err(_) => Report {
                handed_back: log.is_empty(),
                ..Report::new(
                    Outcome::Failed,
                    Some("the invocation's deadline was reached".into()),
                )
            },
        }
    }
}

/// Whether (and after what pause) a failed record is worth running again in this
/// invocation. Only when it failed with the AWS error its last failed call gave up
/// with (not a panic, the deadline or an internal error), and that error may pass:
/// - throttling or a transient error (their retries ran out);
/// - CreateUser's EntityAlreadyExists: IAM refused the name although GetUser did
///   not find it, so it is held in another case (or the user was created a moment
///   ago). The next run's lookup looks for the holder, and the planner rejects the
///   record if someone else holds the name.
fn rerun_after(
    report: &Report,
    last: Option<&AwsError>,
    run: u32,
    notes: &RecordNotes,
) -> Option<Duration> {
    let e = last?;
    if report.outcome != Outcome::Failed
        || run >= MAX_RUNS
        || report.reason.as_deref() != Some(e.to_string().as_str())
    {
        return None;
    }
    match (e.op, e.kind) {
        ("CreateUser", ErrorKind::AlreadyExists) if !notes.case_scan() => {
            notes.request_case_scan();
            Some(Duration::ZERO)
        }
        (_, ErrorKind::Throttled | ErrorKind::Transient) => {
            // 0.5 s, 1 s, 2 s, each with full jitter.
            let ceiling = Duration::from_millis(500) * (1 << (run - 1).min(4));
            Some(ceiling.mul_f64(rand::random::<f64>()))
        }
        _ => None,
    }
}

/// A standard queue delivers in any order: one user's records of a batch run in
/// event order, `(occurred_at, rank, event_id)`, so a joiner and its leaver in one batch
/// end the same way whichever came first. FIFO lanes keep the queue's order.
fn in_event_order(records: &[Record], mut lane: Vec<usize>) -> Vec<usize> {
    if lane.iter().all(|&i| records[i].group.is_none()) {
        lane.sort_by(|&a, &b| match (&records[a].parsed, &records[b].parsed) {
            (Ok(x), Ok(y)) => x.order_key().cmp(&y.order_key()),
            _ => a.cmp(&b),
        });
    }
    lane
}

/// The checks that need the record's context: on a FIFO queue, one employee's
/// events are one ordered stream (group = employee id); and the event's time
/// window, against the time of processing.
fn admit(r: &Record, max_age_days: i64) -> Result<&HrEvent, String> {
    let ev = r.parsed.as_ref().map_err(|rej| rej.reason.clone())?;
    if let Some(g) = r.group.as_deref() {
        if g != ev.employee.employee_id {
            return Err(format!(
                "FIFO message group {g:?} is not the employee's id {}: one employee's events must be one message group",
                ev.employee.employee_id
            ));
        }
    }
    check_window(ev, OffsetDateTime::now_utc(), max_age_days)?;
    Ok(ev)
}

fn to_record(index: usize, m: SqsMessage) -> Record {
    let message_id = m.message_id.clone().unwrap_or_default();
    let group = m.attributes.get("MessageGroupId").cloned();
    let parsed = match m.body.as_deref() {
        Some(body) => parse_body(body),
        None => parse_body(""),
    };
    let release = match (m.event_source_arn, m.receipt_handle) {
        (Some(source_arn), Some(receipt_handle)) => Some(Release {
            source_arn,
            receipt_handle,
        }),
        _ => None,
    };
    Record {
        index,
        message_id,
        group,
        parsed,
        release,
    }
}

fn audit_line(r: &Record, report: &Report, log: &ActionLog, dry_run: bool) -> AuditLine {
    let (event_id, event_type, employee_id, user_name) = match &r.parsed {
        Ok(e) => (
            Some(e.event_id.clone()),
            Some(e.event_type.as_str().to_owned()),
            Some(e.employee.employee_id.clone()),
            Some(
                report
                    .user_name
                    .clone()
                    .unwrap_or_else(|| e.user_name.clone()),
            ),
        ),
        Err(rej) => (
            rej.event_id.clone(),
            rej.event_type.clone(),
            rej.employee_id.clone(),
            rej.user_name.clone(),
        ),
    };
    let actions = if report.outcome == Outcome::Planned {
        report.planned.clone()
    } else {
        log.take()
    };
    let (reason, detail) = split_reason(report.reason.as_deref());
    AuditLine {
        audit: true,
        message_id: r.message_id.clone(),
        event_id,
        event_type,
        employee_id,
        user_name,
        outcome: report.outcome,
        actions,
        reason,
        detail,
        users: if report.users.len() > 1 {
            report.users.clone()
        } else {
            Vec::new()
        },
        dry_run: dry_run.then_some(true),
        due_at: report.due_at.map(crate::event::format_utc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: usize, group: Option<&str>, user: Option<&str>) -> Record {
        let parsed = match user {
            Some(u) => parse_body(&format!(
                r#"{{"event_id":"e{index}","event_type":"employee.joined","occurred_at":"2026-11-22T09:00:00Z","employee":{{"employee_id":"id-{u}","email":"{u}@x.io"}}}}"#
            )),
            None => parse_body("garbage"),
        };
        Record {
            index,
            message_id: format!("m{index}"),
            group: group.map(str::to_owned),
            parsed,
            release: None,
        }
    }

    #[test]
    fn standard_queue_lanes_run_in_event_order_fifo_lanes_in_queue_order() {
        let at = |index: usize, t: &str, group: Option<&str>| {
            let mut r = rec(index, group, Some("a"));
            r.parsed = parse_body(&format!(
                r#"{{"event_id":"e{index}","event_type":"employee.left","occurred_at":"{t}","employee":{{"employee_id":"E","username":"a"}}}}"#
            ));
            r
        };
        let std_q = vec![
            at(0, "2026-11-23T00:00:00Z", None),
            at(1, "2026-11-22T00:00:00Z", None),
        ];
        assert_eq!(in_event_order(&std_q, vec![0, 1]), vec![1, 0]);
        let fifo = vec![
            at(0, "2026-11-23T00:00:00Z", Some("g")),
            at(1, "2026-11-22T00:00:00Z", Some("g")),
        ];
        assert_eq!(in_event_order(&fifo, vec![0, 1]), vec![0, 1]);
    }

    #[test]
    fn a_record_failed_by_a_codeless_5xx_runs_again_like_other_transient_errors() {
        let notes = RecordNotes::default();
        let codeless = AwsError {
            op: "CreateUser",
            kind: crate::aws::kind_without_code(503, false),
            code: None,
            message: "HTTP 503 with no error code".into(),
        };
        let failed = Report::new(Outcome::Failed, Some(codeless.to_string()));
        for run in 1..MAX_RUNS {
            let pause = rerun_after(&failed, Some(&codeless), run, &notes).expect("runs again");
            assert!(pause <= Duration::from_millis(500) * (1 << (run - 1)));
        }
        assert_eq!(
            rerun_after(&failed, Some(&codeless), MAX_RUNS, &notes),
            None
        );
        // An emulator's code-less 500 ("not implemented", or a fault its calls
        // already retried) is not worth a second run.
        let unsupported = AwsError {
            kind: crate::aws::kind_without_code(500, true),
            ..codeless.clone()
        };
        let failed = Report::new(Outcome::Failed, Some(unsupported.to_string()));
        assert_eq!(rerun_after(&failed, Some(&unsupported), 1, &notes), None);
    }

    #[test]
    fn lanes_join_groups_and_users() {
        let rs = vec![
            rec(0, Some("g1"), Some("a")),
            rec(1, None, Some("b")),
            rec(2, Some("g2"), Some("a")),
            rec(3, Some("g2"), Some("c")),
            rec(4, None, None),
            rec(5, None, Some("b")),
            rec(6, Some("g3"), None),
        ];
        assert_eq!(
            lanes(&rs),
            vec![vec![0, 2, 3], vec![1, 5], vec![4], vec![6]]
        );
        // One employee under two names (HR changed the email): one lane.
        let mut renamed = rec(1, None, Some("b"));
        renamed.parsed = parse_body(
            r#"{"event_id":"x","event_type":"employee.left","occurred_at":"2026-11-22T09:00:00Z","employee":{"employee_id":"id-a","username":"a2"}}"#,
        );
        let rs = vec![rec(0, None, Some("a")), renamed, rec(2, None, Some("c"))];
        assert_eq!(lanes(&rs), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn a_leaver_ranks_after_a_joiner_of_the_same_instant() {
        let ev = |index: usize, kind: &str, id: &str| {
            let mut r = rec(index, None, Some("a"));
            r.parsed = parse_body(&format!(
                r#"{{"event_id":"{id}","event_type":"employee.{kind}","occurred_at":"2026-11-22T09:00:00Z","employee":{{"employee_id":"E","username":"a","email":"a@x.io"}}}}"#
            ));
            r
        };
        // The leaver's id sorts first, yet it runs after the joiner and mover.
        let rs = vec![
            ev(0, "left", "a-left"),
            ev(1, "joined", "z-join"),
            ev(2, "changed", "m-move"),
        ];
        assert_eq!(in_event_order(&rs, vec![0, 1, 2]), vec![2, 1, 0]);
    }
}
