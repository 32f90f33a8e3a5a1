//! Configuration from the function's environment (contract section 2), read once at
//! start-up. Any problem names the variable; the function never half-runs.

use crate::rules::Rules;

pub const DEFAULT_RULES: &str = r#"{"default":{"groups":[],"console":true,"access_key":false}}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaverAction {
    Disable,
    Delete,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub user_path: String,
    pub rules: Rules,
    pub boundary_arn: Option<String>,
    pub secret_prefix: String,
    pub kms_key_id: Option<String>,
    pub sender_email: String,
    /// Set explicitly; else derived at the first invocation (alias or account id).
    pub signin_url: Option<String>,
    pub leaver_action: LeaverAction,
    pub recovery_days: i64,
    pub dry_run: bool,
    /// Records of one batch handled at once (extension: `MAX_CONCURRENT_RECORDS`).
    pub max_concurrency: usize,
    /// Only users at this path, with no credentials, may be a rule's `copy_from`.
    pub template_path: String,
    /// Events older than this are rejected; never above the recovery window in
    /// delete mode, so no event outlives a deleted user's tombstone.
    pub max_event_age_days: i64,
    /// Set: leavers are cut off by attaching this managed deny-all policy, so the
    /// role needs no `iam:PutUserPolicy`. Unset: an inline deny-all (local runs).
    pub deny_policy_arn: Option<String>,
    /// Audit: an active access key older than this is a finding.
    pub key_max_age_days: i64,
    /// Audit: a console user without MFA this long after creation is a finding.
    pub mfa_grace_days: i64,
    /// Contract section 11: a password or active key unused this long (from the
    /// credential report) is a finding, and the scheduled writer disables it.
    pub unused_disable_days: i64,
    /// Contract section 11: a function-issued key is rotated this many days
    /// before `KEY_MAX_AGE_DAYS`, and old and new both live this long.
    pub key_rotation_grace_days: i64,
    /// Effective dates (contract section 9).
    pub schedule: ScheduleConfig,
    /// Extension `WARM_UP`: read the once-per-container values (password policy,
    /// account alias) as the container starts, instead of on the first record.
    pub warm_up: bool,
}

/// Effective dates: where the one-time schedules live and deliver, and how
/// dates are read. Target and role are both set or both unset.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// `SCHEDULE_GROUP`: the stack creates it; the function never does.
    pub group: String,
    /// `SCHEDULE_TARGET_ARN`: the queue the schedules deliver to.
    pub target_arn: Option<String>,
    /// `SCHEDULER_ROLE_ARN`: the role EventBridge Scheduler assumes to send.
    pub role_arn: Option<String>,
    /// `PROVISION_LEAD`: how long before `start_date` the account is made.
    pub lead: jiff::Span,
    /// `HR_TIME_ZONE`: the zone a date-only value is read in.
    pub time_zone: jiff::tz::TimeZone,
    pub time_zone_name: String,
}

impl ScheduleConfig {
    /// Target and role, when both are configured.
    pub fn target(&self) -> Option<(&str, &str)> {
        self.target_arn.as_deref().zip(self.role_arn.as_deref())
    }
}

