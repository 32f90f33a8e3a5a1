//! What AWS holds about one user: the planner's only input besides the event and
//! the rule. Secret values are not in here; the planner sees only what the secret
//! holds (a view), never the values themselves.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::password::Secret;

pub const TAG_EMPLOYEE_ID: &str = "hr:employee-id";
pub const TAG_MANAGED_BY: &str = "hr:managed-by";
pub const MANAGED_BY: &str = "hr-provisioner";
pub const TAG_STATUS: &str = "hr:status";
pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_RETIRED: &str = "retired";
/// A secret's status once its user was deleted: the tombstone.
pub const STATUS_DELETED: &str = "deleted";
pub const TAG_LAST_EVENT_AT: &str = "hr:last-event-at";
pub const TAG_LAST_EVENT_ID: &str = "hr:last-event-id";
/// Extension: the type of that event (`joined`, `changed`, `left`). It ranks events
/// of one instant (a `left` after the others) and tells a stale leaver against an
/// active user whether the newer event was a rehire.
pub const TAG_LAST_EVENT_TYPE: &str = "hr:last-event-type";
/// On the secret: the IAM `UserId` of its user, which survives a rename.
pub const TAG_USER_ID: &str = "hr:user-id";
/// Secret tags that let auditors compare without reading the value.
pub const TAG_USER_NAME: &str = "hr:user-name";
pub const TAG_ACCESS_KEY_ID: &str = "hr:access-key-id";
pub const TAG_ACCESS_KEY_CREATED: &str = "hr:access-key-created";
/// During a key rotation (contract section 11) the secret holds the old key too.
pub const TAG_PREVIOUS_ACCESS_KEY_ID: &str = "hr:previous-access-key-id";
pub const TAG_PREVIOUS_ACCESS_KEY_CREATED: &str = "hr:previous-access-key-created";
/// On the user: the key id whose new-key mail went out (contract section 11).
pub const TAG_KEY_ROTATION: &str = "hr:key-rotation";
/// Extensions: the HR record on the user.
pub const TAG_EMAIL: &str = "hr:email";
pub const TAG_DEPARTMENT: &str = "hr:department";
pub const TAG_MANAGER_EMAIL: &str = "hr:manager-email";
/// Contract section 9: the record's effective dates, as HR sent them.
pub const TAG_START_DATE: &str = "hr:start-date";
pub const TAG_END_DATE: &str = "hr:end-date";
/// Extension: `owed:<event id>` from the change that makes a welcome mail due
/// (creation, rehire, first console access) until it is sent, then
/// `sent:<event id>`. Written in the same call as that change, so a crash can
/// repeat the mail but never skip it.
pub const TAG_WELCOME: &str = "hr:welcome";
pub const WELCOME_OWED: &str = "owed:";
pub const WELCOME_SENT: &str = "sent:";
/// The inline policy a leaver puts on first: it stops every key and session at once.
pub const DENY_ALL_POLICY: &str = "hr-provisioner-deny-all";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    /// IAM's `UserId` (`AIDA...`): stable across renames.
    pub user_id: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    pub boundary_arn: Option<String>,
}

impl UserInfo {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// The result of looking a name up in IAM, which compares names case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Absent,
    /// A user whose name differs only in case holds the name.
    Clash {
        existing: String,
    },
    Found(UserInfo),
}

/// Everything attached to a user. Only what the event type needs is read; the rest
/// stays empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attachments {
    /// Only the deny-all was looked for (a leaver's first read): the cut-off comes
    /// before the clean-up reads, so a failing read cannot leave a leaver working.
    pub partial: bool,
    /// Creation time (RFC 3339 UTC) of each access key, by id.
    pub key_created: BTreeMap<String, String>,
    pub groups: BTreeSet<String>,
    pub attached_policies: BTreeSet<String>,
    pub inline_policies: BTreeSet<String>,
    pub login_profile: bool,
    pub access_keys: Vec<String>,
    /// MFA serial numbers; virtual devices have ARN serials.
    pub mfa_devices: Vec<String>,
    /// Unassigned virtual MFA devices named for this user, left by a crash between
    /// deactivating and deleting them.
    pub orphan_virtual_mfa: Vec<String>,
    pub ssh_keys: Vec<String>,
    pub signing_certs: Vec<String>,
    pub service_credentials: Vec<String>,
    /// Access keys that are inactive (disabled as unused, or the old key of a
    /// rotation): a stored one is replaced, never kept, when the user is converged.
    pub inactive_keys: BTreeSet<String>,
}

