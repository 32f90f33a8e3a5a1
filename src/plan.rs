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
    /// State unknown (brand-new user): create, or overwrite whatever is there.
    CreateOrReplace,
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
    PutBoundary {
        arn: String,
    },
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
    WriteSecret(SecretWrite),
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
    ScheduleSecretDeletion {
        recovery_days: i64,
    },
    SendWelcome,
    DeleteUser,
}

impl fmt::Display for Step {
    /// The name used in the audit line's `actions` (planned or made).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateUser { .. } => write!(f, "CreateUser"),
            Step::TagUser { .. } => write!(f, "TagUser"),
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
                SecretHow::CreateOrReplace | SecretHow::Create => write!(f, "CreateSecret"),
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
            Step::ScheduleSecretDeletion { .. } => write!(f, "DeleteSecret"),
            Step::SendWelcome => write!(f, "SendEmail"),
            Step::DeleteUser => write!(f, "DeleteUser"),
        }
    }
}

/// Steps in stages: the steps of one stage are independent and may run at once;
/// stages run in order, each only after the previous one fully succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub stages: Vec<Vec<Step>>,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Older than the user's last applied event: nothing to do, not retried.
    Stale(String),
    /// Can never succeed: the event targets a user the function must not touch.
    Rejected(String),
    /// Already fully in effect.
    Unchanged(String),
    Apply(Plan),
}

/// What the planner needs of the configuration.
pub struct Context<'a> {
    pub config: &'a Config,
    pub rule: &'a Rule,
    pub signin_url: &'a str,
}