/// Scheduler's name rule, which the group shares: 1-64 of `[0-9a-zA-Z-_.]`.
pub fn is_schedule_name(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn schedule_config(var: &dyn Fn(&str) -> Option<String>) -> Result<ScheduleConfig, ConfigError> {
    let group = var("SCHEDULE_GROUP").unwrap_or_else(|| "hr-provisioner".into());
    if !is_schedule_name(&group) {
        return Err(err(
            "SCHEDULE_GROUP",
            format!("{group:?}: expected 1-64 characters of A-Za-z0-9-_."),
        ));
    }
    let target_arn = var("SCHEDULE_TARGET_ARN");
    if let Some(a) = &target_arn {
        if !(a.starts_with("arn:aws") && a.contains(":sqs:") && a.split(':').count() == 6) {
            return Err(err(
                "SCHEDULE_TARGET_ARN",
                format!("{a:?} is not an SQS queue ARN"),
            ));
        }
    }
    let role_arn = var("SCHEDULER_ROLE_ARN");
    if let Some(a) = &role_arn {
        if !(a.starts_with("arn:aws") && a.contains(":iam::") && a.contains(":role/")) {
            return Err(err(
                "SCHEDULER_ROLE_ARN",
                format!("{a:?} is not an IAM role ARN"),
            ));
        }
    }
    match (&target_arn, &role_arn) {
        (Some(_), None) => {
            return Err(err(
                "SCHEDULER_ROLE_ARN",
                "is required when SCHEDULE_TARGET_ARN is set (the role Scheduler sends with)",
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                "SCHEDULE_TARGET_ARN",
                "is required when SCHEDULER_ROLE_ARN is set (the queue schedules deliver to)",
            ))
        }
        _ => {}
    }
    let lead_text = var("PROVISION_LEAD").unwrap_or_else(|| "P1D".into());
    let lead = parse_lead(lead_text.trim()).map_err(|p| err("PROVISION_LEAD", p))?;
    let time_zone_name = var("HR_TIME_ZONE").unwrap_or_else(|| "UTC".into());
    // The compiled-in database, never the machine's: a date means the same
    // instant on Lambda, in CI and on a laptop.
    let time_zone = jiff::tz::TimeZoneDatabase::bundled()
        .get(time_zone_name.trim())
        .map_err(|_| {
            err(
                "HR_TIME_ZONE",
                format!("{time_zone_name:?} is not an IANA time zone (e.g. Europe/Berlin)"),
            )
        })?;
    Ok(ScheduleConfig {
        group,
        target_arn,
        role_arn,
        lead,
        time_zone,
        time_zone_name: time_zone_name.trim().to_owned(),
    })
}

/// An ISO 8601 duration (`P1D`, `PT12H`, `P1DT6H`): not negative, at most 90 days
/// (a lead longer than that would make accounts long before anyone needs them).
fn parse_lead(v: &str) -> Result<jiff::Span, String> {
    let bad = || format!("{v:?}: expected an ISO 8601 duration from PT0S to P90D, such as P1D");
    // jiff also reads its "friendly" form (`1 day`); the variable is ISO 8601 only.
    if !v.starts_with('P') {
        return Err(bad());
    }
    let span: jiff::Span = v.parse().map_err(|_| bad())?;
    let reference = jiff::civil::date(2026, 1, 1)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map_err(|_| bad())?;
    let end = reference.checked_add(span).map_err(|_| bad())?;
    let secs = end.timestamp().as_second() - reference.timestamp().as_second();
    if span.signum() < 0 || secs > 90 * 86_400 {
        return Err(bad());
    }
    Ok(span)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn err(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

impl Config {
    /// Reads the configuration through `get` (the process environment in production,
    /// a map in tests). An empty optional variable counts as unset, as CloudFormation
    /// cannot leave a variable out conditionally without effort.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());

        let user_path = var("USER_PATH").unwrap_or_else(|| "/employees/".into());
        check_path(&user_path).map_err(|p| err("USER_PATH", p))?;

        let rules_json = var("PROVISIONING_RULES").unwrap_or_else(|| DEFAULT_RULES.into());
        let rules = Rules::parse(&rules_json).map_err(|p| err("PROVISIONING_RULES", p))?;

        let boundary_arn = var("PERMISSIONS_BOUNDARY_ARN");
        if let Some(b) = &boundary_arn {
            if !is_policy_arn(b) {
                return Err(err(
                    "PERMISSIONS_BOUNDARY_ARN",
                    format!("{b:?} is not an IAM managed policy ARN"),
                ));
            }
        }

        let secret_prefix = var("SECRET_PREFIX").unwrap_or_else(|| "hr-provisioner/".into());
        let prefix_ok = secret_prefix.len() <= 256 - 64
            && secret_prefix.ends_with('/')
            && secret_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
        if !prefix_ok {
            return Err(err(
                "SECRET_PREFIX",
                format!(
                    "{secret_prefix:?} must end with / and may only hold A-Za-z0-9/_+=.@- (at most 192 characters)"
                ),
            ));
        }

        let kms_key_id = var("SECRET_KMS_KEY_ID");

        let sender_email = var("SENDER_EMAIL").ok_or_else(|| {
            err(
                "SENDER_EMAIL",
                "is required (the SES-verified From address)",
            )
        })?;
        crate::event::check_email("SENDER_EMAIL", &sender_email)
            .map_err(|r| err("SENDER_EMAIL", r.reason))?;

        let signin_url = var("SIGNIN_URL");
        if let Some(u) = &signin_url {
            if !u.starts_with("https://") || u.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(err("SIGNIN_URL", format!("{u:?} is not an https URL")));
            }
        }

        let leaver_action = match var("LEAVER_ACTION").as_deref() {
            None | Some("disable") => LeaverAction::Disable,
            Some("delete") => LeaverAction::Delete,
            Some(other) => {
                return Err(err(
                    "LEAVER_ACTION",
                    format!("{other:?}: expected disable or delete"),
                ))
            }
        };

        let recovery_days = match var("SECRET_RECOVERY_DAYS") {
            None => 30,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if (7..=30).contains(&n) => n,
                _ => {
                    return Err(err(
                        "SECRET_RECOVERY_DAYS",
                        format!("{v:?}: expected a whole number from 7 to 30"),
                    ))
                }
            },
        };

        let dry_run = match var("DRY_RUN").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(err("DRY_RUN", format!("{other:?}: expected true or false")))
            }
        };

        let warm_up = match var("WARM_UP").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(err("WARM_UP", format!("{other:?}: expected true or false")))
            }
        };

        let max_concurrency = match var("MAX_CONCURRENT_RECORDS") {
            None => 10,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    return Err(err(
                        "MAX_CONCURRENT_RECORDS",
                        format!("{v:?}: expected a whole number from 1 to 100"),
                    ))
                }
            },
        };

        let template_path = var("TEMPLATE_PATH").unwrap_or_else(|| "/templates/".into());
        check_path(&template_path).map_err(|p| err("TEMPLATE_PATH", p))?;
        if template_path == user_path {
            return Err(err(
                "TEMPLATE_PATH",
                format!(
                    "{template_path:?} must differ from USER_PATH: templates are not employees"
                ),
            ));
        }

        // In delete mode the tombstone lives only as long as the recovery window:
        // an older event could otherwise recreate a deleted user.
        let age_cap = match leaver_action {
            LeaverAction::Delete => recovery_days,
            LeaverAction::Disable => 365,
        };
        let max_event_age_days = match var("MAX_EVENT_AGE_DAYS") {
            None => 14.min(age_cap),
            Some(v) => {
                let n = whole(&v, 1, 365).ok_or_else(|| {
                    err(
                        "MAX_EVENT_AGE_DAYS",
                        format!("{v:?}: expected a whole number from 1 to 365"),
                    )
                })?;
                if n > age_cap {
                    return Err(err(
                        "MAX_EVENT_AGE_DAYS",
                        format!(
                            "{n} exceeds SECRET_RECOVERY_DAYS ({recovery_days}) with LEAVER_ACTION=delete: \
                             an event older than a deleted user's tombstone could recreate the user"
                        ),
                    ));
                }
                n
            }
        };

        let deny_policy_arn = var("DENY_POLICY_ARN");
        if let Some(a) = &deny_policy_arn {
            if !is_policy_arn(a) {
                return Err(err(
                    "DENY_POLICY_ARN",
                    format!("{a:?} is not an IAM managed policy ARN"),
                ));
            }
        }

        let key_max_age_days = match var("KEY_MAX_AGE_DAYS") {
            None => 90,
            Some(v) => whole(&v, 1, 3650).ok_or_else(|| {
                err(
                    "KEY_MAX_AGE_DAYS",
                    format!("{v:?}: expected a whole number from 1 to 3650"),
                )
            })?,
        };
        let mfa_grace_days = match var("MFA_GRACE_DAYS") {
            None => 7,
            Some(v) => whole(&v, 0, 365).ok_or_else(|| {
                err(
                    "MFA_GRACE_DAYS",
                    format!("{v:?}: expected a whole number from 0 to 365"),
                )
            })?,
        };

        let schedule = schedule_config(&var)?;
        let unused_disable_days = match var("UNUSED_DISABLE_DAYS") {
            None => 45,
            Some(v) => whole(&v, 1, 3650).ok_or_else(|| {
                err(
                    "UNUSED_DISABLE_DAYS",
                    format!("{v:?}: expected a whole number from 1 to 3650"),
                )
            })?,
        };
        // The new key must exist before the old one is too old: the grace fits
        // inside the key's allowed age.
        let key_rotation_grace_days = match var("KEY_ROTATION_GRACE_DAYS") {
            None => 7.min(key_max_age_days - 1),
            Some(v) => whole(&v, 0, key_max_age_days - 1).ok_or_else(|| {
                err(
                    "KEY_ROTATION_GRACE_DAYS",
                    format!(
                        "{v:?}: expected a whole number from 0 to KEY_MAX_AGE_DAYS - 1 ({})",
                        key_max_age_days - 1
                    ),
                )
            })?,
        };

        Ok(Config {
            schedule,
            user_path,
            rules,
            boundary_arn,
            secret_prefix,
            kms_key_id,
            sender_email,
            signin_url,
            leaver_action,
            recovery_days,
            dry_run,
            max_concurrency,
            template_path,
            max_event_age_days,
            deny_policy_arn,
            key_max_age_days,
            mfa_grace_days,
            unused_disable_days,
            key_rotation_grace_days,
            warm_up,
        })
    }

    pub fn secret_name(&self, user_name: &str) -> String {
        format!("{}{}", self.secret_prefix, user_name)
    }
}

