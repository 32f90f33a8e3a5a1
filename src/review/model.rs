//! The audit's data: what it reads (inputs), what it is told (settings) and what
//! it reports. Inputs hold names, tags and dates only: never a secret's value.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::Config;
use crate::rules::Rules;

/// One IAM user as `GetAccountAuthorizationDetails` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IamUser {
    pub name: String,
    pub path: String,
    pub created: Option<OffsetDateTime>,
    pub tags: BTreeMap<String, String>,
    pub groups: BTreeSet<String>,
    /// Attached managed policy ARNs.
    pub policies: BTreeSet<String>,
    /// Inline policy names (their documents are not kept).
    pub inline_policies: BTreeSet<String>,
    pub boundary: Option<String>,
    /// IAM's `UserId`, which survives a rename.
    pub user_id: Option<String>,
    /// Inline policies whose document allows `*` on `*`.
    pub inline_admin: BTreeSet<String>,
    /// SSH public key ids and service-specific credential ids: listed per
    /// managed user (`None`: not listed).
    pub ssh_keys: Option<Vec<String>>,
    pub service_credentials: Option<Vec<String>>,
}

/// One IAM group as `GetAccountAuthorizationDetails` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IamGroup {
    pub policies: BTreeSet<String>,
    /// Inline policies whose document allows `*` on `*`.
    pub inline_admin: BTreeSet<String>,
}

impl IamUser {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// One access-key slot of the credential report. The report carries no key ids:
/// a key is known by its creation time (`access_key_N_last_rotated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// 1 or 2, the report's column number.
    pub slot: u8,
    pub active: bool,
    pub created: OffsetDateTime,
    pub last_used: Option<OffsetDateTime>,
}

/// One row of the IAM credential report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub user: String,
    pub created: Option<OffsetDateTime>,
    /// A login profile exists.
    pub password_enabled: bool,
    pub password_last_used: Option<OffsetDateTime>,
    pub mfa_active: bool,
    /// Existing keys only (active or not).
    pub keys: Vec<KeySlot>,
    /// Existing X.509 signing certificates: (slot, active).
    pub certs: Vec<(u8, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CredentialReport {
    /// `GeneratedTime` of `GetCredentialReport`. AWS reuses a report for up to four
    /// hours, so what happened after this is not in it.
    pub generated: Option<OffsetDateTime>,
    pub rows: BTreeMap<String, Credentials>,
}

impl CredentialReport {
    /// The time the report is known to describe: its `GeneratedTime`, or the newest
    /// timestamp it holds if that is later (an emulator's constant `GeneratedTime`).
    pub fn as_of(&self) -> Option<OffsetDateTime> {
        let newest = self
            .rows
            .values()
            .flat_map(|r| {
                r.created.into_iter().chain(r.password_last_used).chain(
                    r.keys
                        .iter()
                        .flat_map(|k| Some(k.created).into_iter().chain(k.last_used)),
                )
            })
            .max();
        match (self.generated, newest) {
            (Some(g), Some(n)) => Some(g.max(n)),
            (g, n) => g.or(n),
        }
    }
}

/// One secret as `ListSecrets` describes it: name, tags, deletion date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretMeta {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// Set when the secret is scheduled for deletion.
    pub deleted: Option<OffsetDateTime>,
}

impl SecretMeta {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// Everything the comparison reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inputs {
    /// Users under `USER_PATH` and the template users under `TEMPLATE_PATH`.
    pub users: Vec<IamUser>,
    pub report: CredentialReport,
    /// Secrets under `SECRET_PREFIX`, scheduled ones included.
    pub secrets: Vec<SecretMeta>,
    /// The pending schedules of `SCHEDULE_GROUP` (src/review/dates.rs).
    pub schedules: Vec<super::dates::ScheduleRow>,
    /// Every group, by name: their policies count for the full-admin check.
    pub groups: BTreeMap<String, IamGroup>,
    /// Customer managed policies whose default version allows `*` on `*`.
    pub admin_policies: BTreeSet<String>,
}

