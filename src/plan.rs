//! The planner: pure, and the heart of convergence.
//!
//! `plan(event, rule, config, state)` returns the steps still missing, or a verdict.
//! Run again on the state left by any prefix of those steps, it returns the rest:
//! that is what makes redelivery and crash recovery finish the work without
//! repeating it. Steps carry no secret values; they say which credential to use
//! ("the one just generated", "the one stored"), and the applier holds the values.

use std::fmt;

use crate::config::{Config, LeaverAction};
use crate::event::{parse_rfc3339, EventType, HrEvent};
use crate::rules::Rule;
use std::collections::BTreeMap;
use time::OffsetDateTime;

use crate::state::*;

/// Where a credential written to the secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cred {
    /// The one the secret already holds.
    Keep,
    /// Password: generated in this run. Access key: created in this run.
    New,
    /// Not in the secret (any stored one is removed).
    Drop,
}

/// How to reach a writable secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretHow {
    Create,
    Put,
    /// Scheduled for deletion: restore, then put.
    Restore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretWrite {
    pub how: SecretHow,
    pub password: Cred,
    pub key: Cred,
    pub password_pending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    CreateUser {
        tags: Vec<(String, String)>,
        boundary_arn: Option<String>,
    },
    TagUser {
        tags: Vec<(String, String)>,
    },
    UntagUser {
        keys: Vec<String>,
    },
    PutBoundary {
        arn: String,
    },
    /// The inline deny-all, only when no `DENY_POLICY_ARN` is configured.
    PutDenyAll,
    DeleteInlinePolicy {
        name: String,
    },
    AddToGroup {
        group: String,
    },
    RemoveFromGroup {
        group: String,
    },
    AttachPolicy {
        arn: String,
    },
    DetachPolicy {
        arn: String,
    },
    DeleteAccessKey {
        id: String,
    },
    CreateAccessKey,
    /// Writes the value, then the secret's tags (which name the key it holds).
    WriteSecret(SecretWrite),
    /// The secret's tags alone, when its value is already right.
    TagSecret {
        tags: Vec<(String, String)>,
    },
    UntagSecret {
        keys: Vec<String>,
    },
    /// With the password the secret holds after the preceding write.
    CreateLoginProfile,
    UpdateLoginProfile,
    DeleteLoginProfile,
    DeactivateMfa {
        serial: String,
    },
    DeleteVirtualMfa {
        serial: String,
    },
    DeleteSshKey {
        id: String,
    },
    DeleteSigningCert {
        id: String,
    },
    DeleteServiceCredential {
        id: String,
    },
    /// Takes `AWSPREVIOUS` off the secret's prior version, which holds the
    /// credentials a leaver's emptying write replaced.
    ClearPreviousSecretVersion {
        /// The version holding `AWSPREVIOUS` once this run's writes are made,
        /// when the read tells (else the applier reads it).
        version_id: Option<String>,
    },
    ScheduleSecretDeletion {
        recovery_days: i64,
    },
    SendWelcome {
        to: String,
    },
    DeleteUser,
}

impl fmt::Display for Step {
    /// The name used in the audit line's `actions` (planned or made).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateUser { .. } => write!(f, "CreateUser"),
            Step::TagUser { .. } => write!(f, "TagUser"),
            Step::UntagUser { .. } => write!(f, "UntagUser"),
            Step::TagSecret { .. } => write!(f, "TagResource"),
            Step::UntagSecret { .. } => write!(f, "UntagResource"),
            Step::PutBoundary { .. } => write!(f, "PutUserPermissionsBoundary"),
            Step::PutDenyAll => write!(f, "PutUserPolicy:{DENY_ALL_POLICY}"),
            Step::DeleteInlinePolicy { name } => write!(f, "DeleteUserPolicy:{name}"),
            Step::AddToGroup { group } => write!(f, "AddUserToGroup:{group}"),
            Step::RemoveFromGroup { group } => write!(f, "RemoveUserFromGroup:{group}"),
            Step::AttachPolicy { arn } => write!(f, "AttachUserPolicy:{arn}"),
            Step::DetachPolicy { arn } => write!(f, "DetachUserPolicy:{arn}"),
            Step::DeleteAccessKey { id } => write!(f, "DeleteAccessKey:{id}"),
            Step::CreateAccessKey => write!(f, "CreateAccessKey"),
            Step::WriteSecret(w) => match w.how {
                SecretHow::Create => write!(f, "CreateSecret"),
                SecretHow::Put => write!(f, "PutSecretValue"),
                SecretHow::Restore => write!(f, "RestoreSecret+PutSecretValue"),
            },
            Step::CreateLoginProfile => write!(f, "CreateLoginProfile"),
            Step::UpdateLoginProfile => write!(f, "UpdateLoginProfile"),
            Step::DeleteLoginProfile => write!(f, "DeleteLoginProfile"),
            Step::DeactivateMfa { serial } => write!(f, "DeactivateMFADevice:{serial}"),
            Step::DeleteVirtualMfa { serial } => write!(f, "DeleteVirtualMFADevice:{serial}"),
            Step::DeleteSshKey { id } => write!(f, "DeleteSSHPublicKey:{id}"),
            Step::DeleteSigningCert { id } => write!(f, "DeleteSigningCertificate:{id}"),
            Step::DeleteServiceCredential { id } => {
                write!(f, "DeleteServiceSpecificCredential:{id}")
            }
            Step::ClearPreviousSecretVersion { .. } => {
                write!(f, "UpdateSecretVersionStage:AWSPREVIOUS")
            }
            Step::ScheduleSecretDeletion { .. } => write!(f, "DeleteSecret"),
            Step::SendWelcome { .. } => write!(f, "SendEmail"),
            Step::DeleteUser => write!(f, "DeleteUser"),
        }
    }
}

