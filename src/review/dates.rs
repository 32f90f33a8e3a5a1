//! The audit's part of effective dates (contract section 9): the pending
//! schedules per employee, and `past-end-date` for an active user whose
//! `hr:end-date` has passed (a missed or deleted schedule is caught the next run).

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use super::model::{Code, Finding, IamUser, Settings};
use crate::event::{format_utc, parse_body, EffectiveDate};
use crate::schedule::{employee_of, end_instant};
use crate::state::{
    MANAGED_BY, STATUS_ACTIVE, TAG_EMPLOYEE_ID, TAG_END_DATE, TAG_MANAGED_BY, TAG_STATUS,
};

/// One pending schedule of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ScheduleRow {
    pub name: String,
    /// `start` (a joiner) or `end` (a leaver).
    pub kind: String,
    pub employee_id: Option<String>,
    /// The managed user of that employee, if there is one yet.
    pub user_name: Option<String>,
    /// Known when the schedule was read (GetSchedule): only for names that do
    /// not spell the employee id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
}

impl ScheduleRow {
    /// A row from a listed name; `None` when the name is not one of ours.
    pub fn from_name(name: &str) -> Option<ScheduleRow> {
        let kind = if name.starts_with("hr-start-") {
            "start"
        } else if name.starts_with("hr-end-") {
            "end"
        } else {
            return None;
        };
        Some(ScheduleRow {
            name: name.to_owned(),
            kind: kind.into(),
            employee_id: employee_of(name).map(|(_, id)| id.to_owned()),
            ..ScheduleRow::default()
        })
    }

    /// Completes a hashed name's row from the schedule's input and expression.
    pub fn fill(&mut self, input: &str, expression: &str) {
        if let Ok(ev) = parse_body(input) {
            self.employee_id = Some(ev.employee.employee_id);
            self.due_at = ev.schedule.map(|f| format_utc(f.due_at));
        }
        if self.due_at.is_none() {
            self.due_at = expression
                .strip_prefix("at(")
                .and_then(|e| e.strip_suffix(')'))
                .map(|t| format!("{t}Z"));
        }
    }
}

/// The rows with the user of each employee, sorted by employee and kind.
pub fn pending(rows: &[ScheduleRow], users: &[IamUser], s: &Settings) -> Vec<ScheduleRow> {
    let by_employee: BTreeMap<&str, &str> = users
        .iter()
        .filter(|u| u.path == s.user_path && u.tag(TAG_MANAGED_BY) == Some(MANAGED_BY))
        .filter_map(|u| Some((u.tag(TAG_EMPLOYEE_ID)?, u.name.as_str())))
        .collect();
    let mut out: Vec<ScheduleRow> = rows
        .iter()
        .map(|r| ScheduleRow {
            user_name: r
                .employee_id
                .as_deref()
                .and_then(|e| by_employee.get(e))
                .map(|n| (*n).to_owned()),
            ..r.clone()
        })
        .collect();
    out.sort_by(|a, b| (&a.employee_id, &a.kind).cmp(&(&b.employee_id, &b.kind)));
    out
}

/// `past-end-date`: an active managed user whose `hr:end-date` has passed.
pub fn past_end_date(u: &IamUser, s: &Settings, now: OffsetDateTime) -> Option<Finding> {
    if u.tag(TAG_STATUS) != Some(STATUS_ACTIVE) {
        return None;
    }
    let tag = u.tag(TAG_END_DATE)?;
    let end = EffectiveDate::parse(tag).and_then(|d| end_instant(&d, &s.time_zone))?;
    (end <= now).then(|| {
        Finding::user(
            Code::PastEndDate,
            &u.name,
            format!(
                "{TAG_END_DATE} {tag} (ends {}) has passed and the user is still active: its leaver schedule was missed or deleted",
                format_utc(end)
            ),
        )
    })
}

