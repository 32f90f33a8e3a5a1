//! Effective dates (contract section 9), pure: from one event, the time, the
//! configuration, the employee's pending schedules as read and what its user (or
//! tombstone) says was applied last, decide what the record does now and which
//! one-time schedules must exist afterwards.
//!
//! Every employee has at most two schedules, named from its id and the kind
//! ([`schedule_name`]): `start` delivers the joiner at `start_date` minus
//! `PROVISION_LEAD`, `end` delivers a leaver built from the record at `end_date`.
//! Each schedule's input names the record that scheduled it (`schedule.by_*`), so
//! that a schedule older than the employee's newest event is never acted on. The
//! steps are computed by comparing what the newest record implies with what was
//! read: run again after any prefix of them, the rest follows; nothing is
//! duplicated, since schedules are named.

use std::fmt;

use jiff::tz::TimeZone;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::ScheduleConfig;
use crate::event::{format_utc, parse_body, EffectiveDate, EventKey, EventType, HrEvent};

/// A date this close ahead acts now: a schedule could not fire much sooner. (A
/// delivery is accepted up to 5 minutes before its due time, for clock skew:
/// `event::check_window`.)
const NEAR: time::Duration = time::Duration::minutes(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    End,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Start => "hr-start-",
            Kind::End => "hr-end-",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::End => "end",
        }
    }
}

/// The prefix every schedule of the function's carries (the audit lists by it).
pub const NAME_PREFIX: &str = "hr-";

/// `hr-start-<id>` / `hr-end-<id>`. Scheduler names are 1-64 of `[0-9a-zA-Z-_.]`;
/// an id that does not fit is hashed as `hr-start-_<32 hex>`: employee ids never
/// hold `_`, so the two forms cannot meet.
pub fn schedule_name(kind: Kind, employee_id: &str) -> String {
    let plain = format!("{}{employee_id}", kind.prefix());
    let fits = plain.len() <= 64
        && employee_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c));
    if fits {
        plain
    } else {
        format!("{}_{}", kind.prefix(), &hex_sha256(employee_id)[..32])
    }
}

/// The employee id a schedule name spells out, when it is not hashed.
pub fn employee_of(name: &str) -> Option<(Kind, &str)> {
    [Kind::Start, Kind::End].into_iter().find_map(|k| {
        name.strip_prefix(k.prefix())
            .filter(|id| !id.starts_with('_') && !id.is_empty())
            .map(|id| (k, id))
    })
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A schedule as read back from Scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pending {
    pub name: String,
    pub expression: String,
    pub input: String,
    pub target_arn: String,
    pub role_arn: String,
    pub group_id: Option<String>,
}

impl Pending {
    /// The event it would deliver, if its input is one (a hand-made schedule
    /// under our name is replaced, never trusted).
    pub fn event(&self) -> Option<HrEvent> {
        parse_body(&self.input).ok()
    }
    /// The place of the record that scheduled it.
    fn source(&self) -> Option<EventKey> {
        self.event().map(|e| source_of(&e))
    }
}

/// Where a delivered event stands in its employee's stream: a scheduled one at
/// the record that scheduled it.
fn source_of(ev: &HrEvent) -> EventKey {
    ev.schedule
        .as_ref()
        .map(|f| f.by.clone())
        .unwrap_or_else(|| ev.key())
}

/// The employee's two schedules as read (GetSchedule by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingSet {
    pub start: Option<Pending>,
    pub end: Option<Pending>,
}

impl PendingSet {
    fn get(&self, kind: Kind) -> Option<&Pending> {
        match kind {
            Kind::Start => self.start.as_ref(),
            Kind::End => self.end.as_ref(),
        }
    }
}

/// What the employee's user (or its deleted user's secret) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// The newest event applied to the user or kept on its tombstone.
    pub applied: Option<EventKey>,
    /// A managed user of this employee exists (active or retired).
    pub user_exists: bool,
}

/// A schedule as the function writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub kind: Kind,
    /// UTC, whole seconds.
    pub due: OffsetDateTime,
    /// The event as a bare JSON body, with its `schedule` object.
    pub input: String,
    pub target_arn: String,
    pub role_arn: String,
    /// The FIFO message group: the employee id.
    pub group_id: String,
}