/// Steps in stages: the steps of one stage are independent and may run at once;
/// stages run in order, each only after the previous one fully succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub stages: Vec<Vec<Step>>,
    /// Set when the plan does what it safely can but the record must still fail
    /// (a leaver whose secret is not ours: the user is cut off, someone must look).
    pub fail_after: Option<String>,
}

impl Plan {
    fn push(&mut self, stage: Vec<Step>) {
        if !stage.is_empty() {
            self.stages.push(stage);
        }
    }
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.stages.iter().flatten()
    }
    pub fn action_names(&self) -> Vec<String> {
        self.steps().map(ToString::to_string).collect()
    }
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }
    fn finish(self, ev: &HrEvent) -> Verdict {
        match (&self.fail_after, self.is_empty()) {
            (Some(why), true) => Verdict::Failed(why.clone()),
            (None, true) => {
                Verdict::Unchanged(format!("{} already in effect", ev.event_type.as_str()))
            }
            _ => Verdict::Apply(self),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Older than the user's last applied event: nothing to do, not retried.
    Stale(String),
    /// Can never succeed: the event targets a user the function must not touch.
    Rejected(String),
    /// Already fully in effect.
    Unchanged(String),
    /// May succeed later (a mover whose joiner has not arrived yet).
    Failed(String),
    Apply(Plan),
    /// A leaver's cut-off, planned from the first read alone: apply it (it may be
    /// empty), then read everything and plan again.
    ReadMore(Plan),
}

/// What the planner needs of the configuration.
pub struct Context<'a> {
    pub config: &'a Config,
    /// The employee's rule, with its template's grants already added.
    pub rule: &'a Rule,
    /// What any rule grants (templates included): a mover loses what its new rule
    /// does not grant among these, and keeps anything else (granted by hand).
    pub granted: &'a Granted,
    pub signin_url: &'a str,
    /// The time of processing: a last-event tag after it (plus the skew) is forged.
    pub now: OffsetDateTime,
    /// `SECRET_KMS_KEY_ID` as a key (an alias resolved to its key ARN).
    pub kms_key: Option<&'a str>,
}

/// How far ahead of the time of processing an `occurred_at` may lie (contract
/// section 1); a last-event tag further ahead was not written by this function.
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// Reason codes of failures that need a person (contract section 5).
pub const TAMPERED: &str = "tampered";
pub const STALE_LEAVER_ON_ACTIVE_USER: &str = "stale-leaver-on-active-user";

/// Groups and managed policies that some rule grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Granted {
    pub groups: std::collections::BTreeSet<String>,
    pub policies: std::collections::BTreeSet<String>,
}

impl Granted {
    pub fn of<'r>(rules: impl IntoIterator<Item = &'r Rule>) -> Granted {
        let mut g = Granted::default();
        for r in rules {
            g.groups.extend(r.groups.iter().cloned());
            g.policies.extend(r.managed_policies.iter().cloned());
        }
        g
    }
}

pub fn plan(ev: &HrEvent, cx: &Context<'_>, state: &UserState) -> Verdict {
    let secret_problem = state
        .secret_meta
        .as_ref()
        .and_then(|m| foreign_secret(m, cx.kms_key, &ev.employee.employee_id));
    let user = match &state.lookup {
        Lookup::Clash { existing } => {
            return Verdict::Rejected(format!(
                "user name {} is taken, case-insensitively, by existing user {existing}",
                ev.user_name
            ))
        }
        Lookup::Absent => return plan_absent(ev, cx, state, secret_problem),
        Lookup::Found(u) => u,
    };
    if let Err(why) = guard(ev, cx.config, user) {
        return Verdict::Rejected(why);
    }
    // The secret's tags count only when the secret is ours (and read: a leaver's
    // cut-off is planned from IAM alone).
    let own_meta = state
        .secret_meta
        .as_ref()
        .filter(|_| secret_problem.is_none());
    let tampered = tampering(cx.now, user, own_meta);
    let retired = user.tag(TAG_STATUS) == Some(STATUS_RETIRED);
    if ev.event_type == EventType::Left {
        // Forged state never protects a user from offboarding: the leaver is applied
        // whole, then fails so that someone looks.
        if tampered.is_none() {
            if let Some(why) = staleness(ev, &last_event(&user.tags)) {
                return match last_event(&user.tags).kind {
                    // A rehire after this leaver: the leaver is history.
                    _ if retired => Verdict::Stale(why),
                    Some(EventType::Joined) => Verdict::Stale(why),
                    _ => Verdict::Failed(format!(
                        "{STALE_LEAVER_ON_ACTIVE_USER}: {why}; user {} is active and its newer event is not a rehire: a person must decide",
                        user.name
                    )),
                };
            }
        }
        let mut p = if state.attachments.partial {
            plan_cutoff(ev, cx.config, user, &state.attachments)
        } else {
            plan_leaver(ev, cx.config, user, state, secret_problem)
        };
        if let Some(t) = tampered {
            p.fail_after = Some(format!("{TAMPERED}: {t}; the user was cut off"));
        }
        return if state.attachments.partial {
            Verdict::ReadMore(p)
        } else {
            p.finish(ev)
        };
    }
    if let Some(t) = tampered {
        return Verdict::Failed(format!("{TAMPERED}: {t}; nothing was changed"));
    }
    if let Some(why) = staleness(ev, &last_event(&user.tags)) {
        return Verdict::Stale(why);
    }
    match ev.event_type {
        _ if secret_problem.is_some() => Verdict::Rejected(secret_problem.unwrap_or_default()),
        EventType::Changed if retired => Verdict::Unchanged(format!(
            "user {} is retired: only an employee.joined rehires",
            user.name
        )),
        _ => plan_existing(ev, cx, user, state).finish(ev),
    }
}

