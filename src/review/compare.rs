//! The comparison: pure. What AWS holds (users, credential report, secret tags)
//! against what the rules and the users' own tags say.

use std::collections::{BTreeMap, BTreeSet};

use time::{Duration, OffsetDateTime};

use super::model::*;
use super::{
    STATUS_DELETED, TAG_ACCESS_KEY_CREATED, TAG_ACCESS_KEY_ID, TAG_DEPARTMENT, TAG_EMAIL,
    TAG_USER_NAME,
};
use crate::event::{format_utc, parse_rfc3339};
use crate::rules::{Rule, Rules};
use crate::state::{
    DENY_ALL_POLICY, MANAGED_BY, STATUS_ACTIVE, STATUS_RETIRED, TAG_EMPLOYEE_ID, TAG_LAST_EVENT_AT,
    TAG_LAST_EVENT_ID, TAG_MANAGED_BY, TAG_MANAGER_EMAIL, TAG_PREVIOUS_ACCESS_KEY_CREATED,
    TAG_PREVIOUS_ACCESS_KEY_ID, TAG_STATUS, TAG_USER_ID,
};

/// A state tag later than now plus this is forged (contract section 5).
const SKEW: Duration = Duration::minutes(5);
/// AWS's managed policy that allows everything.
const ADMINISTRATOR_ACCESS: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

/// What a rule grants, templates included.
#[derive(Default)]
struct Expected {
    groups: BTreeSet<String>,
    policies: BTreeSet<String>,
}

struct Ctx<'a> {
    s: &'a Settings,
    now: OffsetDateTime,
    /// The credential report describes AWS up to this time.
    as_of: Option<OffsetDateTime>,
    templates: BTreeMap<&'a str, &'a IamUser>,
    /// What any rule grants: an extra grant found here is a move not yet applied
    /// rather than a hand-made change.
    any_rule: Expected,
    groups: &'a BTreeMap<String, IamGroup>,
    admin_policies: &'a BTreeSet<String>,
}

pub fn compare(inputs: &Inputs, s: &Settings, now: OffsetDateTime) -> Report {
    let templates: BTreeMap<&str, &IamUser> = inputs
        .users
        .iter()
        .filter(|u| u.path == s.template_path)
        .map(|u| (u.name.as_str(), u))
        .collect();
    let mut cx = Ctx {
        s,
        now,
        as_of: inputs.report.as_of(),
        templates,
        any_rule: Expected::default(),
        groups: &inputs.groups,
        admin_policies: &inputs.admin_policies,
    };
    let mut incomplete = Vec::new();
    for rule in s.rules.all() {
        let (e, missing) = cx.expected(rule);
        if let Some(t) = missing {
            let line = format!(
                "copy_from template {t} does not exist under TEMPLATE_PATH {}: the grants of rules that name it were not checked",
                s.template_path
            );
            if !incomplete.contains(&line) {
                incomplete.push(line);
            }
        }
        cx.any_rule.groups.extend(e.groups);
        cx.any_rule.policies.extend(e.policies);
    }

    let secrets: BTreeMap<&str, &SecretMeta> = inputs
        .secrets
        .iter()
        .filter(|x| x.name.starts_with(&s.secret_prefix))
        .map(|x| (x.name.as_str(), x))
        .collect();

    let mut in_path: Vec<&IamUser> = inputs
        .users
        .iter()
        .filter(|u| u.path.starts_with(&s.user_path))
        .collect();
    in_path.sort_by(|a, b| a.name.cmp(&b.name));

    let mut findings = Vec::new();
    let mut rows = Vec::new();
    let mut managed: BTreeSet<&str> = BTreeSet::new();
    for u in &in_path {
        let tagged = u.tag(TAG_MANAGED_BY) == Some(MANAGED_BY);
        if tagged && u.path == s.user_path {
            managed.insert(&u.name);
            let secret = secrets.get(secret_name(s, &u.name).as_str()).copied();
            rows.push(cx.user(u, secret, &inputs.report, &mut findings));
            findings.extend(super::dates::past_end_date(u, s, now));
        } else {
            let detail = if tagged {
                format!(
                    "tagged {TAG_MANAGED_BY}={MANAGED_BY} but at path {}, not USER_PATH {}: the function never touches it",
                    u.path, s.user_path
                )
            } else {
                format!(
                    "at path {} without {TAG_MANAGED_BY}={MANAGED_BY}: created outside the HR flow",
                    u.path
                )
            };
            findings.push(Finding::user(Code::UnmanagedInPath, &u.name, detail));
        }
    }

    duplicates(&in_path, &managed, &mut findings);

    let mut tombstones = 0;
    for (name, x) in &secrets {
        let user = &name[s.secret_prefix.len()..];
        if managed.contains(user) {
            continue;
        }
        let status = x.tag(TAG_STATUS);
        if x.deleted.is_some() && matches!(status, Some(STATUS_DELETED | STATUS_RETIRED)) {
            // A deleted user's tombstone: it keeps stale events from recreating it.
            tombstones += 1;
            continue;
        }
        let holder = in_path.iter().find(|u| u.name == user);
        let detail = match (holder, x.deleted) {
            (Some(_), _) => format!("its user {user} is not managed by hr-provisioner"),
            (None, Some(_)) => format!(
                "no managed user {user} under {}; scheduled for deletion but not a tombstone ({TAG_STATUS} is {})",
                s.user_path,
                status.unwrap_or("absent")
            ),
            (None, None) => format!("no managed user {user} under {}", s.user_path),
        };
        findings.push(Finding::secret(
            Code::OrphanSecret,
            holder.map(|u| u.name.as_str()),
            name,
            detail,
        ));
    }

    findings
        .sort_by(|a, b| (a.subject(), a.code, &a.detail).cmp(&(b.subject(), b.code, &b.detail)));
    for row in &mut rows {
        let mine = findings
            .iter()
            .filter(|f| f.user_name.as_deref() == Some(row.user_name.as_str()));
        row.findings = mine
            .clone()
            .map(|f| f.code)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        row.secret.consistent = row.secret.present
            && !mine.clone().any(|f| {
                f.secret_name.as_deref() == Some(row.secret.name.as_str())
                    && matches!(
                        f.code,
                        Code::StaleSecret
                            | Code::MissingSecret
                            | Code::NameMismatch
                            | Code::Tampered
                    )
            });
    }

    let mut by_code: BTreeMap<&'static str, usize> =
        Code::ALL.iter().map(|c| (c.as_str(), 0)).collect();
    for f in &findings {
        *by_code.entry(f.code.as_str()).or_default() += 1;
    }
    Report {
        summary: Summary {
            users: rows.len(),
            secrets: secrets.len(),
            tombstones,
            findings: findings.len(),
            by_code,
            credential_report_as_of: cx.as_of.map(format_utc),
        },
        users: rows,
        findings,
        incomplete,
        schedules: super::dates::pending(&inputs.schedules, &inputs.users, s),
        calls: None,
        baseline: None,
    }
}

/// Two managed users with one `hr:employee-id`: a leaver may retire one and
/// leave the other working.
fn duplicates(users: &[&IamUser], managed: &BTreeSet<&str>, out: &mut Vec<Finding>) {
    let mut by_employee: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for u in users.iter().filter(|u| managed.contains(u.name.as_str())) {
        if let Some(id) = u.tag(TAG_EMPLOYEE_ID) {
            by_employee.entry(id).or_default().push(&u.name);
        }
    }
    for (id, names) in by_employee.into_iter().filter(|(_, n)| n.len() > 1) {
        for n in &names {
            let others: Vec<&&str> = names.iter().filter(|o| *o != n).collect();
            out.push(Finding::user(
                Code::DuplicateEmployee,
                n,
                format!(
                    "employee {id} also has managed user(s) {}: one employee, one user",
                    list(others.iter().map(|o| **o))
                ),
            ));
        }
    }
}

fn secret_name(s: &Settings, user: &str) -> String {
    format!("{}{user}", s.secret_prefix)
}

