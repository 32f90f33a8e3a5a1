//! The credential lifecycle of contract section 11, planned: pure.
//!
//! From what one managed user holds (its keys with their creation and last use,
//! its login profile, what its secret stores, whether the new-key mail went
//! out) and the time, [`plan`] returns the steps still missing to:
//!
//! - **rotate** the function-issued key `KEY_ROTATION_GRACE_DAYS` before it
//!   reaches `KEY_MAX_AGE_DAYS`: create the new key, store it with the old one
//!   as `previous`, mail the employee, and once the grace (counted from the new
//!   key's creation) is over deactivate the old key, delete it and drop it from
//!   the secret;
//! - **disable unused credentials** (CIS 2.11): a login profile or an active key
//!   unused for `UNUSED_DISABLE_DAYS` (last use, else creation) is removed or
//!   deactivated. HR's next `employee.changed` restores them: the core planner
//!   recreates a missing login profile and replaces an inactive key.
//!
//! Like the core planner it converges: run again on the state any prefix of its
//! steps left, it returns the rest. Keys the secret does not hold (a crash
//! between creating and storing, or one made by hand) are deleted first, as
//! whenever the function acts on a user (contract section 5), which also keeps
//! the user within IAM's two keys at every step.

pub mod run;

use time::{Duration, OffsetDateTime};

/// One access key of the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub active: bool,
    pub created: OffsetDateTime,
    pub last_used: Option<OffsetDateTime>,
}

/// What the planner sees of one managed user. No secret value: which key ids
/// the secret holds, and whether it holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub user: String,
    pub keys: Vec<Key>,
    pub login_profile: bool,
    /// From the credential report; `None`: never used (or not known yet).
    pub password_last_used: Option<OffsetDateTime>,
    /// When the login profile's clock starts when never used: the user's creation.
    pub user_created: OffsetDateTime,
    pub stored_key: Option<String>,
    pub previous_key: Option<String>,
    pub stored_password: bool,
    /// The key id the new-key mail was sent for (user tag `hr:key-rotation`).
    pub mailed_for: Option<String>,
    /// Where the new-key mail goes (`hr:email`).
    pub email: Option<String>,
}

/// The settings of section 11, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub key_max_age_days: i64,
    pub grace_days: i64,
    pub unused_days: i64,
}

impl Limits {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Limits {
            key_max_age_days: c.key_max_age_days,
            grace_days: c.key_rotation_grace_days,
            unused_days: c.unused_disable_days,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A key the secret does not hold, or the previous key after the grace.
    DeleteKey {
        id: String,
    },
    DeactivateKey {
        id: String,
    },
    /// The new key of a rotation (its secret half exists only in the answer).
    CreateKey,
    /// The secret: the key just created becomes the key, the stored one the
    /// previous key; value first, then its tags.
    StoreNewKey,
    /// Tells the employee a new key waits in the secret (no key in the mail).
    MailNewKey {
        to: String,
    },
    /// Records on the user that the mail for the stored key went out.
    MarkMailed,
    /// The secret forgets the previous key (value and tags).
    DropPrevious,
    DeleteLoginProfile,
    /// The secret forgets the password (its profile is gone).
    DropPassword,
}

impl std::fmt::Display for Step {
    /// The names in the lifecycle's audit line, as the core's actions.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::DeleteKey { id } => write!(f, "DeleteAccessKey:{id}"),
            Step::DeactivateKey { id } => write!(f, "UpdateAccessKey:{id}:Inactive"),
            Step::CreateKey => write!(f, "CreateAccessKey"),
            Step::StoreNewKey => write!(f, "PutSecretValue:rotated"),
            Step::MailNewKey { .. } => write!(f, "SendEmail:new-key"),
            Step::MarkMailed => write!(f, "TagUser:hr:key-rotation"),
            Step::DropPrevious => write!(f, "PutSecretValue:previous-dropped"),
            Step::DeleteLoginProfile => write!(f, "DeleteLoginProfile"),
            Step::DropPassword => write!(f, "PutSecretValue:password-dropped"),
        }
    }
}