/// The last event applied, as a user or secret records it in its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastEvent<'a> {
    pub at: Option<OffsetDateTime>,
    pub at_tag: Option<&'a str>,
    pub id: &'a str,
    /// From `hr:last-event-type`; absent on users of older versions.
    pub kind: Option<EventType>,
    /// The rank of that event: its type's, else (older tags) told by the status,
    /// since only a `left` retires.
    pub rank: u8,
}

pub fn last_event(tags: &BTreeMap<String, String>) -> LastEvent<'_> {
    let get = |k: &str| tags.get(k).map(String::as_str);
    let kind = match get(TAG_LAST_EVENT_TYPE) {
        Some("joined") => Some(EventType::Joined),
        Some("changed") => Some(EventType::Changed),
        Some("left") => Some(EventType::Left),
        _ => None,
    };
    let rank = match (kind, get(TAG_STATUS)) {
        (Some(k), _) => k.rank(),
        (None, Some(STATUS_RETIRED | STATUS_DELETED)) => EventType::Left.rank(),
        (None, _) => EventType::Joined.rank(),
    };
    LastEvent {
        at: get(TAG_LAST_EVENT_AT).and_then(parse_rfc3339),
        at_tag: get(TAG_LAST_EVENT_AT),
        id: get(TAG_LAST_EVENT_ID).unwrap_or(""),
        kind,
        rank,
    }
}

impl LastEvent<'_> {
    fn key(&self) -> Option<(OffsetDateTime, u8, &str)> {
        self.at.map(|at| (at, self.rank, self.id))
    }
}

/// Why the state tags cannot have been written by this function (contract
/// section 5): a last event later than now plus the skew, on the user or its
/// secret; or a secret whose last event is newer than its user's (every flow
/// tags the user first, so a crash leaves the secret behind, never ahead). An
/// unparsable last-event time is forged too.
pub fn tampering(now: OffsetDateTime, u: &UserInfo, secret: Option<&SecretMeta>) -> Option<String> {
    let limit = now + CLOCK_SKEW;
    // A last-event time that is unreadable or beyond the skew, on either side.
    let forged = |whose: &str, last: &LastEvent<'_>| match (last.at_tag, last.at) {
        (Some(tag), None) => Some(format!(
            "{whose} has an unreadable {TAG_LAST_EVENT_AT} {tag:?}"
        )),
        (_, Some(at)) if at > limit => Some(format!(
            "{whose} has {TAG_LAST_EVENT_AT} {} in the future",
            crate::event::format_utc(at)
        )),
        _ => None,
    };
    let user = last_event(&u.tags);
    if let Some(why) = forged(&format!("user {}", u.name), &user) {
        return Some(why);
    }
    let meta = secret?;
    let kept = last_event(&meta.tags);
    if let Some(why) = forged(&format!("the secret of user {}", u.name), &kept) {
        return Some(why);
    }
    match (kept.key(), user.key()) {
        (Some(s), Some(us)) if s > us => Some(format!(
            "the secret of user {} records event {} at {}, newer than the user's {} at {}",
            u.name,
            kept.id,
            kept.at_tag.unwrap_or_default(),
            user.id,
            user.at_tag.unwrap_or_default()
        )),
        (Some(_), None) => Some(format!(
            "user {} has lost its {TAG_LAST_EVENT_AT} tag, which its secret still has",
            u.name
        )),
        _ => None,
    }
}

/// No user under the name: a joiner creates it, unless the secret under its name
/// belongs to someone else or is the tombstone of a newer event.
fn plan_absent(
    ev: &HrEvent,
    cx: &Context<'_>,
    state: &UserState,
    secret_problem: Option<String>,
) -> Verdict {
    if let (Some(meta), None) = (&state.secret_meta, &secret_problem) {
        let kept = last_event(&meta.tags);
        if kept.at.is_some_and(|at| at > cx.now + CLOCK_SKEW) {
            return Verdict::Failed(format!(
                "{TAMPERED}: the secret of user {} has {TAG_LAST_EVENT_AT} {} in the future; nothing was changed",
                ev.user_name,
                kept.at_tag.unwrap_or_default()
            ));
        }
        if let Some(why) = staleness(ev, &kept) {
            return Verdict::Stale(format!("{why} (kept on the deleted user's secret)"));
        }
    }
    match ev.event_type {
        // A live secret of ours whose user is gone was not left by this function (a
        // leaver tags it retired or deleted first): the user was deleted or renamed
        // outside it. Someone must look; the leaver is never a quiet success then.
        EventType::Left => match &state.secret_meta {
            Some(m)
                if secret_problem.is_none()
                    && !m.scheduled
                    && m.tag(TAG_STATUS) == Some(STATUS_ACTIVE) =>
            {
                Verdict::Failed(format!(
                    "secret of user {} is active but the user no longer exists (deleted or renamed outside the function, and not found by its {TAG_USER_ID}); someone must look",
                    ev.user_name
                ))
            }
            _ => Verdict::Unchanged(format!("user {} does not exist", ev.user_name)),
        },
        EventType::Changed => match &state.secret_meta {
            Some(m) if secret_problem.is_none() && m.tag(TAG_STATUS) == Some(STATUS_DELETED) => {
                Verdict::Unchanged(format!(
                    "user {} was deleted: only an employee.joined rehires",
                    ev.user_name
                ))
            }
            _ => Verdict::Failed(format!(
                "no user for employee {} yet (its employee.joined may still be on the way)",
                ev.employee.employee_id
            )),
        },
        EventType::Joined => match secret_problem {
            Some(why) => Verdict::Rejected(why),
            None => Verdict::Apply(plan_new_joiner(ev, cx, state)),
        },
    }
}