/// The name of the rule `Rules::for_department` picks: the one source of truth.
fn rule_name(rules: &Rules, department: Option<&str>) -> String {
    let chosen = rules.for_department(department);
    rules
        .departments
        .iter()
        .find(|(_, r)| std::ptr::eq(*r, chosen))
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| "default".into())
}

fn same_second(a: OffsetDateTime, b: OffsetDateTime) -> bool {
    a.unix_timestamp() == b.unix_timestamp()
}

fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Ctx<'_> {
    /// A rule's grants; the name of its template when that is missing.
    fn expected(&self, rule: &Rule) -> (Expected, Option<String>) {
        let mut e = Expected {
            groups: rule.groups.iter().cloned().collect(),
            policies: rule.managed_policies.iter().cloned().collect(),
        };
        let mut missing = None;
        if let Some(t) = &rule.copy_from {
            match self.templates.get(t.as_str()) {
                Some(tu) => {
                    e.groups.extend(tu.groups.iter().cloned());
                    e.policies.extend(tu.policies.iter().cloned());
                }
                None => missing = Some(t.clone()),
            }
        }
        (e, missing)
    }

    fn is_deny(&self, policy: &str) -> bool {
        self.s.deny_policy_arn.as_deref() == Some(policy)
    }

    fn user(
        &self,
        u: &IamUser,
        secret: Option<&SecretMeta>,
        report: &CredentialReport,
        out: &mut Vec<Finding>,
    ) -> UserRow {
        let s = self.s;
        let name = u.name.as_str();
        let status = u.tag(TAG_STATUS);
        let retired = status == Some(STATUS_RETIRED);
        let department = u.tag(TAG_DEPARTMENT);
        let rule = s.rules.for_department(department);
        let rule_label = rule_name(&s.rules, department);
        let creds = report.rows.get(name);
        let sname = secret_name(s, name);

        let recorded_created = secret.and_then(|x| x.tag(TAG_ACCESS_KEY_CREATED));
        let recorded_at = recorded_created.and_then(parse_rfc3339);
        let recorded_id = secret.and_then(|x| x.tag(TAG_ACCESS_KEY_ID));
        // A key stored after the report was made cannot be in it yet; a creation
        // time in the future is no such key (a forged or broken tag): judged now.
        let future_key = recorded_at.is_some_and(|t| t > self.now + SKEW);
        let key_pending =
            !future_key && recorded_at.is_some_and(|t| self.as_of.is_none_or(|a| t > a));
        // During a rotation the secret holds the previous key as well.
        let previous_at = secret
            .and_then(|x| x.tag(TAG_PREVIOUS_ACCESS_KEY_CREATED))
            .and_then(parse_rfc3339);
        let previous_id = secret.and_then(|x| x.tag(TAG_PREVIOUS_ACCESS_KEY_ID));

        let keys: Vec<KeyRow> = creds
            .map(|c| {
                c.keys
                    .iter()
                    .map(|k| {
                        let current = recorded_at.is_some_and(|t| same_second(t, k.created));
                        let previous =
                            !current && previous_at.is_some_and(|t| same_second(t, k.created));
                        // Stored: the secret holds it, and every other key the
                        // user has is the secret's too.
                        let held = |c: &KeySlot| {
                            recorded_at.is_some_and(|t| same_second(t, c.created))
                                || previous_at.is_some_and(|t| same_second(t, c.created))
                        };
                        KeyRow {
                            id: if current {
                                recorded_id.map(str::to_owned)
                            } else if previous {
                                previous_id.map(str::to_owned)
                            } else {
                                None
                            },
                            active: k.active,
                            created: format_utc(k.created),
                            age_days: (self.now - k.created).whole_days(),
                            last_used: k.last_used.map(format_utc),
                            stored: (current || previous) && c.keys.iter().all(held),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();

        let (exp, _) = if retired {
            (Expected::default(), None)
        } else {
            self.expected(rule)
        };
        let mut actual_policies: Vec<String> = u.policies.iter().cloned().collect();
        actual_policies.extend(u.inline_policies.iter().map(|p| format!("inline:{p}")));
        let expected_policies: Vec<String> = if retired {
            vec![s
                .deny_policy_arn
                .clone()
                .unwrap_or_else(|| format!("inline:{DENY_ALL_POLICY}"))]
        } else {
            exp.policies.iter().cloned().collect()
        };

        if retired {
            self.retired(u, creds, out);
        } else {
            self.grants(u, &rule_label, &exp, out);
            if let Some(c) = creds {
                self.credentials(u, rule, &rule_label, c, &keys, key_pending, out);
            }
            match secret {
                None => out.push(Finding::secret(
                    Code::MissingSecret,
                    Some(name),
                    &sname,
                    format!("active user without its secret {sname}"),
                )),
                Some(x) if x.deleted.is_some() => out.push(Finding::secret(
                    Code::MissingSecret,
                    Some(name),
                    &sname,
                    format!("secret {sname} is scheduled for deletion while the user is active"),
                )),
                Some(_) => {}
            }
        }
        if let Some(c) = creds {
            self.hygiene(u, c, recorded_at, recorded_id, out);
            self.unused(u, c, out);
        }
        self.unmanaged_credentials(u, creds, out);
        self.baseline_grants(u, out);
        self.names(u, secret, out);
        self.tampering(u, secret, out);
        if let Some(x) = secret {
            self.secret_tags(u, x, creds, recorded_at, key_pending, out);
        }

        UserRow {
            user_name: name.to_owned(),
            employee_id: u.tag(TAG_EMPLOYEE_ID).map(str::to_owned),
            status: status.map(str::to_owned),
            department: department.map(str::to_owned),
            manager_email: u.tag(TAG_MANAGER_EMAIL).map(str::to_owned),
            rule: rule_label,
            groups: Grants {
                expected: exp.groups.iter().cloned().collect(),
                actual: u.groups.iter().cloned().collect(),
            },
            policies: Grants {
                expected: expected_policies,
                actual: actual_policies,
            },
            console: Console {
                enabled: creds.is_some_and(|c| c.password_enabled),
                password_last_used: creds.and_then(|c| c.password_last_used).map(format_utc),
            },
            mfa: creds.map(|c| c.mfa_active),
            access_keys: keys,
            secret: SecretRow {
                name: sname,
                present: secret.is_some(),
                scheduled_for_deletion: secret.is_some_and(|x| x.deleted.is_some()),
                consistent: false,
            },
            last_event: LastEvent {
                at: u.tag(TAG_LAST_EVENT_AT).map(str::to_owned),
                id: u.tag(TAG_LAST_EVENT_ID).map(str::to_owned),
            },
            note: creds.is_none().then(|| {
                "not in the credential report yet (it predates the user): console, MFA and keys not checked".to_owned()
            }),
            findings: Vec::new(),
        }
    }

    /// Groups and policies of an active user against its rule.
    fn grants(&self, u: &IamUser, label: &str, exp: &Expected, out: &mut Vec<Finding>) {
        let name = u.name.as_str();
        for g in exp.groups.difference(&u.groups) {
            out.push(Finding::user(
                Code::MissingGrant,
                name,
                format!("not in group {g}, which rule {label} grants"),
            ));
        }
        let why = |granted_elsewhere: bool| {
            if granted_elsewhere {
                "granted by another rule: a department move not yet applied?"
            } else {
                "granted by no rule: added by hand?"
            }
        };
        for g in u.groups.difference(&exp.groups) {
            out.push(Finding::user(
                Code::ExtraGrant,
                name,
                format!(
                    "in group {g}, which rule {label} does not grant ({})",
                    why(self.any_rule.groups.contains(g))
                ),
            ));
        }
        for p in exp.policies.difference(&u.policies) {
            out.push(Finding::user(
                Code::MissingGrant,
                name,
                format!("policy {p} not attached, which rule {label} grants"),
            ));
        }
        for p in u.policies.difference(&exp.policies) {
            let detail = if self.is_deny(p) {
                format!("deny-all policy {p} on an active user (an unfinished rehire?)")
            } else {
                format!(
                    "policy {p} attached, which rule {label} does not grant ({})",
                    why(self.any_rule.policies.contains(p))
                )
            };
            out.push(Finding::user(Code::ExtraGrant, name, detail));
        }
        for p in &u.inline_policies {
            let detail = if p == DENY_ALL_POLICY {
                format!("inline deny-all policy {p} on an active user (an unfinished rehire?)")
            } else {
                format!("inline policy {p}: rules never grant inline policies (added by hand?)")
            };
            out.push(Finding::user(Code::ExtraGrant, name, detail));
        }
        if let Some(want) = &self.s.boundary_arn {
            match &u.boundary {
                Some(b) if b == want => {}
                Some(b) => out.push(Finding::user(
                    Code::ExtraGrant,
                    name,
                    format!("permissions boundary is {b}, not PERMISSIONS_BOUNDARY_ARN {want}"),
                )),
                None => out.push(Finding::user(
                    Code::ExtraGrant,
                    name,
                    format!("no permissions boundary; PERMISSIONS_BOUNDARY_ARN is {want}"),
                )),
            }
        }
    }

    /// Console and keys of an active user against its rule and its secret.
    #[allow(clippy::too_many_arguments)]
    fn credentials(
        &self,
        u: &IamUser,
        rule: &Rule,
        label: &str,
        c: &Credentials,
        keys: &[KeyRow],
        key_pending: bool,
        out: &mut Vec<Finding>,
    ) {
        let name = u.name.as_str();
        match (rule.console, c.password_enabled) {
            (true, false) => out.push(Finding::user(
                Code::MissingGrant,
                name,
                format!("no console access (login profile), which rule {label} grants"),
            )),
            (false, true) => out.push(Finding::user(
                Code::ExtraGrant,
                name,
                format!("console access (login profile), which rule {label} does not grant"),
            )),
            _ => {}
        }
        if key_pending {
            // The secret records a key newer than the report: judged next time.
            return;
        }
        if rule.access_key && keys.is_empty() {
            out.push(Finding::user(
                Code::MissingGrant,
                name,
                format!("no access key, which rule {label} grants"),
            ));
        }
        for k in keys {
            if k.stored {
                if !rule.access_key {
                    out.push(Finding::user(
                        Code::ExtraGrant,
                        name,
                        format!(
                            "access key {} (created {}), which rule {label} does not grant",
                            k.id.as_deref().unwrap_or("?"),
                            k.created
                        ),
                    ));
                }
                continue;
            }
            let state = if k.active { "active" } else { "inactive" };
            let detail = if k.id.is_some() {
                format!(
                    "{state} key created {} matches the secret's {TAG_ACCESS_KEY_CREATED}, but the user has {} keys: only one can be the stored one",
                    k.created,
                    keys.len()
                )
            } else {
                format!(
                    "{state} key created {} is not the one the secret records: created outside the flow?",
                    k.created
                )
            };
            out.push(Finding::user(Code::UnstoredKey, name, detail));
        }
    }

    /// A retired user keeps nothing but the deny-all.
    fn retired(&self, u: &IamUser, creds: Option<&Credentials>, out: &mut Vec<Finding>) {
        let mut left: Vec<String> = Vec::new();
        if !u.groups.is_empty() {
            left.push(format!("groups {}", list(&u.groups)));
        }
        let policies: Vec<&String> = u.policies.iter().filter(|p| !self.is_deny(p)).collect();
        if !policies.is_empty() {
            left.push(format!("policies {}", list(policies)));
        }
        let inline: Vec<&String> = u
            .inline_policies
            .iter()
            .filter(|p| p.as_str() != DENY_ALL_POLICY)
            .collect();
        if !inline.is_empty() {
            left.push(format!("inline policies {}", list(inline)));
        }
        if let Some(c) = creds {
            if c.password_enabled {
                left.push("a login profile".into());
            }
            for k in c.keys.iter().filter(|k| k.active) {
                left.push(format!(
                    "an active access key created {}",
                    format_utc(k.created)
                ));
            }
        }
        let denied = u.inline_policies.contains(DENY_ALL_POLICY)
            || u.policies.iter().any(|p| self.is_deny(p));
        if !denied {
            left.push(match &self.s.deny_policy_arn {
                Some(a) => format!("no deny-all (neither {a} nor inline {DENY_ALL_POLICY})"),
                None => format!("no deny-all (inline {DENY_ALL_POLICY})"),
            });
        }
        if !left.is_empty() {
            out.push(Finding::user(
                Code::RetiredWithAccess,
                &u.name,
                format!("retired user still has {}", left.join("; ")),
            ));
        }
    }

    /// Key age and MFA, for every managed user.
    fn hygiene(
        &self,
        u: &IamUser,
        c: &Credentials,
        recorded_at: Option<OffsetDateTime>,
        recorded_id: Option<&str>,
        out: &mut Vec<Finding>,
    ) {
        let s = self.s;
        for k in c.keys.iter().filter(|k| k.active) {
            let age = self.now - k.created;
            if age > Duration::days(s.key_max_age_days) {
                let id = recorded_at
                    .filter(|t| same_second(*t, k.created))
                    .and(recorded_id)
                    .map(|id| format!(" {id}"))
                    .unwrap_or_default();
                out.push(Finding::user(
                    Code::KeyAge,
                    &u.name,
                    format!(
                        "active access key{id} created {} is {} days old (KEY_MAX_AGE_DAYS={})",
                        format_utc(k.created),
                        age.whole_days(),
                        s.key_max_age_days
                    ),
                ));
            }
        }
        if c.password_enabled && !c.mfa_active {
            if let Some(created) = c.created.or(u.created) {
                let age = self.now - created;
                if age > Duration::days(s.mfa_grace_days) {
                    out.push(Finding::user(
                        Code::NoMfa,
                        &u.name,
                        format!(
                            "console user without MFA, created {} ({} days ago; MFA_GRACE_DAYS={})",
                            format_utc(created),
                            age.whole_days(),
                            s.mfa_grace_days
                        ),
                    ));
                }
            }
        }
    }

    /// A password or an active key unused for `UNUSED_DISABLE_DAYS` (CIS 2.11):
    /// last use from the credential report, else its creation.
    fn unused(&self, u: &IamUser, c: &Credentials, out: &mut Vec<Finding>) {
        let limit = Duration::days(self.s.unused_disable_days);
        let days = self.s.unused_disable_days;
        let since = |used: Option<OffsetDateTime>, created: Option<OffsetDateTime>| {
            used.map(|t| ("last used", t))
                .or(created.map(|t| ("never used, created", t)))
        };
        if c.password_enabled {
            if let Some((what, t)) = since(c.password_last_used, c.created.or(u.created)) {
                if self.now - t >= limit {
                    out.push(Finding::user(
                        Code::UnusedCredential,
                        &u.name,
                        format!(
                            "console password {what} {} ({} days; UNUSED_DISABLE_DAYS={days})",
                            format_utc(t),
                            (self.now - t).whole_days()
                        ),
                    ));
                }
            }
        }
        for k in c.keys.iter().filter(|k| k.active) {
            if let Some((what, t)) = since(k.last_used, Some(k.created)) {
                if self.now - t >= limit {
                    out.push(Finding::user(
                        Code::UnusedCredential,
                        &u.name,
                        format!(
                            "active access key created {} {what} {} ({} days; UNUSED_DISABLE_DAYS={days})",
                            format_utc(k.created),
                            format_utc(t),
                            (self.now - t).whole_days()
                        ),
                    ));
                }
            }
        }
        let active = c.keys.iter().filter(|k| k.active).count();
        if active > 1 {
            out.push(Finding::user(
                Code::MultipleActiveKeys,
                &u.name,
                format!("{active} active access keys (a rotation in its grace period, or a key made by hand)"),
            ));
        }
    }

    /// Credentials the function never issues: SSH keys, signing certificates,
    /// service-specific credentials.
    fn unmanaged_credentials(&self, u: &IamUser, c: Option<&Credentials>, out: &mut Vec<Finding>) {
        let mut what: Vec<String> = Vec::new();
        if let Some(c) = c {
            for (slot, active) in &c.certs {
                let state = if *active { "active" } else { "inactive" };
                what.push(format!("{state} signing certificate {slot}"));
            }
        }
        for id in u.ssh_keys.iter().flatten() {
            what.push(format!("SSH public key {id}"));
        }
        for id in u.service_credentials.iter().flatten() {
            what.push(format!("service-specific credential {id}"));
        }
        if !what.is_empty() {
            out.push(Finding::user(
                Code::UnmanagedCredential,
                &u.name,
                format!("{}: the function never issues these", what.join(", ")),
            ));
        }
    }

    /// Permissions only through groups (CIS 2.13) and no full administrator
    /// (CIS 2.14). The deny-all grants nothing and is not counted.
    fn baseline_grants(&self, u: &IamUser, out: &mut Vec<Finding>) {
        let direct: Vec<String> = u
            .policies
            .iter()
            .filter(|p| !self.is_deny(p))
            .cloned()
            .chain(
                u.inline_policies
                    .iter()
                    .filter(|p| p.as_str() != DENY_ALL_POLICY)
                    .map(|p| format!("inline:{p}")),
            )
            .collect();
        if !direct.is_empty() {
            out.push(Finding::user(
                Code::DirectPolicy,
                &u.name,
                format!(
                    "policies attached to the user, not through a group: {}",
                    list(&direct)
                ),
            ));
        }
        let is_admin = |p: &String| p == ADMINISTRATOR_ACCESS || self.admin_policies.contains(p);
        let mut via: Vec<String> = u.policies.iter().filter(|p| is_admin(p)).cloned().collect();
        via.extend(u.inline_admin.iter().map(|p| format!("inline:{p}")));
        for g in &u.groups {
            if let Some(group) = self.groups.get(g) {
                via.extend(
                    group
                        .policies
                        .iter()
                        .filter(|p| is_admin(p))
                        .map(|p| format!("{p} (group {g})")),
                );
                via.extend(
                    group
                        .inline_admin
                        .iter()
                        .map(|p| format!("inline:{p} (group {g})")),
                );
            }
        }
        if !via.is_empty() {
            out.push(Finding::user(
                Code::FullAdmin,
                &u.name,
                format!("allowed \"*\" on \"*\" by {}", list(&via)),
            ));
        }
    }

    /// The state tags are the function's memory: in the future, or user and
    /// secret disagreeing, they were forged (contract section 5). A secret
    /// naming another `UserId` than the user's would send a leaver to the wrong
    /// principal: tampering too, never mere staleness.
    fn tampering(&self, u: &IamUser, secret: Option<&SecretMeta>, out: &mut Vec<Finding>) {
        let mut issues: Vec<String> = Vec::new();
        let future = |whose: &str, v: Option<&str>, issues: &mut Vec<String>| {
            if let Some(v) = v {
                match parse_rfc3339(v) {
                    Some(t) if t > self.now + SKEW => {
                        issues.push(format!("{whose} {TAG_LAST_EVENT_AT} {v} is in the future"))
                    }
                    Some(_) => {}
                    None => issues.push(format!("{whose} {TAG_LAST_EVENT_AT} {v:?} is not a time")),
                }
            }
        };
        future("the user's", u.tag(TAG_LAST_EVENT_AT), &mut issues);
        if let Some(x) = secret {
            future("the secret's", x.tag(TAG_LAST_EVENT_AT), &mut issues);
            // Compared as instants; an unparsable value compares as its text.
            fn at(t: Option<&str>) -> Option<Result<i64, &str>> {
                t.map(|v| parse_rfc3339(v).map(|d| d.unix_timestamp()).ok_or(v))
            }
            let (s_at, u_at) = (x.tag(TAG_LAST_EVENT_AT), u.tag(TAG_LAST_EVENT_AT));
            let (s_id, u_id) = (x.tag(TAG_LAST_EVENT_ID), u.tag(TAG_LAST_EVENT_ID));
            if u_at.is_some() && (at(s_at) != at(u_at) || s_id != u_id) {
                issues.push(format!(
                    "the secret's last event is {} at {}, the user's {} at {}",
                    s_id.unwrap_or("absent"),
                    s_at.unwrap_or("absent"),
                    u_id.unwrap_or("absent"),
                    u_at.unwrap_or("absent")
                ));
            }
            if let (Some(have), Some(want)) = (x.tag(TAG_USER_ID), u.user_id.as_deref()) {
                if have != want {
                    issues.push(format!(
                        "the secret's {TAG_USER_ID} is {have}, the user's UserId is {want}"
                    ));
                }
            }
        }
        if !issues.is_empty() {
            let f = match secret {
                Some(x) => {
                    Finding::secret(Code::Tampered, Some(&u.name), &x.name, issues.join("; "))
                }
                None => Finding::user(Code::Tampered, &u.name, issues.join("; ")),
            };
            out.push(f);
        }
    }

    /// The name rule applied to the user's `hr:email`, and the secret's user name.
    fn names(&self, u: &IamUser, secret: Option<&SecretMeta>, out: &mut Vec<Finding>) {
        if let Some(email) = u.tag(TAG_EMAIL) {
            match crate::event::user_name(None, Some(email)) {
                Ok(n) if n == u.name => {}
                Ok(n) => out.push(Finding::user(
                    Code::NameMismatch,
                    &u.name,
                    format!(
                        "{TAG_EMAIL} {email} gives user name {n}; users are never renamed (expected when HR sends an explicit username)"
                    ),
                )),
                Err(e) => out.push(Finding::user(
                    Code::NameMismatch,
                    &u.name,
                    format!("{TAG_EMAIL} {email} gives no valid user name: {e}"),
                )),
            }
        }
        if let Some(x) = secret {
            match x.tag(TAG_USER_NAME) {
                Some(n) if n != u.name => out.push(Finding::secret(
                    Code::NameMismatch,
                    Some(&u.name),
                    &x.name,
                    format!("secret's {TAG_USER_NAME} is {n}, not {}", u.name),
                )),
                _ => {}
            }
        }
    }

    /// The secret's tags against the user (contract section 3). One finding per
    /// secret, listing every disagreement.
    fn secret_tags(
        &self,
        u: &IamUser,
        x: &SecretMeta,
        creds: Option<&Credentials>,
        recorded_at: Option<OffsetDateTime>,
        key_pending: bool,
        out: &mut Vec<Finding>,
    ) {
        let retired = u.tag(TAG_STATUS) == Some(STATUS_RETIRED);
        let mut issues: Vec<String> = Vec::new();
        if x.tag(TAG_MANAGED_BY) != Some(MANAGED_BY) {
            issues.push(format!("not tagged {TAG_MANAGED_BY}={MANAGED_BY}"));
        }
        let pair = |k: &str| (x.tag(k), u.tag(k));
        if let (s, Some(want)) = pair(TAG_EMPLOYEE_ID) {
            if s != Some(want) {
                issues.push(format!(
                    "{TAG_EMPLOYEE_ID} is {}, the user's is {want}",
                    s.unwrap_or("absent")
                ));
            }
        }
        // An active user's scheduled secret is already a missing-secret.
        if retired || x.deleted.is_none() {
            let want = if retired {
                STATUS_RETIRED
            } else {
                STATUS_ACTIVE
            };
            if x.tag(TAG_STATUS) != Some(want) {
                issues.push(format!(
                    "{TAG_STATUS} is {}, the user is {want}",
                    x.tag(TAG_STATUS).unwrap_or("absent")
                ));
            }
        }
        if x.tag(TAG_USER_NAME).is_none() {
            issues.push(format!("no {TAG_USER_NAME} tag"));
        }
        // The last event disagreeing is `tampered`, not stale (see `tampering`).
        if let Some(t) = recorded_at.filter(|t| *t > self.now + SKEW) {
            issues.push(format!(
                "{TAG_ACCESS_KEY_CREATED} {} is in the future: no key can be judged by it",
                format_utc(t)
            ));
        }
        let key_id = x.tag(TAG_ACCESS_KEY_ID);
        let key_created = x.tag(TAG_ACCESS_KEY_CREATED);
        match (key_id, key_created, recorded_at) {
            (None, None, _) => {}
            (_, Some(v), None) => issues.push(format!(
                "{TAG_ACCESS_KEY_CREATED} {v:?} is not an RFC 3339 time"
            )),
            (Some(id), None, _) => issues.push(format!(
                "records access key {id} without {TAG_ACCESS_KEY_CREATED}: it cannot be checked"
            )),
            (id, Some(_), Some(t)) => {
                let id = id.unwrap_or("(no id)");
                if retired {
                    issues.push(format!("still records access key {id} of a retired user"));
                } else if let (Some(c), false) = (creds, key_pending) {
                    if !c.keys.iter().any(|k| same_second(k.created, t)) {
                        issues.push(format!(
                            "records access key {id} created {}, which the user does not have",
                            format_utc(t)
                        ));
                    }
                }
            }
        }
        if retired && x.deleted.is_none() {
            issues.push("the secret of a retired user is not scheduled for deletion".into());
        }
        if !issues.is_empty() {
            out.push(Finding::secret(
                Code::StaleSecret,
                Some(&u.name),
                &x.name,
                issues.join("; "),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00:00 UTC);
    const RULES: &str = r#"{"default":{"groups":["staff"],"console":true,"access_key":false},
      "departments":{
        "engineering":{"groups":["developers","staff"],"console":true,"access_key":true},
        "sales":{"groups":["sales"],"console":true,"access_key":false,
                 "managed_policies":["arn:aws:iam::123456789012:policy/crm"]},
        "ops":{"groups":[],"console":false,"access_key":true,"copy_from":"ops-template"}}}"#;
    const DENY: &str = "arn:aws:iam::123456789012:policy/hr-deny-all";

    fn settings() -> Settings {
        Settings {
            user_path: "/employees/".into(),
            template_path: "/templates/".into(),
            secret_prefix: "hr-provisioner/".into(),
            rules: Rules::parse(RULES).unwrap(),
            key_max_age_days: 90,
            mfa_grace_days: 7,
            deny_policy_arn: Some(DENY.into()),
            boundary_arn: None,
            time_zone: jiff::tz::TimeZone::UTC,
            schedule_group: "hr-provisioner".into(),
            unused_disable_days: 45,
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    const KEY_AT: OffsetDateTime = datetime!(2026-11-20 08:00:00 UTC);
    const CREATED: OffsetDateTime = datetime!(2026-11-20 07:59:00 UTC);

    fn user(name: &str, dept: &str, status: &str) -> IamUser {
        IamUser {
            name: name.into(),
            path: "/employees/".into(),
            created: Some(CREATED),
            tags: tags(&[
                (TAG_EMPLOYEE_ID, &format!("E-{name}")),
                (TAG_MANAGED_BY, MANAGED_BY),
                (TAG_STATUS, status),
                (TAG_LAST_EVENT_AT, "2026-11-20T07:58:00Z"),
                (TAG_LAST_EVENT_ID, &format!("ev-{name}")),
                (TAG_EMAIL, &format!("{name}@example.com")),
                (TAG_DEPARTMENT, dept),
            ]),
            ..IamUser::default()
        }
    }

    fn secret(name: &str, status: &str, key: bool) -> SecretMeta {
        let mut t = tags(&[
            (TAG_EMPLOYEE_ID, &format!("E-{name}")),
            (TAG_MANAGED_BY, MANAGED_BY),
            (TAG_STATUS, status),
            (TAG_LAST_EVENT_AT, "2026-11-20T07:58:00Z"),
            (TAG_LAST_EVENT_ID, &format!("ev-{name}")),
            (TAG_USER_NAME, name),
        ]);
        if key {
            t.insert(
                TAG_ACCESS_KEY_ID.into(),
                format!("AKIA{}", name.to_uppercase()),
            );
            // Another offset and sub-second digits: compared as instants, to the second.
            t.insert(
                TAG_ACCESS_KEY_CREATED.into(),
                "2026-11-20T09:00:00.250+01:00".into(),
            );
        }
        SecretMeta {
            name: format!("hr-provisioner/{name}"),
            tags: t,
            deleted: None,
        }
    }

    fn creds(name: &str, console: bool, keys: &[OffsetDateTime]) -> Credentials {
        Credentials {
            user: name.into(),
            created: Some(CREATED),
            password_enabled: console,
            password_last_used: None,
            mfa_active: false,
            keys: keys
                .iter()
                .enumerate()
                .map(|(i, t)| KeySlot {
                    slot: i as u8 + 1,
                    active: true,
                    created: *t,
                    last_used: None,
                })
                .collect(),
            certs: Vec::new(),
        }
    }

    /// A clean account: an engineer (console + stored key), a salesperson, an ops
    /// user whose rule copies a template, a properly retired user, a tombstone.
    fn clean() -> Inputs {
        let mut eng = user("jane.doe", "engineering", "active");
        eng.groups = set(&["developers", "staff"]);
        let mut sales = user("sam.sales", "sales", "active");
        sales.groups = set(&["sales"]);
        sales.policies = set(&["arn:aws:iam::123456789012:policy/crm"]);
        let mut ops = user("oscar.ops", "ops", "active");
        ops.groups = set(&["operators"]);
        ops.policies = set(&["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
        let template = IamUser {
            name: "ops-template".into(),
            path: "/templates/".into(),
            groups: set(&["operators"]),
            policies: set(&["arn:aws:iam::aws:policy/ReadOnlyAccess"]),
            ..IamUser::default()
        };
        let mut gone = user("rita.retired", "sales", "retired");
        gone.policies = set(&[DENY]);
        let mut gone_secret = secret("rita.retired", "retired", false);
        gone_secret.deleted = Some(NOW);
        let mut tomb = secret("ted.deleted", "deleted", false);
        tomb.deleted = Some(NOW);
        let mut report = CredentialReport {
            generated: Some(datetime!(2026-11-26 11:00:00 UTC)),
            rows: BTreeMap::new(),
        };
        for c in [
            creds("jane.doe", true, &[KEY_AT]),
            creds("sam.sales", true, &[]),
            creds("oscar.ops", false, &[KEY_AT]),
            creds("rita.retired", false, &[]),
        ] {
            report.rows.insert(c.user.clone(), c);
        }
        Inputs {
            users: vec![eng, sales, ops, template, gone],
            report,
            secrets: vec![
                secret("jane.doe", "active", true),
                secret("sam.sales", "active", false),
                secret("oscar.ops", "active", true),
                gone_secret,
                tomb,
            ],
            ..Inputs::default()
        }
    }

    /// The checks of contract v2. The fixture's rules grant managed policies
    /// (discouraged, but allowed) and some cases need two keys: the CIS checks
    /// those trip (`direct-policy`, `multiple-active-keys`) are tested apart,
    /// with `run_all`.
    fn run(i: &Inputs) -> Report {
        let mut r = run_all(i);
        r.findings
            .retain(|f| !matches!(f.code, Code::DirectPolicy | Code::MultipleActiveKeys));
        r
    }

    fn run_all(i: &Inputs) -> Report {
        compare(i, &settings(), NOW)
    }

    fn codes(r: &Report) -> Vec<(&'static str, String)> {
        r.findings
            .iter()
            .map(|f| (f.code.as_str(), f.subject().to_owned()))
            .collect()
    }

    fn only(r: &Report, code: Code, subject: &str) -> Finding {
        assert_eq!(
            codes(r),
            vec![(code.as_str(), subject.to_owned())],
            "{:#?}",
            r.findings
        );
        r.findings[0].clone()
    }

    fn find<'a>(i: &'a mut Inputs, name: &str) -> &'a mut IamUser {
        i.users.iter_mut().find(|u| u.name == name).unwrap()
    }

    fn find_secret<'a>(i: &'a mut Inputs, name: &str) -> &'a mut SecretMeta {
        i.secrets
            .iter_mut()
            .find(|x| x.name == format!("hr-provisioner/{name}"))
            .unwrap()
    }

    #[test]
    fn a_clean_account_has_no_finding_and_full_rows() {
        let r = run(&clean());
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        assert_eq!(r.exit_code(), 0);
        assert_eq!(r.summary.users, 4);
        assert_eq!(r.summary.tombstones, 1);
        assert_eq!(r.summary.by_code.len(), Code::ALL.len());
        let jane = &r.users.iter().find(|u| u.user_name == "jane.doe").unwrap();
        assert_eq!(jane.rule, "engineering");
        assert_eq!(jane.employee_id.as_deref(), Some("E-jane.doe"));
        assert_eq!(jane.groups.expected, vec!["developers", "staff"]);
        assert_eq!(jane.access_keys.len(), 1);
        let k = &jane.access_keys[0];
        assert!(k.stored && k.active);
        assert_eq!(k.id.as_deref(), Some("AKIAJANE.DOE"));
        assert_eq!(k.age_days, 6);
        assert!(jane.secret.present && jane.secret.consistent);
        assert_eq!(jane.mfa, Some(false));
        let oscar = &r.users.iter().find(|u| u.user_name == "oscar.ops").unwrap();
        assert_eq!(oscar.groups.expected, vec!["operators"]);
        let rita = &r
            .users
            .iter()
            .find(|u| u.user_name == "rita.retired")
            .unwrap();
        assert_eq!(rita.policies.expected, vec![DENY]);
        assert!(rita.secret.scheduled_for_deletion && rita.secret.consistent);
        // The template is not a managed user.
        assert!(r.users.iter().all(|u| u.user_name != "ops-template"));
    }

    #[test]
    fn missing_grant() {
        let mut i = clean();
        find(&mut i, "jane.doe").groups = set(&["staff"]);
        let f = only(&run(&i), Code::MissingGrant, "jane.doe");
        assert!(f.detail.contains("developers"), "{}", f.detail);
        // A copied template grant counts as well.
        let mut i = clean();
        find(&mut i, "oscar.ops").policies.clear();
        let f = only(&run(&i), Code::MissingGrant, "oscar.ops");
        assert!(f.detail.contains("ReadOnlyAccess"));
        // Console and key are grants too.
        let mut i = clean();
        i.report.rows.get_mut("sam.sales").unwrap().password_enabled = false;
        let f = only(&run(&i), Code::MissingGrant, "sam.sales");
        assert!(f.detail.contains("console"));
        assert_eq!(f.severity, Severity::Low);
    }

    #[test]
    fn extra_grant_by_hand_or_by_another_rule() {
        let mut i = clean();
        find(&mut i, "jane.doe").groups.insert("sales".into());
        find(&mut i, "jane.doe").groups.insert("admins".into());
        find(&mut i, "sam.sales")
            .policies
            .insert("arn:aws:iam::123456789012:policy/by-hand".into());
        find(&mut i, "sam.sales")
            .inline_policies
            .insert("adhoc".into());
        let r = run(&i);
        assert_eq!(
            codes(&r),
            vec![
                ("extra-grant", "jane.doe".into()),
                ("extra-grant", "jane.doe".into()),
                ("extra-grant", "sam.sales".into()),
                ("extra-grant", "sam.sales".into()),
            ]
        );
        let details: Vec<&str> = r.findings.iter().map(|f| f.detail.as_str()).collect();
        assert!(details[0].contains("admins") && details[0].contains("by hand"));
        assert!(details[1].contains("sales") && details[1].contains("another rule"));
        assert!(details.iter().any(|d| d.contains("inline policy adhoc")));
        assert!(details.iter().any(|d| d.contains("policy/by-hand")));
        assert!(r.findings.iter().all(|f| f.severity == Severity::High));
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn unstored_key() {
        // A second key, created by hand: neither is "stored" (the contract's rule),
        // so both are reported.
        let mut i = clean();
        i.report
            .rows
            .get_mut("jane.doe")
            .unwrap()
            .keys
            .push(KeySlot {
                slot: 2,
                active: true,
                created: datetime!(2026-11-25 10:00:00 UTC),
                last_used: None,
            });
        let r = run(&i);
        assert_eq!(
            codes(&r),
            vec![
                ("unstored-key", "jane.doe".into()),
                ("unstored-key", "jane.doe".into())
            ],
            "{:#?}",
            r.findings
        );
        assert!(r.users[0].access_keys.iter().all(|k| !k.stored));
        // A key on a user whose secret records none.
        let mut i = clean();
        i.report.rows.get_mut("sam.sales").unwrap().keys = creds("x", true, &[KEY_AT]).keys;
        let f = only(&run(&i), Code::UnstoredKey, "sam.sales");
        assert!(f.detail.contains("outside the flow"));
    }

    #[test]
    fn stale_secret() {
        let mut i = clean();
        let x = find_secret(&mut i, "jane.doe");
        x.tags
            .insert(TAG_EMPLOYEE_ID.into(), "E-someone-else".into());
        let f = only(&run(&i), Code::StaleSecret, "jane.doe");
        assert_eq!(f.secret_name.as_deref(), Some("hr-provisioner/jane.doe"));
        assert!(f.detail.contains("E-someone-else"));
        // The recorded key is gone (rotated by hand): stale, and the new key unstored.
        let mut i = clean();
        i.report.rows.get_mut("jane.doe").unwrap().keys[0].created =
            datetime!(2026-11-24 00:00:00 UTC);
        let r = run(&i);
        assert_eq!(
            codes(&r),
            vec![
                ("unstored-key", "jane.doe".into()),
                ("stale-secret", "jane.doe".into())
            ]
        );
        assert!(r.findings[1].detail.contains("does not have"));
        assert!(!r.users[0].secret.consistent);
        // A retired user's secret left live, still recording a key.
        let mut i = clean();
        let x = find_secret(&mut i, "rita.retired");
        x.deleted = None;
        x.tags.insert(TAG_ACCESS_KEY_ID.into(), "AKIAOLD".into());
        x.tags
            .insert(TAG_ACCESS_KEY_CREATED.into(), "2026-01-01T00:00:00Z".into());
        let f = only(&run(&i), Code::StaleSecret, "rita.retired");
        assert!(f.detail.contains("AKIAOLD") && f.detail.contains("not scheduled"));
    }

    #[test]
    fn a_key_newer_than_the_credential_report_is_not_judged() {
        let mut i = clean();
        let fresh = "2026-11-26T11:30:00Z";
        find_secret(&mut i, "jane.doe")
            .tags
            .insert(TAG_ACCESS_KEY_CREATED.into(), fresh.into());
        // The report (11:00) still shows the old key.
        assert!(run(&i).findings.is_empty(), "{:#?}", run(&i).findings);
    }

    #[test]
    fn missing_secret() {
        let mut i = clean();
        i.secrets.retain(|x| x.name != "hr-provisioner/sam.sales");
        let f = only(&run(&i), Code::MissingSecret, "sam.sales");
        assert_eq!(f.secret_name.as_deref(), Some("hr-provisioner/sam.sales"));
        let mut i = clean();
        find_secret(&mut i, "sam.sales").deleted = Some(NOW);
        let f = only(&run(&i), Code::MissingSecret, "sam.sales");
        assert!(f.detail.contains("scheduled for deletion"));
        // A retired user needs none.
        let mut i = clean();
        i.secrets
            .retain(|x| x.name != "hr-provisioner/rita.retired");
        assert!(run(&i).findings.is_empty());
    }

    #[test]
    fn orphan_secret_but_not_a_tombstone() {
        let mut i = clean();
        i.secrets.push(secret("ghost", "active", false));
        let mut half = secret("half.gone", "active", false);
        half.deleted = Some(NOW);
        i.secrets.push(half);
        // Outside the prefix: not ours to judge.
        let mut elsewhere = secret("other", "active", false);
        elsewhere.name = "team/other".into();
        i.secrets.push(elsewhere);
        let r = run(&i);
        assert_eq!(
            codes(&r),
            vec![
                ("orphan-secret", "hr-provisioner/ghost".into()),
                ("orphan-secret", "hr-provisioner/half.gone".into())
            ]
        );
        assert!(r.findings.iter().all(|f| f.user_name.is_none()));
        assert!(r.findings[1].detail.contains("not a tombstone"));
        assert_eq!(r.summary.tombstones, 1);
    }

    #[test]
    fn key_age() {
        let mut i = clean();
        let old = datetime!(2026-08-01 00:00:00 UTC);
        i.report.rows.get_mut("jane.doe").unwrap().keys[0].created = old;
        // Used yesterday: old, not unused.
        i.report.rows.get_mut("jane.doe").unwrap().keys[0].last_used =
            Some(NOW - Duration::days(1));
        find_secret(&mut i, "jane.doe")
            .tags
            .insert(TAG_ACCESS_KEY_CREATED.into(), format_utc(old));
        let f = only(&run(&i), Code::KeyAge, "jane.doe");
        assert!(
            f.detail.contains("AKIAJANE.DOE") && f.detail.contains("117 days"),
            "{}",
            f.detail
        );
        // An inactive key does not age.
        i.report.rows.get_mut("jane.doe").unwrap().keys[0].active = false;
        assert!(run(&i).findings.is_empty());
    }

    #[test]
    fn no_mfa_after_the_grace_only() {
        let mut i = clean();
        i.report.rows.get_mut("sam.sales").unwrap().created = Some(NOW - Duration::days(6));
        i.report.rows.get_mut("jane.doe").unwrap().created = Some(NOW - Duration::days(8));
        let f = only(&run(&i), Code::NoMfa, "jane.doe");
        assert!(f.detail.contains("MFA_GRACE_DAYS=7"));
        i.report.rows.get_mut("jane.doe").unwrap().mfa_active = true;
        assert!(run(&i).findings.is_empty());
    }

    #[test]
    fn retired_with_access() {
        let mut i = clean();
        let rita = find(&mut i, "rita.retired");
        rita.groups = set(&["sales"]);
        rita.policies.clear();
        i.report
            .rows
            .get_mut("rita.retired")
            .unwrap()
            .password_enabled = true;
        let f = only(&run(&i), Code::RetiredWithAccess, "rita.retired");
        assert!(
            f.detail.contains("groups sales")
                && f.detail.contains("login profile")
                && f.detail.contains("no deny-all"),
            "{}",
            f.detail
        );
        // The legacy inline deny-all counts as the deny.
        let mut i = clean();
        let rita = find(&mut i, "rita.retired");
        rita.policies.clear();
        rita.inline_policies = set(&[DENY_ALL_POLICY]);
        assert!(run(&i).findings.is_empty());
    }

    #[test]
    fn unmanaged_in_path() {
        let mut i = clean();
        let mut bob = user("bob", "sales", "active");
        bob.tags.remove(TAG_MANAGED_BY);
        let mut sub = user("sub", "sales", "active");
        sub.path = "/employees/contractors/".into();
        // Outside USER_PATH: not reported.
        let mut outside = user("root.admin", "", "active");
        outside.path = "/".into();
        i.users.extend([bob, sub, outside]);
        let r = run(&i);
        assert_eq!(
            codes(&r),
            vec![
                ("unmanaged-in-path", "bob".into()),
                ("unmanaged-in-path", "sub".into())
            ]
        );
        assert!(r.users.iter().all(|u| u.user_name != "bob"));
        // A secret under the prefix whose user is unmanaged is an orphan.
        i.secrets.push(secret("bob", "active", false));
        let r = run(&i);
        assert!(codes(&r).contains(&("orphan-secret", "bob".into())));
    }

    #[test]
    fn name_mismatch() {
        let mut i = clean();
        find(&mut i, "sam.sales")
            .tags
            .insert(TAG_EMAIL.into(), "samuel.sales@example.com".into());
        let f = only(&run(&i), Code::NameMismatch, "sam.sales");
        assert!(f.secret_name.is_none() && f.detail.contains("samuel.sales"));
        let mut i = clean();
        find_secret(&mut i, "sam.sales")
            .tags
            .insert(TAG_USER_NAME.into(), "someone".into());
        let r = run(&i);
        let f = only(&r, Code::NameMismatch, "sam.sales");
        assert_eq!(f.secret_name.as_deref(), Some("hr-provisioner/sam.sales"));
        assert!(
            !r.users
                .iter()
                .find(|u| u.user_name == "sam.sales")
                .unwrap()
                .secret
                .consistent
        );
    }

    #[test]
    fn a_missing_template_makes_the_audit_incomplete() {
        let mut i = clean();
        i.users.retain(|u| u.name != "ops-template");
        let r = run(&i);
        assert_eq!(r.incomplete.len(), 1, "{:?}", r.incomplete);
        assert!(r.incomplete[0].contains("ops-template"));
        assert_eq!(r.exit_code(), 2);
    }

    #[test]
    fn duplicate_employee() {
        let mut i = clean();
        let mut twin = user("jane.d", "engineering", "active");
        twin.tags
            .insert(TAG_EMPLOYEE_ID.into(), "E-jane.doe".into());
        twin.groups = set(&["developers", "staff"]);
        i.users.push(twin);
        i.secrets.push(secret("jane.d", "active", false));
        i.secrets
            .last_mut()
            .unwrap()
            .tags
            .insert(TAG_EMPLOYEE_ID.into(), "E-jane.doe".into());
        i.report
            .rows
            .insert("jane.d".into(), creds("jane.d", true, &[]));
        let mut r = run(&i);
        // The twin's own rule wants a key: not what this test is about.
        r.findings.retain(|f| f.code != Code::MissingGrant);
        assert_eq!(
            codes(&r),
            vec![
                ("duplicate-employee", "jane.d".into()),
                ("duplicate-employee", "jane.doe".into())
            ],
            "{:#?}",
            r.findings
        );
        assert!(
            r.findings[0].detail.contains("E-jane.doe")
                && r.findings[0].detail.contains("jane.doe")
        );
        assert_eq!(r.findings[0].severity, Severity::High);
    }

    #[test]
    fn unmanaged_credentials_from_the_report_and_the_lists() {
        let mut i = clean();
        i.report.rows.get_mut("jane.doe").unwrap().certs = vec![(1, true)];
        find(&mut i, "sam.sales").ssh_keys = Some(vec!["APKAEXAMPLE".into()]);
        find(&mut i, "sam.sales").service_credentials = Some(vec!["ACCAEXAMPLE".into()]);
        let r = run(&i);
        assert_eq!(
            codes(&r),
            vec![
                ("unmanaged-credential", "jane.doe".into()),
                ("unmanaged-credential", "sam.sales".into())
            ]
        );
        assert!(r.findings[0]
            .detail
            .contains("active signing certificate 1"));
        assert!(
            r.findings[1].detail.contains("SSH public key APKAEXAMPLE")
                && r.findings[1]
                    .detail
                    .contains("service-specific credential ACCAEXAMPLE")
        );
        // Listed and empty is clean.
        let mut i = clean();
        find(&mut i, "sam.sales").ssh_keys = Some(vec![]);
        assert!(run(&i).findings.is_empty());
    }

    #[test]
    fn tampered_state_tags() {
        // A user's last event in the future (one TagUser makes every event stale).
        let mut i = clean();
        find(&mut i, "sam.sales")
            .tags
            .insert(TAG_LAST_EVENT_AT.into(), "2026-11-26T12:06:00Z".into());
        find_secret(&mut i, "sam.sales")
            .tags
            .insert(TAG_LAST_EVENT_AT.into(), "2026-11-26T12:06:00Z".into());
        let f = only(&run(&i), Code::Tampered, "sam.sales");
        assert!(f.detail.contains("the user's hr:last-event-at") && f.detail.contains("future"));
        assert_eq!(f.severity, Severity::High);
        // Within the skew: not tampering.
        let mut i = clean();
        find(&mut i, "sam.sales")
            .tags
            .insert(TAG_LAST_EVENT_AT.into(), "2026-11-26T12:05:00Z".into());
        find_secret(&mut i, "sam.sales")
            .tags
            .insert(TAG_LAST_EVENT_AT.into(), "2026-11-26T12:05:00Z".into());
        assert!(run(&i).findings.is_empty(), "{:#?}", run(&i).findings);
        // User and secret disagreeing on the last event.
        let mut i = clean();
        find_secret(&mut i, "jane.doe")
            .tags
            .insert(TAG_LAST_EVENT_ID.into(), "ev-old".into());
        let f = only(&run(&i), Code::Tampered, "jane.doe");
        assert!(f.detail.contains("ev-old") && f.secret_name.is_some());
        assert!(!run(&i).users[0].secret.consistent);
        // The secret naming another IAM user id.
        let mut i = clean();
        find(&mut i, "jane.doe").user_id = Some("AIDAJANE".into());
        find_secret(&mut i, "jane.doe")
            .tags
            .insert(TAG_USER_ID.into(), "AIDAOTHER".into());
        let f = only(&run(&i), Code::Tampered, "jane.doe");
        assert!(f.detail.contains("AIDAOTHER") && f.detail.contains("AIDAJANE"));
        find_secret(&mut i, "jane.doe")
            .tags
            .insert(TAG_USER_ID.into(), "AIDAJANE".into());
        assert!(run(&i).findings.is_empty());
    }

    #[test]
    fn a_key_creation_time_in_the_future_is_a_stale_secret_not_a_pending_key() {
        let mut i = clean();
        find_secret(&mut i, "jane.doe")
            .tags
            .insert(TAG_ACCESS_KEY_CREATED.into(), "2027-01-01T00:00:00Z".into());
        let r = run(&i);
        // The real key is then judged: not the one recorded.
        assert_eq!(
            codes(&r),
            vec![
                ("unstored-key", "jane.doe".into()),
                ("stale-secret", "jane.doe".into())
            ],
            "{:#?}",
            r.findings
        );
        assert!(r.findings[1].detail.contains("in the future"));
    }

    #[test]
    fn unused_credentials_at_the_boundary() {
        // Password never used: judged from creation. 45 days is unused, 44 not.
        let mut i = clean();
        i.report.rows.get_mut("sam.sales").unwrap().created = Some(NOW - Duration::days(44));
        find(&mut i, "sam.sales").created = Some(NOW - Duration::days(44));
        i.report.rows.get_mut("sam.sales").unwrap().mfa_active = true;
        assert!(run(&i).findings.is_empty(), "{:#?}", run(&i).findings);
        i.report.rows.get_mut("sam.sales").unwrap().created = Some(NOW - Duration::days(45));
        let f = only(&run(&i), Code::UnusedCredential, "sam.sales");
        assert!(f.detail.contains("never used") && f.detail.contains("45 days"));
        assert_eq!(f.controls, ["CIS 2.11", "IAM.22", "IAM.8"]);
        // Used 44 days ago: fine, whatever its age.
        i.report
            .rows
            .get_mut("sam.sales")
            .unwrap()
            .password_last_used = Some(NOW - Duration::days(44));
        assert!(run(&i).findings.is_empty());
        // A key: its last use, else its creation.
        let mut i = clean();
        let old = NOW - Duration::days(60);
        i.report.rows.get_mut("jane.doe").unwrap().keys[0].created = old;
        find_secret(&mut i, "jane.doe")
            .tags
            .insert(TAG_ACCESS_KEY_CREATED.into(), format_utc(old));
        let f = only(&run(&i), Code::UnusedCredential, "jane.doe");
        assert!(f.detail.contains("access key") && f.detail.contains("60 days"));
        i.report.rows.get_mut("jane.doe").unwrap().keys[0].last_used =
            Some(NOW - Duration::days(45));
        only(&run(&i), Code::UnusedCredential, "jane.doe");
        i.report.rows.get_mut("jane.doe").unwrap().keys[0].last_used =
            Some(NOW - Duration::days(44));
        assert!(run(&i).findings.is_empty());
        // An inactive key is already disabled.
        i.report.rows.get_mut("jane.doe").unwrap().keys[0].last_used = None;
        i.report.rows.get_mut("jane.doe").unwrap().keys[0].active = false;
        assert!(run(&i)
            .findings
            .iter()
            .all(|f| f.code != Code::UnusedCredential));
    }

    #[test]
    fn cis_grants_direct_policies_full_admin_and_two_active_keys() {
        let mut i = clean();
        // The rule's own managed policies are direct attachments too.
        let r = run_all(&i);
        assert_eq!(
            codes(&r),
            vec![
                ("direct-policy", "oscar.ops".into()),
                ("direct-policy", "sam.sales".into())
            ]
        );
        assert_eq!(r.findings[0].controls, ["CIS 2.13", "IAM.2"]);
        // The deny-all of a retired user grants nothing: not counted.
        assert!(r.findings.iter().all(|f| f.subject() != "rita.retired"));
        // Full administrator: AWS's policy, a customer one allowing *:*, an inline
        // one, or through a group.
        let mine = "arn:aws:iam::123456789012:policy/god-mode";
        i.admin_policies.insert(mine.into());
        find(&mut i, "sam.sales").policies.insert(mine.into());
        find(&mut i, "oscar.ops")
            .policies
            .insert(ADMINISTRATOR_ACCESS.into());
        i.groups.insert(
            "developers".into(),
            IamGroup {
                policies: BTreeSet::new(),
                inline_admin: set(&["all"]),
            },
        );
        let r = run_all(&i);
        let admin: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| f.code == Code::FullAdmin)
            .collect();
        assert_eq!(admin.len(), 3, "{:#?}", r.findings);
        assert!(admin[0].detail.contains("inline:all (group developers)"));
        assert!(admin[1].detail.contains("AdministratorAccess"));
        assert!(admin[2].detail.contains("god-mode"));
        assert_eq!(admin[0].controls, ["CIS 2.14", "IAM.1"]);
        // Two active keys, both stored during a rotation: one finding, no unstored.
        let mut i = clean();
        let newer = datetime!(2026-11-25 10:00:00 UTC);
        i.report
            .rows
            .get_mut("jane.doe")
            .unwrap()
            .keys
            .push(KeySlot {
                slot: 2,
                active: true,
                created: newer,
                last_used: None,
            });
        let x = find_secret(&mut i, "jane.doe");
        let old_created = x.tags[TAG_ACCESS_KEY_CREATED].clone();
        x.tags
            .insert(TAG_PREVIOUS_ACCESS_KEY_ID.into(), "AKIAOLD".into());
        x.tags
            .insert(TAG_PREVIOUS_ACCESS_KEY_CREATED.into(), old_created);
        x.tags.insert(TAG_ACCESS_KEY_ID.into(), "AKIANEW".into());
        x.tags
            .insert(TAG_ACCESS_KEY_CREATED.into(), format_utc(newer));
        let r = run_all(&i);
        let jane: Vec<_> = codes(&r)
            .into_iter()
            .filter(|(_, u)| u == "jane.doe")
            .collect();
        assert_eq!(
            jane,
            vec![("multiple-active-keys", "jane.doe".into())],
            "{:#?}",
            r.findings
        );
        let row = r.users.iter().find(|u| u.user_name == "jane.doe").unwrap();
        assert!(row.access_keys.iter().all(|k| k.stored));
        let ids: Vec<_> = row
            .access_keys
            .iter()
            .map(|k| k.id.clone().unwrap())
            .collect();
        assert_eq!(ids, ["AKIAOLD", "AKIANEW"]);
    }

    #[test]
    fn every_code_is_covered_and_named_stably() {
        let names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "missing-grant",
                "extra-grant",
                "unstored-key",
                "stale-secret",
                "missing-secret",
                "orphan-secret",
                "key-age",
                "no-mfa",
                "retired-with-access",
                "unmanaged-in-path",
                "name-mismatch",
                "duplicate-employee",
                "unmanaged-credential",
                "tampered",
                "unused-credential",
                "multiple-active-keys",
                "direct-policy",
                "full-admin",
                "past-end-date"
            ]
        );
        for c in Code::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