/// Steps in stages: a stage runs only after the previous one fully succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub stages: Vec<Vec<Step>>,
    /// Why each thing is done (for the audit line), e.g. `rotation due`.
    pub reasons: Vec<String>,
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
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// The steps still missing for one active managed user at `now`.
pub fn plan(s: &Subject, l: &Limits, now: OffsetDateTime) -> Plan {
    let mut p = Plan::default();
    let held =
        |id: &str| s.stored_key.as_deref() == Some(id) || s.previous_key.as_deref() == Some(id);
    let key = |id: Option<&str>| id.and_then(|id| s.keys.iter().find(|k| k.id == id));
    let unused = |used: Option<OffsetDateTime>, created: OffsetDateTime| {
        now - used.unwrap_or(created) >= days(l.unused_days)
    };

    // Keys the secret does not hold: never usable by the employee, and they
    // would take the slot the rotation needs.
    let orphans: Vec<Step> = s
        .keys
        .iter()
        .filter(|k| !held(&k.id))
        .map(|k| Step::DeleteKey { id: k.id.clone() })
        .collect();
    if !orphans.is_empty() {
        p.reasons
            .push(format!("{} access key(s) not in the secret", orphans.len()));
    }
    p.push(orphans);

    let current = key(s.stored_key.as_deref());
    let previous = key(s.previous_key.as_deref());
    match (s.previous_key.as_deref(), current) {
        // A rotation in its grace period (or finishing).
        (Some(_), Some(new)) => {
            if s.mailed_for.as_deref() != Some(new.id.as_str()) {
                if let Some(to) = &s.email {
                    p.push(vec![Step::MailNewKey { to: to.clone() }]);
                    p.push(vec![Step::MarkMailed]);
                    p.reasons.push("new key not announced yet".into());
                }
            }
            if now - new.created >= days(l.grace_days) {
                p.reasons.push("rotation grace over".into());
                match previous {
                    Some(old) => {
                        if old.active {
                            p.push(vec![Step::DeactivateKey { id: old.id.clone() }]);
                        }
                        p.push(vec![Step::DeleteKey { id: old.id.clone() }]);
                        p.push(vec![Step::DropPrevious]);
                    }
                    None => p.push(vec![Step::DropPrevious]),
                }
            } else if previous.is_none() {
                // Deleted by hand, or a crash after DeleteKey: the secret follows.
                p.push(vec![Step::DropPrevious]);
            }
        }
        // The secret names a previous key but no current one the user has:
        // nothing to rotate; the previous entry is dropped once its key is gone.
        (Some(_), None) if previous.is_none() => p.push(vec![Step::DropPrevious]),
        (None, Some(k)) if k.active => {
            if unused(k.last_used, k.created) {
                p.reasons.push(format!(
                    "access key unused for {} days or more",
                    l.unused_days
                ));
                p.push(vec![Step::DeactivateKey { id: k.id.clone() }]);
            } else if now - k.created >= days(l.key_max_age_days - l.grace_days) {
                p.reasons.push(format!(
                    "access key {} days old (rotated at KEY_MAX_AGE_DAYS {} - grace {})",
                    (now - k.created).whole_days(),
                    l.key_max_age_days,
                    l.grace_days
                ));
                p.push(vec![Step::CreateKey]);
                p.push(vec![Step::StoreNewKey]);
                if let Some(to) = &s.email {
                    p.push(vec![Step::MailNewKey { to: to.clone() }]);
                    p.push(vec![Step::MarkMailed]);
                }
            }
        }
        _ => {}
    }

    if s.login_profile && unused(s.password_last_used, s.user_created) {
        p.reasons.push(format!(
            "console password unused for {} days or more",
            l.unused_days
        ));
        p.push(vec![Step::DeleteLoginProfile]);
        if s.stored_password {
            p.push(vec![Step::DropPassword]);
        }
    } else if !s.login_profile && s.stored_password {
        // A crash between removing the profile and the secret: it holds nothing
        // the user does not have.
        p.push(vec![Step::DropPassword]);
    }
    p
}

#[cfg(test)]
mod tests;