impl Spec {
    /// `at(YYYY-MM-DDThh:mm:ss)`, in UTC.
    pub fn expression(&self) -> String {
        let d = self.due;
        format!(
            "at({:04}-{:02}-{:02}T{:02}:{:02}:{:02})",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }

    /// Whether the schedule read is this one (inputs compared as JSON).
    pub fn matches(&self, p: &Pending) -> bool {
        let json = |s: &str| serde_json::from_str::<Value>(s).ok();
        p.expression == self.expression()
            && p.target_arn == self.target_arn
            && p.role_arn == self.role_arn
            && p.group_id.as_deref() == Some(self.group_id.as_str())
            && json(&p.input).is_some()
            && json(&p.input) == json(&self.input)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedStep {
    Create(Spec),
    /// The schedule exists and differs (a moved date, a newer record).
    Update(Spec),
    Delete {
        name: String,
    },
}

impl fmt::Display for SchedStep {
    /// The name in the audit line's `actions`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedStep::Create(s) => write!(f, "CreateSchedule:{}", s.name),
            SchedStep::Update(s) => write!(f, "UpdateSchedule:{}", s.name),
            SchedStep::Delete { name } => write!(f, "DeleteSchedule:{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Apply the record now (the planner decides the IAM steps; `act_as` replaces
    /// the event when the record takes over a pending start); the schedule steps
    /// follow.
    Proceed {
        steps: Vec<SchedStep>,
        act_as: Option<HrEvent>,
    },
    /// Nothing now: the record takes effect at `due_at`; only the steps run.
    Scheduled {
        steps: Vec<SchedStep>,
        due_at: OffsetDateTime,
    },
    /// Older than the employee's newest record (kept by a pending schedule or,
    /// for a delivered schedule, by the user): nothing is done, not retried.
    Stale(String),
    /// Needs a schedule that cannot be made (no target or role configured).
    Rejected(String),
}

/// `start_date` as an instant: a date is 00:00 of that day in `HR_TIME_ZONE`.
pub fn start_instant(d: &EffectiveDate, tz: &TimeZone) -> Option<OffsetDateTime> {
    match d {
        EffectiveDate::At(t) => Some(*t),
        EffectiveDate::Day(day) => day_start(*day, tz),
    }
}

/// `end_date` as an instant: a date is 24:00 of that day (00:00 of the next) in
/// `HR_TIME_ZONE`, so the last day is worked whole.
pub fn end_instant(d: &EffectiveDate, tz: &TimeZone) -> Option<OffsetDateTime> {
    match d {
        EffectiveDate::At(t) => Some(*t),
        EffectiveDate::Day(day) => day_start(day.next_day()?, tz),
    }
}

/// The first instant of a civil day in the zone (where DST skips midnight, the
/// first instant that exists).
fn day_start(day: time::Date, tz: &TimeZone) -> Option<OffsetDateTime> {
    let civil = jiff::civil::Date::new(
        i16::try_from(day.year()).ok()?,
        i8::try_from(u8::from(day.month())).ok()?,
        i8::try_from(day.day()).ok()?,
    )
    .ok()?;
    let z = civil.to_zoned_datetime(tz.clone()).ok()?;
    from_jiff(z.timestamp())
}

fn from_jiff(t: jiff::Timestamp) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.as_second()).ok()
}

/// When a joiner starting at `start` is provisioned: `PROVISION_LEAD` before,
/// counted in the zone's calendar (`P1D` is the same wall time the day before,
/// across a DST change too). Whole seconds.
pub fn provision_at(start: OffsetDateTime, cfg: &ScheduleConfig) -> Option<OffsetDateTime> {
    let t = jiff::Timestamp::from_second(start.unix_timestamp()).ok()?;
    let z = t
        .to_zoned_datetime(cfg.time_zone.clone())
        .checked_sub(cfg.lead)
        .ok()?;
    from_jiff(z.timestamp())
}

/// The leaver an `end_date` delivers: built from the record, its own
/// deterministic id, `occurred_at` = the end.
pub fn leaver_for(ev: &HrEvent, end: OffsetDateTime) -> HrEvent {
    let id = format!(
        "end-{}",
        &hex_sha256(&format!(
            "{}\n{}\n{}",
            ev.employee.employee_id,
            ev.event_id,
            format_utc(end)
        ))[..32]
    );
    HrEvent {
        event_id: id,
        event_type: EventType::Left,
        occurred_at: end,
        schedule: None,
        ..ev.clone()
    }
}

/// The event as a bare JSON body (contract section 1), with the `schedule`
/// object of a delivery due at `due` and scheduled by `by`.
pub fn input_json(ev: &HrEvent, due: OffsetDateTime, by: &HrEvent) -> String {
    let e = &ev.employee;
    let mut emp = Map::new();
    emp.insert("employee_id".into(), json!(e.employee_id));
    emp.insert("username".into(), json!(ev.user_name));
    let opt = [
        ("email", e.email.clone()),
        ("first_name", e.first_name.clone()),
        ("last_name", e.last_name.clone()),
        ("department", e.department.clone()),
        ("manager_email", e.manager_email.clone()),
        ("start_date", e.start_date.map(|d| d.as_text())),
        ("end_date", e.end_date.map(|d| d.as_text())),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            emp.insert(k.into(), json!(v));
        }
    }
    let by_key = source_of(by);
    json!({
        "event_id": ev.event_id,
        "event_type": ev.event_type.as_str(),
        "occurred_at": ev.occurred_at_tag(),
        "employee": emp,
        "schedule": {
            "due_at": format_utc(due),
            "by_event_id": by_key.event_id,
            "by_event_type": by.schedule.as_ref().map_or(by.event_type, |f| f.by_type).as_str(),
            "by_occurred_at": format_utc(by_key.occurred_at),
        }
    })
    .to_string()
}

fn truncate_secs(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn spec(
    kind: Kind,
    deliver: &HrEvent,
    due: OffsetDateTime,
    by: &HrEvent,
    target: (&str, &str),
) -> Spec {
    let due = truncate_secs(due);
    Spec {
        name: schedule_name(kind, &deliver.employee.employee_id),
        kind,
        due,
        input: input_json(deliver, due, by),
        target_arn: target.0.to_owned(),
        role_arn: target.1.to_owned(),
        group_id: deliver.employee.employee_id.clone(),
    }
}

/// What the record implies: the schedules that must exist afterwards.
struct Wanted {
    start: Option<(HrEvent, OffsetDateTime)>,
    end: Option<(HrEvent, OffsetDateTime)>,
}

/// Decides what `ev` does now and which schedules it leaves.
pub fn decide(
    ev: &HrEvent,
    now: OffsetDateTime,
    cfg: &ScheduleConfig,
    pending: &PendingSet,
    known: &Known,
) -> Decision {
    let source = source_of(ev);
    // Older than what the user says: the planner reports it (stale, or a stale
    // leaver on an active user); its schedules are not touched.
    if ev.schedule.is_none() && known.applied.as_ref().is_some_and(|a| *a > ev.key()) {
        return Decision::Proceed {
            steps: Vec::new(),
            act_as: None,
        };
    }
    if let (Some(f), Some(a)) = (&ev.schedule, &known.applied) {
        if f.by < *a {
            return Decision::Stale(format!(
                "scheduled by event {} at {}, older than the last event applied, {} at {}",
                f.by.event_id,
                format_utc(f.by.occurred_at),
                a.event_id,
                format_utc(a.occurred_at)
            ));
        }
    }
    // A delivered schedule that was replaced since (a moved date, a newer
    // record) is not acted on: the schedule now pending is.
    if ev.schedule.is_some() {
        let kind = if ev.event_type == EventType::Left {
            Kind::End
        } else {
            Kind::Start
        };
        if let Some(p) = pending.get(kind) {
            if p.event().map(|e| e.event_id) != Some(ev.event_id.clone()) {
                return Decision::Stale(format!(
                    "schedule {} was replaced since this delivery was due",
                    p.name
                ));
            }
        }
    }
    // The newest record wins: a pending schedule made by a newer record makes this
    // one stale (for an employee with no user yet, the schedule is all there is).
    for p in [&pending.start, &pending.end].into_iter().flatten() {
        if let Some(s) = p.source() {
            if s > source {
                return Decision::Stale(format!(
                    "older than event {} at {}, which scheduled {}",
                    s.event_id,
                    format_utc(s.occurred_at),
                    p.name
                ));
            }
        }
    }

    // A mover for an employee whose start is still pending takes the start over:
    // the joiner it delivers is rebuilt from the newer record.
    let taken_over;
    let mut ev = ev;
    let mut act_as = None;
    if ev.event_type == EventType::Changed && !known.user_exists {
        if let Some(pending_joiner) = pending.start.as_ref().and_then(Pending::event) {
            let mut j = ev.clone();
            j.event_type = EventType::Joined;
            j.employee.email = j.employee.email.or(pending_joiner.employee.email);
            j.employee.start_date = j.employee.start_date.or(pending_joiner.employee.start_date);
            taken_over = j;
            ev = &taken_over;
            act_as = Some(taken_over.clone());
        }
    }

    let tz = &cfg.time_zone;
    // A delivered schedule's own date is due, even if its clock runs a little
    // behind Scheduler's: it is never scheduled again.
    let fired_due = ev.schedule.as_ref().map(|f| f.due_at);
    let future = |t: OffsetDateTime| t > now + NEAR && fired_due.is_none_or(|d| t > d);
    let start_due = match ev.event_type {
        EventType::Joined => ev
            .employee
            .start_date
            .as_ref()
            .and_then(|d| start_instant(d, tz))
            .and_then(|s| provision_at(s, cfg))
            .filter(|d| future(*d)),
        _ => None,
    };
    let end_at = ev
        .employee
        .end_date
        .as_ref()
        .and_then(|d| end_instant(d, tz))
        .filter(|e| future(*e));
    let wanted = match (ev.event_type, end_at) {
        // A leaver dated ahead retires a user at its end; one with no user
        // (a hire rescinded before its start) leaves nothing behind.
        (EventType::Left, Some(e)) if known.user_exists => Wanted {
            start: None,
            end: Some((leaver_for(ev, e), e)),
        },
        (EventType::Left, _) => Wanted {
            start: None,
            end: None,
        },
        (_, end) => Wanted {
            start: start_due.map(|d| (ev.clone(), d)),
            end: end.map(|e| (leaver_for(ev, e), e)),
        },
    };

    let needs_target = wanted.start.is_some() || wanted.end.is_some();
    let target = match (needs_target, cfg.target()) {
        (false, _) => ("", ""),
        (true, Some(t)) => t,
        (true, None) => {
            return Decision::Rejected(
                "the record has a future start_date or end_date, and SCHEDULE_TARGET_ARN and \
                 SCHEDULER_ROLE_ARN are not configured: it cannot be scheduled"
                    .into(),
            )
        }
    };
    let mut steps = Vec::new();
    for (kind, want) in [(Kind::Start, &wanted.start), (Kind::End, &wanted.end)] {
        let have = pending.get(kind);
        match (want, have) {
            (Some((deliver, due)), have) => {
                let s = spec(kind, deliver, *due, ev, target);
                match have {
                    Some(p) if s.matches(p) => {}
                    Some(_) => steps.push(SchedStep::Update(s)),
                    None => steps.push(SchedStep::Create(s)),
                }
            }
            (None, Some(p)) => steps.push(SchedStep::Delete {
                name: p.name.clone(),
            }),
            (None, None) => {}
        }
    }
    match (ev.event_type, start_due, wanted.end.as_ref()) {
        (EventType::Joined, Some(due), _) => Decision::Scheduled {
            steps,
            due_at: truncate_secs(due),
        },
        (EventType::Left, _, Some((_, e))) => Decision::Scheduled {
            steps,
            due_at: truncate_secs(*e),
        },
        _ => Decision::Proceed { steps, act_as },
    }
}

#[cfg(test)]
mod tests;