/// What the comparison needs of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub user_path: String,
    pub template_path: String,
    pub secret_prefix: String,
    pub rules: Rules,
    pub key_max_age_days: i64,
    pub mfa_grace_days: i64,
    pub deny_policy_arn: Option<String>,
    pub boundary_arn: Option<String>,
    /// `HR_TIME_ZONE`, for a date-only `hr:end-date`.
    pub time_zone: jiff::tz::TimeZone,
    pub schedule_group: String,
    pub unused_disable_days: i64,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            user_path: c.user_path.clone(),
            template_path: c.template_path.clone(),
            secret_prefix: c.secret_prefix.clone(),
            rules: c.rules.clone(),
            key_max_age_days: c.key_max_age_days,
            mfa_grace_days: c.mfa_grace_days,
            deny_policy_arn: c.deny_policy_arn.clone(),
            boundary_arn: c.boundary_arn.clone(),
            time_zone: c.schedule.time_zone.clone(),
            schedule_group: c.schedule.group.clone(),
            unused_disable_days: c.unused_disable_days,
        }
    }
}

/// Declares the finding codes: one line each (variant, stable code, severity,
/// the benchmark controls it maps to), so adding a code is a one-line change.
macro_rules! codes {
    ($($(#[$doc:meta])* $v:ident = $s:literal, $sev:ident, [$($ctl:expr),*];)*) => {
        /// The stable finding codes of contract section 8.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Code {
            $($(#[$doc])* $v,)*
        }

        impl Code {
            pub const ALL: [Code; [$(stringify!($v)),*].len()] = [$(Code::$v,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$v => $s,)*
                }
            }

            /// How urgent: access someone should not have is high; hygiene is
            /// medium; bookkeeping that grants nothing is low.
            pub fn severity(self) -> Severity {
                match self {
                    $(Code::$v => Severity::$sev,)*
                }
            }

            /// The CIS AWS Foundations Benchmark and Security Hub controls this
            /// finding fails (see `cis.rs` and docs/audit.md).
            pub fn controls(self) -> &'static [&'static Control] {
                match self {
                    $(Code::$v => &[$($ctl),*],)*
                }
            }
        }
    };
}

use super::cis::{
    Control, CIS_FULL_ADMIN, CIS_GROUPS_ONLY, CIS_KEY_ROTATION, CIS_MFA, CIS_ONE_KEY, CIS_UNUSED,
};

codes! {
    MissingGrant = "missing-grant", Low, [];
    ExtraGrant = "extra-grant", High, [];
    UnstoredKey = "unstored-key", High, [];
    StaleSecret = "stale-secret", Low, [];
    MissingSecret = "missing-secret", Medium, [];
    OrphanSecret = "orphan-secret", Medium, [];
    KeyAge = "key-age", Medium, [&CIS_KEY_ROTATION];
    NoMfa = "no-mfa", Medium, [&CIS_MFA];
    RetiredWithAccess = "retired-with-access", High, [];
    UnmanagedInPath = "unmanaged-in-path", Medium, [];
    NameMismatch = "name-mismatch", Low, [];
    /// Two managed users carry one `hr:employee-id`.
    DuplicateEmployee = "duplicate-employee", High, [];
    /// An SSH key, signing certificate or service-specific credential.
    UnmanagedCredential = "unmanaged-credential", High, [];
    /// State tags in the future, or user and secret disagreeing.
    Tampered = "tampered", High, [];
    /// Password or active key unused for `UNUSED_DISABLE_DAYS`.
    UnusedCredential = "unused-credential", Medium, [&CIS_UNUSED];
    /// More than one active access key.
    MultipleActiveKeys = "multiple-active-keys", Medium, [&CIS_ONE_KEY];
    /// A policy attached to the user itself, not through a group.
    DirectPolicy = "direct-policy", Low, [&CIS_GROUPS_ONLY];
    /// `AdministratorAccess` or a `*:*` allow, directly or through a group.
    FullAdmin = "full-admin", High, [&CIS_FULL_ADMIN];
    /// Contract section 9: an active user whose `hr:end-date` has passed.
    PastEndDate = "past-end-date", High, [];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    /// The user concerned; absent for a secret without a user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The secret concerned, when the finding is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    pub detail: String,
    /// The benchmark controls it fails (`CIS 2.11`, `IAM.22`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<String>,
}

fn control_ids(code: Code) -> Vec<String> {
    code.controls().iter().flat_map(|c| c.ids()).collect()
}

impl Finding {
    pub fn user(code: Code, user: &str, detail: impl Into<String>) -> Self {
        Finding {
            code,
            severity: code.severity(),
            user_name: Some(user.to_owned()),
            secret_name: None,
            detail: detail.into(),
            controls: control_ids(code),
        }
    }

    pub fn secret(code: Code, user: Option<&str>, secret: &str, detail: impl Into<String>) -> Self {
        Finding {
            code,
            severity: code.severity(),
            user_name: user.map(str::to_owned),
            secret_name: Some(secret.to_owned()),
            detail: detail.into(),
            controls: control_ids(code),
        }
    }

    /// What the finding is about, for sorting and display.
    pub fn subject(&self) -> &str {
        self.user_name
            .as_deref()
            .or(self.secret_name.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Grants {
    pub expected: Vec<String>,
    pub actual: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Console {
    pub enabled: bool,
    /// RFC 3339; absent when never used or unknown.
    pub password_last_used: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRow {
    /// The secret's `hr:access-key-id` when this key is the one it records (the
    /// credential report has no key ids).
    pub id: Option<String>,
    pub active: bool,
    pub created: String,
    pub age_days: i64,
    pub last_used: Option<String>,
    /// Its creation time is the secret's `hr:access-key-created` and the user has
    /// no other key.
    pub stored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SecretRow {
    pub name: String,
    pub present: bool,
    pub scheduled_for_deletion: bool,
    /// Its tags agree with the user and its key (no secret finding).
    pub consistent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LastEvent {
    pub at: Option<String>,
    pub id: Option<String>,
}

/// One managed user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct UserRow {
    pub user_name: String,
    pub employee_id: Option<String>,
    pub status: Option<String>,
    pub department: Option<String>,
    /// `hr:manager-email`: whose access review lists the user.
    pub manager_email: Option<String>,
    /// `default` or the department key of `PROVISIONING_RULES` that applies.
    pub rule: String,
    pub groups: Grants,
    /// Managed policy ARNs, plus inline policies as `inline:NAME`.
    pub policies: Grants,
    pub console: Console,
    /// `None` when the credential report has no row for the user yet.
    pub mfa: Option<bool>,
    pub access_keys: Vec<KeyRow>,
    pub secret: SecretRow,
    pub last_event: LastEvent,
    /// Set when the credential report predates the user: password, MFA and keys
    /// were not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The codes of this user's findings.
    pub findings: Vec<Code>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Summary {
    pub users: usize,
    pub secrets: usize,
    /// Secrets of deleted or retired users, scheduled for deletion: expected.
    pub tombstones: usize,
    pub findings: usize,
    /// Every code, zeros included.
    pub by_code: BTreeMap<&'static str, usize>,
    /// When the credential report was generated (as far as can be told).
    pub credential_report_as_of: Option<String>,
}

/// AWS calls made by the read, per operation (every attempt counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Calls {
    pub total: u32,
    pub by_operation: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Report {
    pub users: Vec<UserRow>,
    pub findings: Vec<Finding>,
    pub summary: Summary,
    /// What could not be checked (e.g. a `copy_from` template that does not
    /// exist): the audit is then incomplete.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
    /// Pending schedules per employee (contract section 9).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<super::dates::ScheduleRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<Calls>,
    /// The CIS summary, when asked for (`--baseline cis`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Vec<super::cis::ControlRow>>,
}

impl Report {
    /// 0 clean, 1 findings, 2 incomplete (contract section 8).
    pub fn exit_code(&self) -> u8 {
        if !self.incomplete.is_empty() {
            2
        } else if !self.findings.is_empty() {
            1
        } else {
            0
        }
    }
}