pub fn plan(ev: &HrEvent, cx: &Context<'_>, state: &UserState) -> Verdict {
    let user = match &state.lookup {
        Lookup::Clash { existing } => {
            return Verdict::Rejected(format!(
                "user name {} is taken, case-insensitively, by existing user {existing}",
                ev.user_name
            ))
        }
        Lookup::Absent => {
            return match ev.event_type {
                EventType::Joined | EventType::Changed => Verdict::Apply(plan_new_joiner(ev, cx)),
                EventType::Left => {
                    Verdict::Unchanged(format!("user {} does not exist", ev.user_name))
                }
            }
        }
        Lookup::Found(u) => u,
    };
    if let Err(why) = guard(ev, cx.config, user) {
        return Verdict::Rejected(why);
    }
    if let Some(why) = staleness(ev, user) {
        return Verdict::Stale(why);
    }
    let plan = match ev.event_type {
        EventType::Joined | EventType::Changed => plan_existing_joiner(ev, cx, user, state),
        EventType::Left => plan_leaver(ev, cx.config, user, state),
    };
    if plan.is_empty() {
        Verdict::Unchanged(format!("{} already in effect", ev.event_type.as_str()))
    } else {
        Verdict::Apply(plan)
    }
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

/// Events are ordered by `(occurred_at, event_id)`: the id breaks ties so that two
/// events with one timestamp still converge to the same end state in any order.
fn staleness(ev: &HrEvent, u: &UserInfo) -> Option<String> {
    let last_at = u.tag(TAG_LAST_EVENT_AT).and_then(parse_rfc3339)?;
    let last_id = u.tag(TAG_LAST_EVENT_ID).unwrap_or("");
    if (ev.occurred_at, ev.event_id.as_str()) < (last_at, last_id) {
        Some(format!(
            "event at {} is older than the user's last event {last_id} at {}",
            ev.occurred_at_tag(),
            u.tag(TAG_LAST_EVENT_AT).unwrap_or_default()
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
                || matches!(
                    get_general_category(c),
                    G::UppercaseLetter
                        | G::LowercaseLetter
                        | G::TitlecaseLetter
                        | G::ModifierLetter
                        | G::OtherLetter
                        | G::SpaceSeparator
                        | G::LineSeparator
                        | G::ParagraphSeparator
                        | G::DecimalNumber
                        | G::LetterNumber
                        | G::OtherNumber
                )
        })
}

/// The tags a user carries after this event.
pub fn desired_tags(ev: &HrEvent, status: &str) -> Vec<(String, String)> {
    let mut tags = vec![
        (TAG_EMPLOYEE_ID.to_owned(), ev.employee.employee_id.clone()),
        (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (TAG_STATUS.to_owned(), status.to_owned()),
        (TAG_LAST_EVENT_AT.to_owned(), ev.occurred_at_tag()),
        (TAG_LAST_EVENT_ID.to_owned(), ev.event_id.clone()),
    ];
    if ev.event_type == EventType::Joined {
        let e = &ev.employee;
        for (k, v) in [
            ("hr:email", &e.email),
            ("hr:department", &e.department),
            ("hr:manager-email", &e.manager_email),
        ] {
            if let Some(v) = v.as_ref().filter(|v| tag_safe(v)) {
                tags.push((k.to_owned(), v.clone()));
            }
        }
    }
    tags
}

fn tag_diff(u: &UserInfo, want: Vec<(String, String)>) -> Vec<(String, String)> {
    want.into_iter()
        .filter(|(k, v)| u.tag(k) != Some(v.as_str()))
        .collect()
}

fn welcome_owed(ev: &HrEvent, u: Option<&UserInfo>) -> bool {
    u.and_then(|u| u.tag(TAG_WELCOME_EVENT)) != Some(ev.event_id.as_str())
}

fn welcome_stages(plan: &mut Plan, ev: &HrEvent) {
    plan.push(vec![Step::SendWelcome]);
    plan.push(vec![Step::TagUser {
        tags: vec![(TAG_WELCOME_EVENT.to_owned(), ev.event_id.clone())],
    }]);
}

fn plan_new_joiner(ev: &HrEvent, cx: &Context<'_>) -> Plan {
    let rule = cx.rule;
    let mut plan = Plan::default();
    plan.push(vec![Step::CreateUser {
        tags: desired_tags(ev, STATUS_ACTIVE),
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
    plan.push(vec![Step::WriteSecret(SecretWrite {
        how: SecretHow::CreateOrReplace,
        password: if rule.console { Cred::New } else { Cred::Drop },
        key: if rule.access_key {
            Cred::New
        } else {
            Cred::Drop
        },
        password_pending: false,
    })]);
    // The password is stored before the login profile exists: a crash in between
    // leaves a stored password that the next run applies.
    if rule.console {
        plan.push(vec![Step::CreateLoginProfile]);
    }
    welcome_stages(&mut plan, ev);
    plan
}

fn plan_existing_joiner(ev: &HrEvent, cx: &Context<'_>, u: &UserInfo, state: &UserState) -> Plan {
    let (cfg, rule) = (cx.config, cx.rule);
    let att = &state.attachments;
    let mut plan = Plan::default();

    let claim = tag_diff(u, desired_tags(ev, STATUS_ACTIVE));
    let rehire =
        u.tag(TAG_STATUS) == Some(STATUS_RETIRED) || att.inline_policies.contains(DENY_ALL_POLICY);
    if !claim.is_empty() {
        plan.push(vec![Step::TagUser { tags: claim }]);
    }

    let mut grants = Vec::new();
    if att.inline_policies.contains(DENY_ALL_POLICY) {
        grants.push(Step::DeleteInlinePolicy {
            name: DENY_ALL_POLICY.to_owned(),
        });
    }
    if let Some(b) = &cfg.boundary_arn {
        // A differing boundary is corrected; a missing one is restored on rehire.
        // (moto never reports boundaries, so "missing" alone is not trusted.)
        let differs = u.boundary_arn.as_ref().is_some_and(|have| have != b);
        if differs || (rehire && u.boundary_arn.is_none()) {
            grants.push(Step::PutBoundary { arn: b.clone() });
        }
    }
    for g in &rule.groups {
        if !att.groups.contains(g) {
            grants.push(Step::AddToGroup { group: g.clone() });
        }
    }
    for p in &rule.managed_policies {
        if !att.attached_policies.contains(p) {
            grants.push(Step::AttachPolicy { arn: p.clone() });
        }
    }

    let view = match &state.secret {
        SecretState::Present(v) if v.readable => Some(v),
        _ => None,
    };
    let stored_key = view
        .filter(|v| v.has_secret_key)
        .and_then(|v| v.access_key_id.as_deref());
    let kept_key = stored_key.filter(|k| att.access_keys.iter().any(|have| have == k));
    // Every key the user has must be the one in the secret: any other was created
    // by a run that crashed before storing it, or by hand, and is an orphan.
    for k in &att.access_keys {
        if Some(k.as_str()) != kept_key {
            grants.push(Step::DeleteAccessKey { id: k.clone() });
        }
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
        // Console not wanted: a stored password is kept only while the user has it.
        (false, true, true) => (Cred::Keep, None),
        (false, _, _) => (Cred::Drop, None),
    };
    let updating = profile_step == Some(Step::UpdateLoginProfile);

    let how = match &state.secret {
        SecretState::Unknown => SecretHow::CreateOrReplace,
        SecretState::Absent => SecretHow::Create,
        SecretState::Scheduled => SecretHow::Restore,
        SecretState::Present(_) => SecretHow::Put,
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
    if welcome_owed(ev, Some(u)) {
        welcome_stages(&mut plan, ev);
    }
    plan
}

fn plan_leaver(ev: &HrEvent, cfg: &Config, u: &UserInfo, state: &UserState) -> Plan {
    let att = &state.attachments;
    let mut plan = Plan::default();

    // The claim (ordering tags) and the deny come first, together: the deny makes
    // every key and session of the user stop working at once, before the slower
    // clean-up runs.
    let mut first: Vec<Step> = Vec::new();
    let claim = tag_diff(u, desired_tags(ev, STATUS_RETIRED));
    if !claim.is_empty() {
        first.push(Step::TagUser { tags: claim });
    }
    if !att.inline_policies.contains(DENY_ALL_POLICY) {
        first.push(Step::PutDenyAll);
    }
    plan.push(first);

    let mut removals = Vec::new();
    if att.login_profile {
        removals.push(Step::DeleteLoginProfile);
    }
    removals.extend(
        att.access_keys
            .iter()
            .map(|id| Step::DeleteAccessKey { id: id.clone() }),
    );
    removals.extend(
        att.signing_certs
            .iter()
            .map(|id| Step::DeleteSigningCert { id: id.clone() }),
    );
    removals.extend(
        att.ssh_keys
            .iter()
            .map(|id| Step::DeleteSshKey { id: id.clone() }),
    );
    removals.extend(
        att.service_credentials
            .iter()
            .map(|id| Step::DeleteServiceCredential { id: id.clone() }),
    );
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
    // removals, then scheduled for deletion. Both come before any DeleteUser, since
    // after it a redelivery finds no user and would do nothing.
    let secret_present = matches!(state.secret, SecretState::Present(_));
    if let SecretState::Present(v) = &state.secret {
        if !v.readable || v.has_password || v.has_secret_key || v.access_key_id.is_some() {
            removals.push(Step::WriteSecret(SecretWrite {
                how: SecretHow::Put,
                password: Cred::Drop,
                key: Cred::Drop,
                password_pending: false,
            }));
        }
    }
    plan.push(removals);

    // A virtual device can be deleted only once it is deactivated.
    let mut last: Vec<Step> = att
        .mfa_devices
        .iter()
        .filter(|s| is_virtual_mfa(s))
        .map(|s| Step::DeleteVirtualMfa { serial: s.clone() })
        .collect();
    if secret_present {
        last.push(Step::ScheduleSecretDeletion {
            recovery_days: cfg.recovery_days,
        });
    }
    plan.push(last);

    if cfg.leaver_action == LeaverAction::Delete {
        plan.push(vec![Step::DeleteInlinePolicy {
            name: DENY_ALL_POLICY.to_owned(),
        }]);
        plan.push(vec![Step::DeleteUser]);
    }
    plan
}

pub fn is_virtual_mfa(serial: &str) -> bool {
    serial.starts_with("arn:")
}

#[cfg(test)]
mod tests;