/// Why the secret under the user's name must not receive this employee's
/// credentials: someone else made it, or can read it by another way than ours.
pub fn foreign_secret(m: &SecretMeta, kms_key: Option<&str>, employee_id: &str) -> Option<String> {
    let name = "the secret under the user's name";
    if m.tag(TAG_MANAGED_BY) != Some(MANAGED_BY) {
        return Some(format!(
            "{name} was not created by the provisioner (no {TAG_MANAGED_BY}={MANAGED_BY} tag): it is never written"
        ));
    }
    if m.tag(TAG_EMPLOYEE_ID) != Some(employee_id) {
        return Some(format!(
            "{name} is tagged for employee {}, not {employee_id}: it is never written",
            m.tag(TAG_EMPLOYEE_ID).unwrap_or("(none)")
        ));
    }
    if !same_kms_key(kms_key, m.kms_key_id.as_deref()) {
        return Some(format!(
            "{name} is encrypted with KMS key {}, not SECRET_KMS_KEY_ID: it is never written",
            m.kms_key_id.as_deref().unwrap_or("aws/secretsmanager")
        ));
    }
    if m.has_policy {
        return Some(format!(
            "{name} carries a resource policy (others may read it): it is never written"
        ));
    }
    None
}

/// Whether the secret's key is the configured one, compared as keys: both sides
/// come here with customer aliases already resolved to key ARNs (an alias that
/// could not be resolved stays an alias and matches nothing). A key id matches its
/// key ARN. The AWS managed `alias/aws/secretsmanager` (which no one else can
/// create) stands for the account's default key, which is also what no key means.
pub fn same_kms_key(want: Option<&str>, have: Option<&str>) -> bool {
    /// `key/<id>` for a key id or key ARN, `alias/<name>` for an alias.
    fn norm(k: &str) -> String {
        let tail = if k.starts_with("arn:") {
            k.split(':').nth(5).unwrap_or(k)
        } else {
            k
        };
        if tail.starts_with("alias/") || tail.starts_with("key/") {
            tail.to_owned()
        } else {
            format!("key/{tail}")
        }
    }
    const DEFAULT: &str = "alias/aws/secretsmanager";
    let side = |k: Option<&str>| k.map_or_else(|| DEFAULT.to_owned(), norm);
    let (w, h) = (side(want), side(have));
    // Two customer aliases are never equal on their spelling.
    w == h && (w.starts_with("key/") || w == DEFAULT)
}

/// The function only ever acts on users it owns, and only for their employee.
fn guard(ev: &HrEvent, cfg: &Config, u: &UserInfo) -> Result<(), String> {
    if u.name != ev.user_name {
        return Err(format!(
            "user name {} is taken, case-insensitively, by existing user {}",
            ev.user_name, u.name
        ));
    }
    if u.path != cfg.user_path {
        return Err(format!(
            "user {} is at path {}, outside USER_PATH {}: not managed here",
            u.name, u.path, cfg.user_path
        ));
    }
    if u.tag(TAG_MANAGED_BY) != Some(MANAGED_BY) {
        return Err(format!(
            "user {} is not tagged {TAG_MANAGED_BY}={MANAGED_BY}: not managed here",
            u.name
        ));
    }
    match u.tag(TAG_EMPLOYEE_ID) {
        Some(id) if id == ev.employee.employee_id => Ok(()),
        Some(id) => Err(format!(
            "user {} belongs to employee {id}, not {}",
            u.name, ev.employee.employee_id
        )),
        None => Err(format!("user {} has no {TAG_EMPLOYEE_ID} tag", u.name)),
    }
}

/// Events are ordered by `(occurred_at, rank, event_id)` (contract section 5): a
/// `left` ranks after `joined` and `changed` of the same instant, and the id breaks
/// the remaining ties, so events with one timestamp converge in any order. The
/// event that was applied last (equal key) is not stale: it is finished.
fn staleness(ev: &HrEvent, last: &LastEvent<'_>) -> Option<String> {
    let last_key = last.key()?;
    if ev.order_key() < last_key {
        Some(format!(
            "event at {} is older than the last event applied, {} at {}",
            ev.occurred_at_tag(),
            last.id,
            last.at_tag.unwrap_or_default()
        ))
    } else {
        None
    }
}

/// Tag values must match IAM's tag pattern, `[\p{L}\p{Z}\p{N}_.:/=+\-@]*`, at most
/// 256 characters. Checked before any change: optional HR fields that do not match
/// are simply not tagged (they are informational), so a name with a combining mark
/// can never fail a joiner halfway.
pub fn tag_safe(v: &str) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    !v.is_empty()
        && v.chars().count() <= 256
        && v.chars().all(|c| {
            "_.:/=+-@".contains(c)
                || crate::event::is_letter(c)
                || matches!(
                    get_general_category(c),
                    G::SpaceSeparator
                        | G::LineSeparator
                        | G::ParagraphSeparator
                        | G::DecimalNumber
                        | G::LetterNumber
                        | G::OtherNumber
                )
        })
}