fn whole(v: &str, min: i64, max: i64) -> Option<i64> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
}

pub fn is_policy_arn(a: &str) -> bool {
    a.starts_with("arn:aws") && a.contains(":iam::") && a.contains(":policy/")
}

/// IAM's path rule: `/` or `/segments/`, printable ASCII, at most 512 characters.
fn check_path(p: &str) -> Result<(), String> {
    if !(p.starts_with('/') && p.ends_with('/')) {
        return Err(format!("{p:?} must start and end with /"));
    }
    if p.len() > 512 || p.contains("//") || p.chars().any(|c| !('\u{21}'..='\u{7e}').contains(&c)) {
        return Err(format!(
            "{p:?} is not a valid IAM path (printable ASCII, no empty segment, at most 512 characters)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut m: HashMap<String, String> = HashMap::new();
        m.insert("SENDER_EMAIL".into(), "it@example.com".into());
        for (k, v) in pairs {
            m.insert((*k).into(), (*v).into());
        }
        Config::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.user_path, "/employees/");
        assert_eq!(c.secret_prefix, "hr-provisioner/");
        assert_eq!(c.secret_name("jane.doe"), "hr-provisioner/jane.doe");
        assert_eq!(c.leaver_action, LeaverAction::Disable);
        assert_eq!(c.recovery_days, 30);
        assert!(!c.dry_run);
        assert!(c.rules.default.console && !c.rules.default.access_key);
        assert!(c.boundary_arn.is_none() && c.kms_key_id.is_none() && c.signin_url.is_none());
        assert_eq!(c.max_event_age_days, 14);
        assert_eq!(c.template_path, "/templates/");
        assert!(c.deny_policy_arn.is_none());
        assert_eq!((c.key_max_age_days, c.mfa_grace_days), (90, 7));
        assert_eq!((c.unused_disable_days, c.key_rotation_grace_days), (45, 7));
        let c = cfg(&[("KEY_MAX_AGE_DAYS", "5")]).unwrap();
        assert_eq!(
            c.key_rotation_grace_days, 4,
            "the grace fits in the key's age"
        );
        let c = cfg(&[
            ("KEY_ROTATION_GRACE_DAYS", "89"),
            ("UNUSED_DISABLE_DAYS", "1"),
        ])
        .unwrap();
        assert_eq!((c.key_rotation_grace_days, c.unused_disable_days), (89, 1));
        assert_eq!(c.schedule.group, "hr-provisioner");
        assert!(c.schedule.target().is_none());
        assert_eq!(c.schedule.lead.get_days(), 1);
        assert_eq!(c.schedule.time_zone_name, "UTC");
    }

    #[test]
    fn schedule_settings_are_validated_and_named() {
        let c = cfg(&[
            ("SCHEDULE_GROUP", "hr-dates"),
            (
                "SCHEDULE_TARGET_ARN",
                "arn:aws:sqs:eu-west-1:123456789012:hr.fifo",
            ),
            (
                "SCHEDULER_ROLE_ARN",
                "arn:aws:iam::123456789012:role/hr-scheduler",
            ),
            ("PROVISION_LEAD", "PT12H"),
            ("HR_TIME_ZONE", "Europe/Berlin"),
        ])
        .unwrap();
        assert_eq!(
            c.schedule.target(),
            Some((
                "arn:aws:sqs:eu-west-1:123456789012:hr.fifo",
                "arn:aws:iam::123456789012:role/hr-scheduler"
            ))
        );
        assert_eq!(c.schedule.lead.get_hours(), 12);
        assert_eq!(c.schedule.time_zone.iana_name(), Some("Europe/Berlin"));
        let sqs = (
            "SCHEDULE_TARGET_ARN",
            "arn:aws:sqs:eu-west-1:123456789012:hr.fifo",
        );
        let role = ("SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/r");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("SCHEDULE_GROUP", "a/b")], "SCHEDULE_GROUP"),
            (&[("SCHEDULE_GROUP", &"g".repeat(65))], "SCHEDULE_GROUP"),
            (&[sqs], "SCHEDULER_ROLE_ARN"),
            (&[role], "SCHEDULE_TARGET_ARN"),
            (
                &[("SCHEDULE_TARGET_ARN", "arn:aws:sns:eu-west-1:1:t"), role],
                "SCHEDULE_TARGET_ARN",
            ),
            (
                &[sqs, ("SCHEDULER_ROLE_ARN", "hr-scheduler")],
                "SCHEDULER_ROLE_ARN",
            ),
            (&[("PROVISION_LEAD", "1 day")], "PROVISION_LEAD"),
            (&[("PROVISION_LEAD", "-P1D")], "PROVISION_LEAD"),
            (&[("PROVISION_LEAD", "P91D")], "PROVISION_LEAD"),
            (&[("HR_TIME_ZONE", "Mars/Olympus")], "HR_TIME_ZONE"),
        ];
        for (pairs, var) in cases {
            let e = cfg(pairs).unwrap_err();
            assert_eq!(e.variable, *var, "{pairs:?}: {e}");
        }
    }

    #[test]
    fn delete_mode_caps_the_event_age_at_the_recovery_window() {
        let c = cfg(&[("LEAVER_ACTION", "delete"), ("SECRET_RECOVERY_DAYS", "10")]).unwrap();
        assert_eq!(c.max_event_age_days, 10);
        let c = cfg(&[
            ("LEAVER_ACTION", "delete"),
            ("SECRET_RECOVERY_DAYS", "10"),
            ("MAX_EVENT_AGE_DAYS", "10"),
        ])
        .unwrap();
        assert_eq!(c.max_event_age_days, 10);
        // Disable mode keeps the user, hence its tags: any age up to a year.
        let c = cfg(&[("MAX_EVENT_AGE_DAYS", "365")]).unwrap();
        assert_eq!(c.max_event_age_days, 365);
    }

    #[test]
    fn each_bad_variable_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("SENDER_EMAIL", "")], "SENDER_EMAIL"),
            (&[("SENDER_EMAIL", "not-an-address")], "SENDER_EMAIL"),
            (&[("PROVISIONING_RULES", "{")], "PROVISIONING_RULES"),
            (
                &[("PROVISIONING_RULES", r#"{"default":{"groups":"a"}}"#)],
                "PROVISIONING_RULES",
            ),
            (&[("USER_PATH", "employees/")], "USER_PATH"),
            (&[("USER_PATH", "/employees")], "USER_PATH"),
            (&[("USER_PATH", "/a b/")], "USER_PATH"),
            (&[("SECRET_RECOVERY_DAYS", "6")], "SECRET_RECOVERY_DAYS"),
            (&[("SECRET_RECOVERY_DAYS", "31")], "SECRET_RECOVERY_DAYS"),
            (&[("SECRET_RECOVERY_DAYS", "ten")], "SECRET_RECOVERY_DAYS"),
            (&[("LEAVER_ACTION", "archive")], "LEAVER_ACTION"),
            (&[("DRY_RUN", "yes")], "DRY_RUN"),
            (
                &[("PERMISSIONS_BOUNDARY_ARN", "boundary")],
                "PERMISSIONS_BOUNDARY_ARN",
            ),
            (&[("SIGNIN_URL", "http://x")], "SIGNIN_URL"),
            (&[("SECRET_PREFIX", "bad prefix")], "SECRET_PREFIX"),
            (&[("MAX_CONCURRENT_RECORDS", "0")], "MAX_CONCURRENT_RECORDS"),
            (&[("SECRET_PREFIX", "hr-provisioner")], "SECRET_PREFIX"),
            (&[("MAX_EVENT_AGE_DAYS", "0")], "MAX_EVENT_AGE_DAYS"),
            (&[("MAX_EVENT_AGE_DAYS", "366")], "MAX_EVENT_AGE_DAYS"),
            (
                &[
                    ("LEAVER_ACTION", "delete"),
                    ("SECRET_RECOVERY_DAYS", "7"),
                    ("MAX_EVENT_AGE_DAYS", "8"),
                ],
                "MAX_EVENT_AGE_DAYS",
            ),
            (&[("DENY_POLICY_ARN", "deny")], "DENY_POLICY_ARN"),
            (&[("TEMPLATE_PATH", "templates")], "TEMPLATE_PATH"),
            (&[("TEMPLATE_PATH", "/employees/")], "TEMPLATE_PATH"),
            (&[("KEY_MAX_AGE_DAYS", "0")], "KEY_MAX_AGE_DAYS"),
            (&[("MFA_GRACE_DAYS", "-1")], "MFA_GRACE_DAYS"),
            (&[("UNUSED_DISABLE_DAYS", "0")], "UNUSED_DISABLE_DAYS"),
            (
                &[("KEY_ROTATION_GRACE_DAYS", "90")],
                "KEY_ROTATION_GRACE_DAYS",
            ),
            (
                &[("KEY_ROTATION_GRACE_DAYS", "-1")],
                "KEY_ROTATION_GRACE_DAYS",
            ),
        ];
        for (pairs, var) in cases {
            let e = cfg(pairs).unwrap_err();
            assert_eq!(e.variable, *var, "{pairs:?}");
            assert!(e.to_string().contains(var));
        }
        let m: HashMap<String, String> = HashMap::new();
        assert_eq!(
            Config::from_env(|k| m.get(k).cloned())
                .unwrap_err()
                .variable,
            "SENDER_EMAIL"
        );
    }

    #[test]
    fn valid_settings_are_taken() {
        let c = cfg(&[
            ("USER_PATH", "/staff/hr/"),
            ("LEAVER_ACTION", "delete"),
            ("SECRET_RECOVERY_DAYS", "7"),
            ("DRY_RUN", "TRUE"),
            (
                "PERMISSIONS_BOUNDARY_ARN",
                "arn:aws:iam::123456789012:policy/boundary",
            ),
            ("SIGNIN_URL", "https://acme.signin.aws.amazon.com/console"),
        ])
        .unwrap();
        assert_eq!(c.user_path, "/staff/hr/");
        assert_eq!(c.leaver_action, LeaverAction::Delete);
        assert_eq!(c.recovery_days, 7);
        assert!(c.dry_run);
        assert!(c.boundary_arn.is_some());
    }

    #[test]
    fn warm_up_is_on_unless_turned_off() {
        let on = cfg(&[]).unwrap();
        assert!(on.warm_up);
        assert!(!cfg(&[("WARM_UP", "False")]).unwrap().warm_up);
        let e = cfg(&[("WARM_UP", "later")]).unwrap_err();
        assert_eq!(e.variable, "WARM_UP");
    }
}
