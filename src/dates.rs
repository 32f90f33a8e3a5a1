//! Effective dates, wired into one record's run: reads the employee's pending
//! schedules (alongside the first state read), asks [`crate::schedule::decide`],
//! and applies its steps through the same action log and fault hooks as every
//! other change.

use futures::future::try_join;
use time::OffsetDateTime;

use crate::apply::{ActionLog, ApplyError, Faults, Services};
use crate::aws::{AwsError, Budget};
use crate::config::Config;
use crate::event::{parse_rfc3339, EventKey, EventType, HrEvent};
use crate::plan::foreign_secret;
use crate::schedule::{schedule_name, Kind, Known, PendingSet, SchedStep};
use crate::state::{
    Lookup, UserState, MANAGED_BY, STATUS_DELETED, STATUS_RETIRED, TAG_EMPLOYEE_ID,
    TAG_LAST_EVENT_AT, TAG_LAST_EVENT_ID, TAG_MANAGED_BY, TAG_STATUS,
};

/// The employee's two schedules, read at once (GetSchedule by their names).
/// Without a scheduler (no `SCHEDULE_TARGET_ARN`), none can exist.
pub async fn read_pending(
    services: &Services,
    ev: &HrEvent,
    b: &Budget,
) -> Result<PendingSet, AwsError> {
    let Some(s) = &services.scheduler else {
        return Ok(PendingSet::default());
    };
    let id = &ev.employee.employee_id;
    let (start_name, end_name) = (schedule_name(Kind::Start, id), schedule_name(Kind::End, id));
    let (start, end) = try_join(s.get(&start_name, b), s.get(&end_name, b)).await?;
    Ok(PendingSet { start, end })
}

/// What the user (or a deleted user's secret) says was applied last. The tags
/// do not name the event type: a retired or deleted status means a leaver.
pub fn known(ev: &HrEvent, cfg: &Config, kms_key: Option<&str>, state: &UserState) -> Known {
    let employee = ev.employee.employee_id.as_str();
    let key = |at: Option<&str>, id: Option<&str>, status: Option<&str>| {
        let at = at.and_then(parse_rfc3339)?;
        let left = matches!(status, Some(STATUS_RETIRED | STATUS_DELETED));
        Some(EventKey::new(
            at,
            if left {
                EventType::Left
            } else {
                EventType::Joined
            },
            id.unwrap_or_default(),
        ))
    };
    match &state.lookup {
        Lookup::Found(u)
            if u.path == cfg.user_path
                && u.tag(TAG_MANAGED_BY) == Some(MANAGED_BY)
                && u.tag(TAG_EMPLOYEE_ID) == Some(employee) =>
        {
            Known {
                applied: key(
                    u.tag(TAG_LAST_EVENT_AT),
                    u.tag(TAG_LAST_EVENT_ID),
                    u.tag(TAG_STATUS),
                ),
                user_exists: true,
            }
        }
        _ => Known {
            applied: state
                .secret_meta
                .as_ref()
                .filter(|m| foreign_secret(m, kms_key, employee).is_none())
                .and_then(|m| {
                    key(
                        m.tag(TAG_LAST_EVENT_AT),
                        m.tag(TAG_LAST_EVENT_ID),
                        m.tag(TAG_STATUS),
                    )
                }),
            user_exists: false,
        },
    }
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Applies schedule steps in order, recording each made change in `log`.
pub async fn apply(
    services: &Services,
    steps: &[SchedStep],
    b: &Budget,
    log: &ActionLog,
    faults: Option<&dyn Faults>,
) -> Result<(), ApplyError> {
    if steps.is_empty() {
        return Ok(());
    }
    let s = services.scheduler.as_ref().ok_or(ApplyError::Internal(
        "a schedule step without a scheduler client",
    ))?;
    for step in steps {
        let made = match step {
            SchedStep::Create(spec) => format!("{}:{}", s.create(spec, b).await?, spec.name),
            SchedStep::Update(spec) => {
                s.update(spec, b).await?;
                step.to_string()
            }
            SchedStep::Delete { name } => {
                s.delete(name, b).await?;
                step.to_string()
            }
        };
        let crash = faults.is_some_and(|f| f.crash_after(&made));
        log.push(made.clone());
        if crash {
            return Err(ApplyError::Crash(made));
        }
    }
    Ok(())
}