/// The HR record's optional fields, as user tags (extensions): they follow the
/// record, so one that is absent (or not taggable) is removed.
fn record_tags(ev: &HrEvent) -> [(&'static str, Option<String>); 5] {
    let e = &ev.employee;
    fn ok(v: &Option<String>) -> Option<String> {
        v.as_ref().filter(|v| tag_safe(v)).cloned()
    }
    [
        (TAG_EMAIL, ok(&e.email)),
        (TAG_DEPARTMENT, ok(&e.department)),
        (TAG_MANAGER_EMAIL, ok(&e.manager_email)),
        // Effective dates as HR sent them (a date, or an instant in UTC).
        (TAG_START_DATE, e.start_date.map(|d| d.as_text())),
        (TAG_END_DATE, e.end_date.map(|d| d.as_text())),
    ]
}

/// The tags a user carries after this event.
/// The tags a user and its secret share: owner, employee, status, last event.
fn ownership_tags(ev: &HrEvent, status: &str) -> Vec<(String, String)> {
    vec![
        (TAG_EMPLOYEE_ID.to_owned(), ev.employee.employee_id.clone()),
        (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (TAG_STATUS.to_owned(), status.to_owned()),
        (TAG_LAST_EVENT_AT.to_owned(), ev.occurred_at_tag()),
        (TAG_LAST_EVENT_ID.to_owned(), ev.event_id.clone()),
        (
            TAG_LAST_EVENT_TYPE.to_owned(),
            ev.event_type.short().to_owned(),
        ),
    ]
}

pub fn desired_tags(ev: &HrEvent, status: &str) -> Vec<(String, String)> {
    let mut tags = ownership_tags(ev, status);
    // A leaver carries no record worth keeping; joiners and movers carry it whole.
    if ev.event_type != EventType::Left {
        for (k, v) in record_tags(ev) {
            if let Some(v) = v {
                tags.push((k.to_owned(), v));
            }
        }
    }
    tags
}

/// The secret's tags (contract section 3): like its user's, plus the user name and
/// the key it holds, so auditors can compare without reading the value.
pub fn secret_tags(
    ev: &HrEvent,
    user_name: &str,
    user_id: &str,
    status: &str,
    key: Option<(&str, &str)>,
) -> Vec<(String, String)> {
    let mut tags = ownership_tags(ev, status);
    tags.push((TAG_USER_NAME.to_owned(), user_name.to_owned()));
    // The id survives a rename: a leaver whose name finds nothing looks it up.
    if !user_id.is_empty() {
        tags.push((TAG_USER_ID.to_owned(), user_id.to_owned()));
    }
    // The effective dates, like the user's (contract section 9).
    for (k, d) in [
        (TAG_START_DATE, &ev.employee.start_date),
        (TAG_END_DATE, &ev.employee.end_date),
    ] {
        if let (Some(d), false) = (d, ev.event_type == EventType::Left) {
            tags.push((k.to_owned(), d.as_text()));
        }
    }
    if let Some((id, created)) = key {
        tags.push((TAG_ACCESS_KEY_ID.to_owned(), id.to_owned()));
        if !created.is_empty() {
            tags.push((TAG_ACCESS_KEY_CREATED.to_owned(), created.to_owned()));
        }
    }
    tags
}

/// The secret's status for an event's outcome.
pub fn secret_status(ev: &HrEvent, cfg: &Config) -> &'static str {
    match (ev.event_type, cfg.leaver_action) {
        (EventType::Left, LeaverAction::Delete) => STATUS_DELETED,
        (EventType::Left, LeaverAction::Disable) => STATUS_RETIRED,
        _ => STATUS_ACTIVE,
    }
}

fn diff(have: &BTreeMap<String, String>, want: Vec<(String, String)>) -> Vec<(String, String)> {
    want.into_iter()
        .filter(|(k, v)| have.get(k) != Some(v))
        .collect()
}

/// Whether a welcome mail is due: owed since a change that called for it.
fn welcome_owed(u: &UserInfo) -> bool {
    u.tag(TAG_WELCOME)
        .is_some_and(|v| v.starts_with(WELCOME_OWED))
}

fn owed_tag(ev: &HrEvent) -> (String, String) {
    (
        TAG_WELCOME.to_owned(),
        format!("{WELCOME_OWED}{}", ev.event_id),
    )
}

fn welcome_stages(plan: &mut Plan, ev: &HrEvent, to: String) {
    plan.push(vec![Step::SendWelcome { to }]);
    plan.push(vec![Step::TagUser {
        tags: vec![(
            TAG_WELCOME.to_owned(),
            format!("{WELCOME_SENT}{}", ev.event_id),
        )],
    }]);
}

/// How the deny-all is put on: the stack's managed policy, else an inline one.
fn deny_present(cfg: &Config, att: &Attachments) -> bool {
    att.inline_policies.contains(DENY_ALL_POLICY)
        || cfg
            .deny_policy_arn
            .as_ref()
            .is_some_and(|arn| att.attached_policies.contains(arn))
}

fn put_deny(cfg: &Config) -> Step {
    match &cfg.deny_policy_arn {
        Some(arn) => Step::AttachPolicy { arn: arn.clone() },
        None => Step::PutDenyAll,
    }
}

/// Steps that take whichever deny-all the user has off.
fn remove_deny(cfg: &Config, att: &Attachments) -> Vec<Step> {
    let mut steps = Vec::new();
    if att.inline_policies.contains(DENY_ALL_POLICY) {
        steps.push(Step::DeleteInlinePolicy {
            name: DENY_ALL_POLICY.to_owned(),
        });
    }
    if let Some(arn) = cfg
        .deny_policy_arn
        .as_ref()
        .filter(|a| att.attached_policies.contains(*a))
    {
        steps.push(Step::DetachPolicy { arn: arn.clone() });
    }
    steps
}

fn plan_new_joiner(ev: &HrEvent, cx: &Context<'_>, state: &UserState) -> Plan {
    let rule = cx.rule;
    let mut plan = Plan::default();
    let mut tags = desired_tags(ev, STATUS_ACTIVE);
    // The mail is owed from the moment the user exists: recorded in the same call.
    tags.push(owed_tag(ev));
    plan.push(vec![Step::CreateUser {
        tags,
        boundary_arn: cx.config.boundary_arn.clone(),
    }]);
    let mut grants: Vec<Step> = rule
        .groups
        .iter()
        .map(|g| Step::AddToGroup { group: g.clone() })
        .chain(
            rule.managed_policies
                .iter()
                .map(|p| Step::AttachPolicy { arn: p.clone() }),
        )
        .collect();
    // The key is created before the secret is written: its secret half exists only
    // in CreateAccessKey's answer. A crash before the write leaves a key that the
    // next run finds missing from the secret, deletes and replaces.
    if rule.access_key {
        grants.push(Step::CreateAccessKey);
    }
    plan.push(grants);
    // A secret under the name is ours here (checked): a tombstone is restored.
    let how = match &state.secret_meta {
        None => SecretHow::Create,
        Some(m) if m.scheduled => SecretHow::Restore,
        Some(_) => SecretHow::Put,
    };
    plan.push(vec![Step::WriteSecret(SecretWrite {
        how,
        password: if rule.console { Cred::New } else { Cred::Drop },
        key: if rule.access_key {
            Cred::New
        } else {
            Cred::Drop
        },
        password_pending: false,
    })]);
    if how != SecretHow::Create {
        untag_stale_key(&mut plan, state, rule.access_key);
    }
    // The password is stored before the login profile exists: a crash in between
    // leaves a stored password that the next run applies.
    if rule.console {
        plan.push(vec![Step::CreateLoginProfile]);
    }
    if let Some(to) = ev.employee.email.clone() {
        welcome_stages(&mut plan, ev, to);
    }
    plan
}

/// A secret that will hold no key loses the key's tags.
/// The secret's tags that describe the key(s) it holds; a rotation's previous key
/// goes with the key (section 11).
fn key_tags_held(meta: &SecretMeta) -> Vec<String> {
    [
        TAG_ACCESS_KEY_ID,
        TAG_ACCESS_KEY_CREATED,
        TAG_PREVIOUS_ACCESS_KEY_ID,
        TAG_PREVIOUS_ACCESS_KEY_CREATED,
    ]
    .into_iter()
    .filter(|k| meta.tags.contains_key(*k))
    .map(str::to_owned)
    .collect()
}

fn untag_stale_key(plan: &mut Plan, state: &UserState, keeps_key: bool) {
    let Some(meta) = &state.secret_meta else {
        return;
    };
    if keeps_key {
        return;
    }
    let keys = key_tags_held(meta);
    if !keys.is_empty() {
        plan.push(vec![Step::UntagSecret { keys }]);
    }
}

/// An existing user converges to its rule: a repeated or newer `joined`, a rehire,
/// or a mover. What the rule grants is added; what another rule grants and this
/// one does not is removed; hand-granted access is left for the audit to report.
fn plan_existing(ev: &HrEvent, cx: &Context<'_>, u: &UserInfo, state: &UserState) -> Plan {
    let (cfg, rule) = (cx.config, cx.rule);
    let att = &state.attachments;
    let mut plan = Plan::default();

    let rehire = u.tag(TAG_STATUS) == Some(STATUS_RETIRED) || deny_present(cfg, att);
    // A mail is due for a user re-enabled or given console access it did not have;
    // never for a repeat.
    let newly_owed = !welcome_owed(u) && (rehire || (rule.console && !att.login_profile));
    let mut claim = desired_tags(ev, STATUS_ACTIVE);
    if newly_owed {
        claim.push(owed_tag(ev));
    }
    let mut first = Vec::new();
    let claim = diff(&u.tags, claim);
    if !claim.is_empty() {
        first.push(Step::TagUser { tags: claim });
    }
    let dropped: Vec<String> = record_tags(ev)
        .into_iter()
        .filter(|(k, v)| v.is_none() && u.tags.contains_key(*k))
        .map(|(k, _)| k.to_owned())
        .collect();
    if !dropped.is_empty() {
        first.push(Step::UntagUser { keys: dropped });
    }
    // A missing or different boundary is restored before any grant: whoever
    // removed it must not see a group or policy land on an unbounded user.
    first.extend(restore_boundary(cfg, u));
    plan.push(first);

    let mut grants = remove_deny(cfg, att);
    // Nothing planted survives: credentials this function never issues go.
    grants.extend(planted_credentials(att));
    for g in &rule.groups {
        if !att.groups.contains(g) {
            grants.push(Step::AddToGroup { group: g.clone() });
        }
    }
    for g in att.groups.intersection(&cx.granted.groups) {
        if !rule.groups.contains(g) {
            grants.push(Step::RemoveFromGroup { group: g.clone() });
        }
    }
    for p in &rule.managed_policies {
        if !att.attached_policies.contains(p) {
            grants.push(Step::AttachPolicy { arn: p.clone() });
        }
    }
    for p in att.attached_policies.intersection(&cx.granted.policies) {
        if !rule.managed_policies.contains(p) && Some(p) != cfg.deny_policy_arn.as_ref() {
            grants.push(Step::DetachPolicy { arn: p.clone() });
        }
    }

    let view = match &state.secret {
        SecretState::Present(v) if v.readable => Some(v),
        _ => None,
    };
    let stored_key = view
        .filter(|v| v.has_secret_key)
        .and_then(|v| v.access_key_id.as_deref());
    // An inactive stored key (disabled as unused, section 11) is replaced.
    let kept_key = stored_key.filter(|k| {
        rule.access_key
            && att.access_keys.iter().any(|have| have == k)
            && !att.inactive_keys.contains(*k)
    });
    // During a rotation the secret also holds the old key until its grace ends.
    let previous_key = view
        .and_then(|v| v.previous_access_key_id.as_deref())
        .filter(|_| kept_key.is_some());
    // Every key the user has must be the one in the secret: any other was created
    // by a run that crashed before storing it, or by hand, and is an orphan. A rule
    // without a key drops it.
    for k in &att.access_keys {
        if Some(k.as_str()) != kept_key && Some(k.as_str()) != previous_key {
            grants.push(Step::DeleteAccessKey { id: k.clone() });
        }
    }
    if !rule.console && att.login_profile {
        grants.push(Step::DeleteLoginProfile);
    }
    plan.push(grants);

    let key = if rule.access_key && kept_key.is_none() {
        plan.push(vec![Step::CreateAccessKey]);
        Cred::New
    } else if kept_key.is_some() {
        Cred::Keep
    } else {
        Cred::Drop
    };

    let stored_pw = view.is_some_and(|v| v.has_password);
    let pending = view.is_some_and(|v| v.password_pending);
    let (password, profile_step) = match (rule.console, att.login_profile, stored_pw) {
        (true, true, true) if !pending => (Cred::Keep, None),
        // Stored but maybe never applied to the existing profile: apply it again.
        (true, true, true) => (Cred::Keep, Some(Step::UpdateLoginProfile)),
        // A profile whose password nobody stored: reset it to a stored one.
        (true, true, false) => (Cred::New, Some(Step::UpdateLoginProfile)),
        (true, false, true) => (Cred::Keep, Some(Step::CreateLoginProfile)),
        (true, false, false) => (Cred::New, Some(Step::CreateLoginProfile)),
        // Console dropped: the profile goes (above) and the password with it.
        (false, _, _) => (Cred::Drop, None),
    };
    let updating = profile_step == Some(Step::UpdateLoginProfile);

    let how = match (&state.secret, &state.secret_meta) {
        (_, None) | (SecretState::Absent, _) => SecretHow::Create,
        (_, Some(m)) if m.scheduled => SecretHow::Restore,
        (SecretState::Scheduled, _) => SecretHow::Restore,
        _ => SecretHow::Put,
    };
    let fields_stale = view.is_none_or(|v| {
        v.user_name.as_deref() != Some(u.name.as_str())
            || v.signin_url.as_deref() != Some(cx.signin_url)
    });
    let drops_something =
        (key == Cred::Drop && stored_key.is_some()) || (password == Cred::Drop && stored_pw);
    let main_write = fields_stale
        || password == Cred::New
        || key == Cred::New
        || drops_something
        || (updating && !pending);
    let pending_after_main = if main_write { updating } else { pending };
    if main_write {
        plan.push(vec![Step::WriteSecret(SecretWrite {
            how,
            password,
            key,
            password_pending: updating,
        })]);
    }
    if let Some(step) = profile_step {
        plan.push(vec![step]);
    }
    if pending_after_main {
        plan.push(vec![Step::WriteSecret(SecretWrite {
            how: SecretHow::Put,
            password: Cred::Keep,
            key: if key == Cred::Drop {
                Cred::Drop
            } else {
                Cred::Keep
            },
            password_pending: false,
        })]);
    }
    if !main_write && !pending_after_main {
        // The value is right; its tags may still lag (a crash between the write and
        // the tagging, or a newer event).
        if let Some(meta) = &state.secret_meta {
            let created = kept_key.map(|id| key_created(att, meta, id));
            let held = kept_key.zip(created.as_deref());
            let want = secret_tags(ev, &u.name, &u.user_id, STATUS_ACTIVE, held);
            let tags = diff(&meta.tags, want);
            if !tags.is_empty() {
                plan.push(vec![Step::TagSecret { tags }]);
            }
        }
    }
    untag_stale_key(&mut plan, state, key != Cred::Drop);
    if welcome_owed(u) || newly_owed {
        // The record's address, else the one the user was tagged with.
        if let Some(to) = ev
            .employee
            .email
            .clone()
            .or_else(|| u.tag(TAG_EMAIL).map(str::to_owned))
        {
            welcome_stages(&mut plan, ev, to);
        }
    }
    plan
}

/// The boundary step when the user lacks `PERMISSIONS_BOUNDARY_ARN` or has another.
fn restore_boundary(cfg: &Config, u: &UserInfo) -> Option<Step> {
    let want = cfg.boundary_arn.as_ref()?;
    (u.boundary_arn.as_ref() != Some(want)).then(|| Step::PutBoundary { arn: want.clone() })
}

/// SSH keys, signing certificates and service-specific credentials: the function
/// never issues them, so on a managed user they were planted.
fn planted_credentials(att: &Attachments) -> Vec<Step> {
    let ssh = att
        .ssh_keys
        .iter()
        .map(|id| Step::DeleteSshKey { id: id.clone() });
    let certs = att
        .signing_certs
        .iter()
        .map(|id| Step::DeleteSigningCert { id: id.clone() });
    let service = att
        .service_credentials
        .iter()
        .map(|id| Step::DeleteServiceCredential { id: id.clone() });
    ssh.chain(certs).chain(service).collect()
}

/// The creation time of a key: IAM's, else what the secret's tag says.
pub fn key_created(att: &Attachments, meta: &SecretMeta, id: &str) -> String {
    att.key_created
        .get(id)
        .cloned()
        .or_else(|| {
            (meta.tag(TAG_ACCESS_KEY_ID) == Some(id))
                .then(|| meta.tag(TAG_ACCESS_KEY_CREATED).map(str::to_owned))
                .flatten()
        })
        .unwrap_or_default()
}

/// A leaver's first stage, from the first read alone: the claim (ordering tags)
/// and the deny-all, together. The deny makes every key and session of the user
/// stop working at once, before any clean-up read can fail.
fn plan_cutoff(ev: &HrEvent, cfg: &Config, u: &UserInfo, att: &Attachments) -> Plan {
    let mut first: Vec<Step> = Vec::new();
    let claim = diff(&u.tags, desired_tags(ev, STATUS_RETIRED));
    if !claim.is_empty() {
        first.push(Step::TagUser { tags: claim });
    }
    if !deny_present(cfg, att) {
        first.push(put_deny(cfg));
    }
    let mut plan = Plan::default();
    plan.push(first);
    plan
}

fn plan_leaver(
    ev: &HrEvent,
    cfg: &Config,
    u: &UserInfo,
    state: &UserState,
    secret_problem: Option<String>,
) -> Plan {
    let att = &state.attachments;
    let mut plan = plan_cutoff(ev, cfg, u, att);

    let mut removals = Vec::new();
    if att.login_profile {
        removals.push(Step::DeleteLoginProfile);
    }
    removals.extend(
        att.access_keys
            .iter()
            .map(|id| Step::DeleteAccessKey { id: id.clone() }),
    );
    removals.extend(planted_credentials(att));
    if cfg.leaver_action == LeaverAction::Disable {
        // The kept user stays inside its boundary should the deny-all ever go.
        removals.extend(restore_boundary(cfg, u));
    }
    removals.extend(
        att.mfa_devices
            .iter()
            .map(|s| Step::DeactivateMfa { serial: s.clone() }),
    );
    removals.extend(
        att.orphan_virtual_mfa
            .iter()
            .map(|s| Step::DeleteVirtualMfa { serial: s.clone() }),
    );
    removals.extend(
        att.attached_policies
            .iter()
            .filter(|arn| Some(*arn) != cfg.deny_policy_arn.as_ref())
            .map(|arn| Step::DetachPolicy { arn: arn.clone() }),
    );
    removals.extend(
        att.inline_policies
            .iter()
            .filter(|n| n.as_str() != DENY_ALL_POLICY)
            .map(|n| Step::DeleteInlinePolicy { name: n.clone() }),
    );
    removals.extend(
        att.groups
            .iter()
            .map(|g| Step::RemoveFromGroup { group: g.clone() }),
    );
    // The secret must hold nothing the user no longer has: emptied alongside the
    // removals and tagged as the tombstone (status, last event), then scheduled
    // for deletion. Secrets Manager refuses changes once deletion is scheduled, and
    // after DeleteUser a redelivery finds no user: both come first.
    let ours = secret_problem.is_none();
    let live_secret = match (&state.secret, &state.secret_meta) {
        (SecretState::Present(v), Some(m)) if ours && !m.scheduled => Some((v, m)),
        _ => None,
    };
    let mut tombstone = Vec::new();
    if let Some((v, meta)) = live_secret {
        let emptying =
            !v.readable || v.has_password || v.has_secret_key || v.access_key_id.is_some();
        // The emptying write moves AWSPREVIOUS to the version with the credentials;
        // a label left by an earlier run may too.
        if emptying || meta.previous_version.is_some() {
            // Emptied now: the version current at the read becomes AWSPREVIOUS.
            let version_id = if emptying {
                meta.current_version.clone()
            } else {
                meta.previous_version.clone()
            };
            tombstone.push(Step::ClearPreviousSecretVersion { version_id });
        }
        if emptying {
            removals.push(Step::WriteSecret(SecretWrite {
                how: SecretHow::Put,
                password: Cred::Drop,
                key: Cred::Drop,
                password_pending: false,
            }));
        } else {
            let tags = diff(
                &meta.tags,
                secret_tags(ev, &u.name, &u.user_id, secret_status(ev, cfg), None),
            );
            if !tags.is_empty() {
                removals.push(Step::TagSecret { tags });
            }
        }
        let keys = key_tags_held(meta);
        if !keys.is_empty() {
            tombstone.push(Step::UntagSecret { keys });
        }
    }
    plan.push(removals);
    plan.push(tombstone);

    // A virtual device can be deleted only once it is deactivated.
    let mut last: Vec<Step> = att
        .mfa_devices
        .iter()
        .filter(|s| is_virtual_mfa(s))
        .map(|s| Step::DeleteVirtualMfa { serial: s.clone() })
        .collect();
    if live_secret.is_some() {
        last.push(Step::ScheduleSecretDeletion {
            recovery_days: cfg.recovery_days,
        });
    }
    plan.push(last);

    if cfg.leaver_action == LeaverAction::Delete {
        let mut off = remove_deny(cfg, att);
        // The deny planned in this run's first stage is not in the state yet.
        if !deny_present(cfg, att) {
            off = match put_deny(cfg) {
                Step::AttachPolicy { arn } => vec![Step::DetachPolicy { arn }],
                _ => vec![Step::DeleteInlinePolicy {
                    name: DENY_ALL_POLICY.to_owned(),
                }],
            };
        }
        plan.push(off);
        plan.push(vec![Step::DeleteUser]);
    }
    plan.fail_after = secret_problem.map(|why| {
        format!("user cut off and its credentials removed, but {why}; someone must look")
    });
    plan
}

/// A virtual MFA device (`arn:...:mfa/name`), deleted after deactivation. A FIDO
/// security key's serial is an ARN too (`arn:...:u2f/...`), but it is hardware the
/// employee holds: it is only deactivated.
pub fn is_virtual_mfa(serial: &str) -> bool {
    serial.starts_with("arn:")
        && serial
            .split(':')
            .nth(5)
            .is_some_and(|r| r.starts_with("mfa/"))
}

#[cfg(test)]
mod tests;