/// The table's section: one line per pending schedule.
pub fn table(rows: &[ScheduleRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = format!("\nPending schedules ({}):\n", rows.len());
    for r in rows {
        out.push_str(&format!(
            "  {} {} employee {} user {}{}\n",
            r.name,
            r.kind,
            r.employee_id.as_deref().unwrap_or("?"),
            r.user_name.as_deref().unwrap_or("(none yet)"),
            r.due_at
                .as_deref()
                .map(|d| format!(" due {d}"))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use time::macros::datetime;

    fn settings(tz: &str) -> Settings {
        let c = Config::from_env(|k| match k {
            "SENDER_EMAIL" => Some("it@example.com".into()),
            "HR_TIME_ZONE" => Some(tz.into()),
            _ => None,
        })
        .unwrap();
        Settings::from_config(&c)
    }

    fn user(status: &str, end: Option<&str>) -> IamUser {
        let mut u = IamUser {
            name: "cy.diaz".into(),
            path: "/employees/".into(),
            ..IamUser::default()
        };
        for (k, v) in [
            (TAG_MANAGED_BY, MANAGED_BY),
            (TAG_EMPLOYEE_ID, "E7"),
            (TAG_STATUS, status),
        ] {
            u.tags.insert(k.into(), v.into());
        }
        if let Some(e) = end {
            u.tags.insert(TAG_END_DATE.into(), e.into());
        }
        u
    }

    #[test]
    fn past_end_date_counts_the_whole_last_day_in_the_zone() {
        let berlin = settings("Europe/Berlin");
        // 31 March ends at 24:00 CEST = 22:00 UTC.
        let u = user("active", Some("2026-03-31"));
        assert!(past_end_date(&u, &berlin, datetime!(2026-03-31 21:59:59 UTC)).is_none());
        let f = past_end_date(&u, &berlin, datetime!(2026-03-31 22:00 UTC)).unwrap();
        assert_eq!(
            (f.code, f.user_name.as_deref()),
            (Code::PastEndDate, Some("cy.diaz"))
        );
        assert!(f.detail.contains("2026-03-31T22:00:00Z"), "{}", f.detail);
        let utc = settings("UTC");
        assert!(past_end_date(&u, &utc, datetime!(2026-03-31 23:59 UTC)).is_none());
        // An instant, a retired user, no tag.
        let at = user("active", Some("2026-03-01T12:00:00Z"));
        assert!(past_end_date(&at, &utc, datetime!(2026-03-01 12:00 UTC)).is_some());
        assert!(past_end_date(
            &user("retired", Some("2020-01-01")),
            &utc,
            datetime!(2026-03-01 12:00 UTC)
        )
        .is_none());
        assert!(
            past_end_date(&user("active", None), &utc, datetime!(2026-03-01 12:00 UTC)).is_none()
        );
    }

    #[test]
    fn pending_rows_name_the_employee_and_its_user() {
        let s = settings("UTC");
        let mut rows: Vec<ScheduleRow> = ["hr-start-E9", "hr-end-E7", "other"]
            .iter()
            .filter_map(|n| ScheduleRow::from_name(n))
            .collect();
        let mut hashed =
            ScheduleRow::from_name("hr-end-_0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(hashed.employee_id, None);
        hashed.fill(
            r#"{"event_id":"end-1","event_type":"employee.left","occurred_at":"2026-12-01T00:00:00Z","employee":{"employee_id":"emp:42","username":"x"},"schedule":{"due_at":"2026-12-01T00:00:00Z","by_event_id":"c1","by_event_type":"employee.changed","by_occurred_at":"2026-11-01T00:00:00Z"}}"#,
            "at(2026-12-01T00:00:00)",
        );
        assert_eq!(hashed.employee_id.as_deref(), Some("emp:42"));
        assert_eq!(hashed.due_at.as_deref(), Some("2026-12-01T00:00:00Z"));
        rows.push(hashed);
        let out = pending(&rows, &[user("active", None)], &s);
        let got: Vec<(&str, &str, Option<&str>)> = out
            .iter()
            .map(|r| (r.name.as_str(), r.kind.as_str(), r.user_name.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("hr-end-E7", "end", Some("cy.diaz")),
                ("hr-start-E9", "start", None),
                ("hr-end-_0123456789abcdef0123456789abcdef", "end", None),
            ]
        );
        assert!(table(&out).contains("hr-start-E9 start employee E9 user (none yet)"));
    }
}