/// What the secret holds, without the values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretView {
    /// False when the value is not the JSON we write: it is then rewritten whole.
    pub readable: bool,
    pub user_name: Option<String>,
    pub signin_url: Option<String>,
    pub has_password: bool,
    pub password_pending: bool,
    pub access_key_id: Option<String>,
    pub has_secret_key: bool,
    /// The rotation's old key, still held during the grace.
    pub previous_access_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretState {
    Absent,
    /// Scheduled for deletion: must be restored before it can be written.
    Scheduled,
    /// Live; the view is empty when the value was not read (not ours, or no user).
    Present(SecretView),
}

/// What Secrets Manager says about the secret without its value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretMeta {
    pub tags: BTreeMap<String, String>,
    pub kms_key_id: Option<String>,
    pub scheduled: bool,
    pub has_policy: bool,
    /// The version labelled `AWSPREVIOUS`, if any: after a leaver empties the
    /// secret it would still hold the credentials, so the label is taken off.
    pub previous_version: Option<String>,
    /// The version labelled `AWSCURRENT`: the one a write moves `AWSPREVIOUS` to.
    pub current_version: Option<String>,
}

impl SecretMeta {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    pub lookup: Lookup,
    pub attachments: Attachments,
    pub secret: SecretState,
    /// None: no secret under the name.
    pub secret_meta: Option<SecretMeta>,
}

impl UserState {
    pub fn absent() -> Self {
        UserState {
            lookup: Lookup::Absent,
            attachments: Attachments::default(),
            secret: SecretState::Absent,
            secret_meta: None,
        }
    }
}

/// The secret's value (contract section 3), with the project's extra fields.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretDoc {
    pub user_name: String,
    pub signin_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub secret_access_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<String>,
    /// Set while a password is stored but not yet applied to an existing login
    /// profile, so a crash in between is finished by the next run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_pending: bool,
    /// During a key rotation (contract section 11): the old key, kept until the
    /// grace is over so the employee can switch without an outage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub previous_secret_access_key: Option<Secret>,
}

impl std::fmt::Debug for SecretDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretDoc")
            .field("user_name", &self.user_name)
            .field("has_password", &self.password.is_some())
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl SecretDoc {
    pub fn parse(s: &str) -> Option<SecretDoc> {
        serde_json::from_str(s).ok()
    }

    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and bools cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn view(&self) -> SecretView {
        SecretView {
            readable: true,
            user_name: Some(self.user_name.clone()),
            signin_url: Some(self.signin_url.clone()),
            has_password: self.password.is_some(),
            password_pending: self.password_pending,
            access_key_id: self.access_key_id.clone(),
            has_secret_key: self.secret_access_key.is_some(),
            previous_access_key_id: self.previous_access_key_id.clone(),
        }
    }
}

mod opt_secret {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::password::Secret;

    pub fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(secret) => s.serialize_str(secret.expose()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Secret::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_doc_round_trips_and_debug_hides_values() {
        let doc = SecretDoc {
            user_name: "jane.doe".into(),
            signin_url: "https://x.signin.aws.amazon.com/console".into(),
            password: Some(Secret::new("Pa55word!xyz".into())),
            access_key_id: Some("AKIAEXAMPLE".into()),
            secret_access_key: Some(Secret::new("wJalrXUtnFEMI".into())),
            employee_id: Some("E1".into()),
            password_pending: false,
            previous_access_key_id: Some("AKIAOLD".into()),
            previous_secret_access_key: Some(Secret::new("oldSecretK3y".into())),
        };
        let json = doc.to_json();
        assert!(json.contains("\"password\":\"Pa55word!xyz\""));
        assert!(!json.contains("password_pending"));
        assert!(json.contains("\"previous_secret_access_key\":\"oldSecretK3y\""));
        assert_eq!(SecretDoc::parse(&json).unwrap(), doc);
        let dbg = format!("{doc:?}");
        assert!(!dbg.contains("Pa55word") && !dbg.contains("wJalr") && !dbg.contains("oldSecret"));
        let minimal = SecretDoc::parse(r#"{"user_name":"a","signin_url":"u"}"#).unwrap();
        assert!(minimal.password.is_none() && !minimal.view().has_password);
        assert!(SecretDoc::parse("garbage").is_none());
    }
}
