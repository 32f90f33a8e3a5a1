//! The audit's reads: three listings whose number of calls grows only with
//! paging, never per user. Secrets are listed with their tags; their values are
//! never read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_iam::types::{EntityType, ReportStateType};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::dates::ScheduleRow;
use futures::{StreamExt, TryStreamExt};

use super::model::{
    Calls, CredentialReport, Credentials, IamGroup, IamUser, Inputs, KeySlot, SecretMeta, Settings,
};
use super::ReviewError;
use crate::aws::{call, classify, AwsError, Budget, ErrorKind, Retry};
use crate::event::parse_rfc3339;
use crate::state::{MANAGED_BY, TAG_MANAGED_BY};

/// IAM's largest page for `GetAccountAuthorizationDetails`.
const IAM_PAGE: i32 = 1000;
/// Secrets Manager's largest page for `ListSecrets`.
const SECRETS_PAGE: i32 = 100;
/// Per-user lists (SSH keys, service-specific credentials) run this many at once.
const PER_USER_AT_ONCE: usize = 4;

/// Which read a progress message is about; they run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Users,
    CredentialReport,
    Secrets,
    /// SSH keys and service-specific credentials, listed per managed user.
    UserCredentials,
}

/// Told how the reads advance (a terminal's progress indicator).
pub trait Progress: Send + Sync {
    fn update(&self, _part: Part, _message: String) {}
}

/// No progress shown.
pub struct Quiet;
impl Progress for Quiet {}

pub struct Reader {
    iam: aws_sdk_iam::Client,
    secrets: aws_sdk_secretsmanager::Client,
    scheduler: aws_sdk_scheduler::Client,
    budget: Budget,
    /// The credential report is polled until ready, first after this long, then
    /// at doubling intervals up to 5 s, for at most `report_wait` in all.
    pub first_poll: Duration,
    pub report_wait: Duration,
    calls: Mutex<BTreeMap<String, u32>>,
    /// An emulator endpoint may lack a per-user list: taken as "not listed".
    pub tolerate_unsupported: bool,
}

fn time_of(t: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.secs()).ok()
}

impl Reader {
    /// `deadline` bounds every call and retry.
    pub fn new(sdk: &SdkConfig, deadline: Instant) -> Self {
        // Only an emulator endpoint may lack an API; real AWS never does.
        let tolerate_unsupported = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_IAM").is_some();
        if tolerate_unsupported {
            // An emulator's code-less 500 means "not implemented", not "retry".
            crate::aws::set_emulator_endpoint();
        }
        Reader {
            iam: aws_sdk_iam::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            scheduler: aws_sdk_scheduler::Client::new(sdk),
            budget: Budget::until(deadline),
            first_poll: Duration::from_millis(250),
            report_wait: Duration::from_secs(120),
            calls: Mutex::new(BTreeMap::new()),
            tolerate_unsupported,
        }
    }

    /// The AWS calls made so far, retries included.
    pub fn calls(&self) -> Calls {
        let by_operation = self.calls.lock().map(|c| c.clone()).unwrap_or_default();
        Calls {
            total: by_operation.values().sum(),
            by_operation,
        }
    }

    fn count(&self, op: &str) {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(op.to_owned()).or_default() += 1;
        }
    }

    /// The three reads, at once.
    pub async fn read(&self, s: &Settings, progress: &dyn Progress) -> Result<Inputs, ReviewError> {
        // Boxed: three SDK call chains inline make a future too deep to lay out.
        let (details, report, secrets, schedules) = futures::try_join!(
            Box::pin(async {
                let mut d = self.users(s, progress).await?;
                self.user_credentials(s, &mut d.users, progress).await?;
                Ok::<_, ReviewError>(d)
            }),
            Box::pin(self.credential_report(progress)),
            Box::pin(async {
                self.secrets(&s.secret_prefix, progress)
                    .await
                    .map_err(ReviewError::from)
            }),
            Box::pin(async {
                self.schedules(&s.schedule_group)
                    .await
                    .map_err(ReviewError::from)
            }),
        )?;
        Ok(Inputs {
            users: details.users,
            report,
            secrets,
            schedules,
            groups: details.groups,
            admin_policies: details.admin_policies,
        })
    }

    /// SSH public keys and service-specific credentials of every managed user:
    /// two calls per managed user (IAM has no account-wide list of either), a
    /// few at once. Neither appears in the credential report.
    async fn user_credentials(
        &self,
        s: &Settings,
        users: &mut [IamUser],
        progress: &dyn Progress,
    ) -> Result<(), AwsError> {
        let managed: Vec<usize> = users
            .iter()
            .enumerate()
            .filter(|(_, u)| u.path == s.user_path && u.tag(TAG_MANAGED_BY) == Some(MANAGED_BY))
            .map(|(i, _)| i)
            .collect();
        let total = managed.len();
        let names: Vec<(usize, String)> = managed
            .iter()
            .map(|&i| (i, users[i].name.clone()))
            .collect();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let lists: Vec<(usize, Listed, Listed)> = futures::stream::iter(names)
            .map(|(i, name)| {
                let done = &done;
                async move {
                    let (ssh, svc) =
                        futures::try_join!(self.ssh_keys(&name), self.service_credentials(&name))?;
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    progress.update(
                        Part::UserCredentials,
                        format!("SSH keys and service credentials: {n}/{total} users"),
                    );
                    Ok::<_, AwsError>((i, ssh, svc))
                }
            })
            .buffer_unordered(PER_USER_AT_ONCE)
            .try_collect()
            .await?;
        for (i, ssh, svc) in lists {
            users[i].ssh_keys = ssh;
            users[i].service_credentials = svc;
        }
        Ok(())
    }

    /// `None` when an emulator lacks the call: "not implemented", or an answer
    /// without an error code (moto's 500 for an operation it lacks, which may be
    /// classified as transient when the process never marked its endpoint as an
    /// emulator).
    fn unless_unsupported<T>(&self, r: Result<T, AwsError>) -> Result<Option<T>, AwsError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e)
                if self.tolerate_unsupported
                    && (e.kind == ErrorKind::Unsupported || e.code.is_none()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn ssh_keys(&self, user: &str) -> Result<Option<Vec<String>>, AwsError> {
        let r = call(&self.budget, Retry::Safe, || async {
            self.count("ListSSHPublicKeys");
            self.iam
                .list_ssh_public_keys()
                .user_name(user)
                .max_items(IAM_PAGE)
                .send()
                .await
                .map_err(|e| classify("ListSSHPublicKeys", e))
        })
        .await
        .map(|out| {
            out.ssh_public_keys()
                .iter()
                .map(|k| k.ssh_public_key_id().to_owned())
                .collect()
        });
        self.unless_unsupported(r)
    }

    async fn service_credentials(&self, user: &str) -> Result<Option<Vec<String>>, AwsError> {
        let r = call(&self.budget, Retry::Safe, || async {
            self.count("ListServiceSpecificCredentials");
            self.iam
                .list_service_specific_credentials()
                .user_name(user)
                .send()
                .await
                .map_err(|e| classify("ListServiceSpecificCredentials", e))
        })
        .await
        .map(|out| {
            out.service_specific_credentials()
                .iter()
                .map(|k| k.service_specific_credential_id().to_owned())
                .collect()
        });
        self.unless_unsupported(r)
    }

    /// Users under `USER_PATH` and `TEMPLATE_PATH`, with groups, policies, tags and
    /// boundary, every group's policies and the customer managed policies that
    /// allow everything, from the account authorization details.
    async fn users(&self, s: &Settings, progress: &dyn Progress) -> Result<Details, AwsError> {
        let mut users = Vec::new();
        let mut groups: BTreeMap<String, IamGroup> = BTreeMap::new();
        let mut admin_policies = BTreeSet::new();
        let mut marker: Option<String> = None;
        let mut seen = 0usize;
        loop {
            let out = call(&self.budget, Retry::Safe, || async {
                self.count("GetAccountAuthorizationDetails");
                self.iam
                    .get_account_authorization_details()
                    .filter(EntityType::User)
                    .filter(EntityType::Group)
                    .filter(EntityType::LocalManagedPolicy)
                    .max_items(IAM_PAGE)
                    .set_marker(marker.clone())
                    .send()
                    .await
                    .map_err(|e| classify("GetAccountAuthorizationDetails", e))
            })
            .await?;
            for d in out.user_detail_list() {
                seen += 1;
                let (Some(name), Some(path)) = (d.user_name(), d.path()) else {
                    continue;
                };
                if !(path.starts_with(&s.user_path) || path == s.template_path) {
                    continue;
                }
                users.push(IamUser {
                    name: name.to_owned(),
                    path: path.to_owned(),
                    created: d.create_date().and_then(time_of),
                    tags: d
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_owned(), t.value().to_owned()))
                        .collect(),
                    groups: d.group_list().iter().cloned().collect(),
                    policies: d
                        .attached_managed_policies()
                        .iter()
                        .filter_map(|p| p.policy_arn().map(str::to_owned))
                        .collect(),
                    inline_policies: d
                        .user_policy_list()
                        .iter()
                        .filter_map(|p| p.policy_name().map(str::to_owned))
                        .collect::<BTreeSet<_>>(),
                    boundary: d
                        .permissions_boundary()
                        .and_then(|b| b.permissions_boundary_arn())
                        .map(str::to_owned),
                    user_id: d.user_id().map(str::to_owned),
                    inline_admin: d
                        .user_policy_list()
                        .iter()
                        .filter(|p| p.policy_document().is_some_and(allows_everything))
                        .filter_map(|p| p.policy_name().map(str::to_owned))
                        .collect(),
                    ssh_keys: None,
                    service_credentials: None,
                });
            }
            for g in out.group_detail_list() {
                let Some(name) = g.group_name() else { continue };
                groups.insert(
                    name.to_owned(),
                    IamGroup {
                        policies: g
                            .attached_managed_policies()
                            .iter()
                            .filter_map(|p| p.policy_arn().map(str::to_owned))
                            .collect(),
                        inline_admin: g
                            .group_policy_list()
                            .iter()
                            .filter(|p| p.policy_document().is_some_and(allows_everything))
                            .filter_map(|p| p.policy_name().map(str::to_owned))
                            .collect(),
                    },
                );
            }
            for p in out.policies() {
                let default = p
                    .policy_version_list()
                    .iter()
                    .find(|v| v.is_default_version())
                    .and_then(|v| v.document());
                if let (Some(arn), Some(doc)) = (p.arn(), default) {
                    if allows_everything(doc) {
                        admin_policies.insert(arn.to_owned());
                    }
                }
            }
            progress.update(
                Part::Users,
                format!("{seen} IAM users read, {} in scope", users.len()),
            );
            match out.marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_owned()),
                _ => {
                    return Ok(Details {
                        users,
                        groups,
                        admin_policies,
                    })
                }
            }
        }
    }

    /// Asks IAM for a credential report (AWS reuses one up to four hours old),
    /// waits a bounded time for it, then reads and parses it.
    async fn credential_report(
        &self,
        progress: &dyn Progress,
    ) -> Result<CredentialReport, ReviewError> {
        let started = Instant::now();
        let mut wait = self.first_poll;
        loop {
            let out = call(&self.budget, Retry::Safe, || async {
                self.count("GenerateCredentialReport");
                self.iam
                    .generate_credential_report()
                    .send()
                    .await
                    .map_err(|e| classify("GenerateCredentialReport", e))
            })
            .await?;
            if out.state() == Some(&ReportStateType::Complete) {
                break;
            }
            let waited = started.elapsed();
            if waited + wait > self.report_wait || Instant::now() + wait > self.budget.deadline {
                return Err(ReviewError::CredentialReport(format!(
                    "not ready after {} s; try again later",
                    waited.as_secs()
                )));
            }
            progress.update(
                Part::CredentialReport,
                format!("waiting for the credential report ({} s)", waited.as_secs()),
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        let out = call(&self.budget, Retry::Safe, || async {
            self.count("GetCredentialReport");
            self.iam
                .get_credential_report()
                .send()
                .await
                .map_err(|e| classify("GetCredentialReport", e))
        })
        .await?;
        let content = out
            .content()
            .ok_or_else(|| ReviewError::CredentialReport("the answer has no content".into()))?;
        let mut report = parse_credential_report(content.as_ref())?;
        report.generated = out.generated_time().and_then(time_of);
        progress.update(
            Part::CredentialReport,
            format!("credential report: {} rows", report.rows.len()),
        );
        Ok(report)
    }

    /// Secrets under the prefix, scheduled ones included: names, tags, deletion date.
    async fn secrets(
        &self,
        prefix: &str,
        progress: &dyn Progress,
    ) -> Result<Vec<SecretMeta>, AwsError> {
        let mut list = Vec::new();
        let mut token: Option<String> = None;
        // The name filter narrows the listing; the prefix is checked again below
        // because the service's match is looser than a prefix.
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(prefix)
            .build();
        loop {
            let out = call(&self.budget, Retry::Safe, || async {
                self.count("ListSecrets");
                self.secrets
                    .list_secrets()
                    .filters(filter.clone())
                    .include_planned_deletion(true)
                    .max_results(SECRETS_PAGE)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| classify("ListSecrets", e))
            })
            .await?;
            for x in out.secret_list() {
                let Some(name) = x.name().filter(|n| n.starts_with(prefix)) else {
                    continue;
                };
                list.push(SecretMeta {
                    name: name.to_owned(),
                    tags: x
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                        .collect(),
                    deleted: x.deleted_date().and_then(time_of),
                });
            }
            progress.update(Part::Secrets, format!("{} secrets listed", list.len()));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(list),
            }
        }
    }
}

impl Reader {
    /// The group's pending schedules (contract section 9): listed by name prefix,
    /// and read (GetSchedule) only where the name does not spell the employee. A
    /// group that does not exist holds none.
    async fn schedules(&self, group: &str) -> Result<Vec<ScheduleRow>, AwsError> {
        let mut rows = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let listed = call(&self.budget, Retry::Safe, || async {
                self.count("ListSchedules");
                self.scheduler
                    .list_schedules()
                    .group_name(group)
                    .name_prefix(crate::schedule::NAME_PREFIX)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| classify("ListSchedules", e))
            })
            .await;
            let out = match listed {
                Ok(out) => out,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(rows),
                Err(e) => return Err(e),
            };
            rows.extend(
                out.schedules()
                    .iter()
                    .filter_map(|x| x.name())
                    .filter_map(ScheduleRow::from_name),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        for row in rows.iter_mut().filter(|r| r.employee_id.is_none()) {
            let got = call(&self.budget, Retry::Safe, || async {
                self.count("GetSchedule");
                self.scheduler
                    .get_schedule()
                    .group_name(group)
                    .name(&row.name)
                    .send()
                    .await
                    .map_err(|e| classify("GetSchedule", e))
            })
            .await;
            match got {
                Ok(out) => row.fill(
                    out.target().and_then(|t| t.input()).unwrap_or_default(),
                    out.schedule_expression().unwrap_or_default(),
                ),
                // Fired (and deleted) since it was listed.
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(rows)
    }
}

/// A per-user list: `None` when the endpoint lacks the call (an emulator).
type Listed = Option<Vec<String>>;

/// What the account authorization details give.
struct Details {
    users: Vec<IamUser>,
    groups: BTreeMap<String, IamGroup>,
    admin_policies: BTreeSet<String>,
}

/// Whether a policy document (as IAM returns it: URL-encoded JSON) has a
/// statement allowing every action on every resource (CIS 2.14, Security Hub
/// IAM.1). A document that cannot be read allows nothing we can prove.
pub fn allows_everything(document: &str) -> bool {
    let decoded = percent_decode(document);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&decoded)
        .or_else(|_| serde_json::from_str::<serde_json::Value>(document))
    else {
        return false;
    };
    let all = |x: Option<&serde_json::Value>| match x {
        Some(serde_json::Value::String(s)) => s == "*" || s == "*:*",
        Some(serde_json::Value::Array(a)) => a.iter().any(|s| s == "*" || s == "*:*"),
        _ => false,
    };
    let statements = match v.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(one @ serde_json::Value::Object(_)) => vec![one.clone()],
        _ => return false,
    };
    statements.iter().any(|st| {
        st.get("Effect").and_then(|e| e.as_str()) == Some("Allow")
            && all(st.get("Action"))
            && all(st.get("Resource"))
    })
}

/// `%XX` decoding (IAM URL-encodes policy documents); anything else is kept.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the credential report's CSV. Columns are found by name (AWS may add
/// some); a missing one we need makes the report unreadable, never half-read.
pub fn parse_credential_report(csv_bytes: &[u8]) -> Result<CredentialReport, ReviewError> {
    let bad = |m: String| ReviewError::CredentialReport(m);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv_bytes);
    let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no column {name}")))
    };
    let user = col("user")?;
    let created = col("user_creation_time")?;
    let pw = col("password_enabled")?;
    let pw_used = col("password_last_used")?;
    let mfa = col("mfa_active")?;
    let mut key_cols = Vec::new();
    for n in 1..=2u8 {
        key_cols.push((
            n,
            col(&format!("access_key_{n}_active"))?,
            col(&format!("access_key_{n}_last_rotated"))?,
            col(&format!("access_key_{n}_last_used_date"))?,
        ));
    }
    // Signing certificates: optional columns (AWS has them; an emulator may not).
    let cert_cols: Vec<(u8, usize, usize)> = (1..=2u8)
        .filter_map(|n| {
            Some((
                n,
                col(&format!("cert_{n}_active")).ok()?,
                col(&format!("cert_{n}_last_rotated")).ok()?,
            ))
        })
        .collect();
    let mut rows = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let field = |i: usize| rec.get(i).unwrap_or_default();
        let name = field(user);
        if name.is_empty() || name == "<root_account>" {
            continue;
        }
        let keys = key_cols
            .iter()
            .filter_map(|&(slot, active, rotated, used)| {
                // An existing key always has a creation time; "N/A" is no key.
                Some(KeySlot {
                    slot,
                    active: field(active) == "true",
                    created: when(field(rotated))?,
                    last_used: when(field(used)),
                })
            })
            .collect();
        rows.insert(
            name.to_owned(),
            Credentials {
                user: name.to_owned(),
                created: when(field(created)),
                password_enabled: field(pw) == "true",
                password_last_used: when(field(pw_used)),
                mfa_active: field(mfa) == "true",
                keys,
                // An existing certificate has a time; "N/A" is none.
                certs: cert_cols
                    .iter()
                    .filter(|&&(_, _, rotated)| when(field(rotated)).is_some())
                    .map(|&(n, active, _)| (n, field(active) == "true"))
                    .collect(),
            },
        );
    }
    Ok(CredentialReport {
        generated: None,
        rows,
    })
}

/// A report time: `N/A`, `no_information` and `not_supported` are no time.
fn when(v: &str) -> Option<OffsetDateTime> {
    parse_rfc3339(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// AWS's documented layout, with the root row, a user with two keys (one never
    /// used, one inactive) and one without anything.
    const REPORT: &str = "\
user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated
<root_account>,arn:aws:iam::123456789012:root,2020-01-01T00:00:00+00:00,not_supported,2026-11-01T00:00:00+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A
jane.doe,arn:aws:iam::123456789012:user/employees/jane.doe,2026-11-20T07:59:00+00:00,true,2026-11-25T10:00:00+00:00,2026-11-20T08:00:00+00:00,N/A,true,true,2026-11-20T08:00:00+00:00,2026-11-25T09:00:00+00:00,us-east-1,s3,false,2026-11-21T08:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A
bare,arn:aws:iam::123456789012:user/employees/bare,2026-11-20T07:59:00+00:00,false,no_information,N/A,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A
";

    #[test]
    fn the_credential_report_is_parsed_by_column_name() {
        let r = parse_credential_report(REPORT.as_bytes()).unwrap();
        assert_eq!(r.rows.len(), 2, "the root row is skipped");
        let jane = &r.rows["jane.doe"];
        assert!(jane.password_enabled && jane.mfa_active);
        assert_eq!(
            jane.password_last_used,
            Some(datetime!(2026-11-25 10:00:00 UTC))
        );
        assert_eq!(jane.keys.len(), 2);
        assert!(jane.keys[0].active && !jane.keys[1].active);
        assert_eq!(jane.keys[1].slot, 2);
        assert_eq!(
            jane.keys[0].last_used,
            Some(datetime!(2026-11-25 09:00:00 UTC))
        );
        let bare = &r.rows["bare"];
        assert!(
            !bare.password_enabled && bare.keys.is_empty() && bare.password_last_used.is_none()
        );
        assert_eq!(r.as_of(), Some(datetime!(2026-11-25 10:00:00 UTC)));
    }

    #[test]
    fn signing_certificates_are_read_from_the_report() {
        let with_cert = REPORT.replace(
            "false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n",
            "false,N/A,N/A,N/A,N/A,false,N/A,true,2026-11-21T00:00:00+00:00\n",
        );
        let r = parse_credential_report(with_cert.as_bytes()).unwrap();
        assert_eq!(r.rows["bare"].certs, vec![(2, true)]);
        assert!(r.rows["jane.doe"].certs.is_empty());
    }

    #[test]
    fn full_admin_documents_are_recognised_encoded_or_not() {
        let admin = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        assert!(allows_everything(admin));
        let encoded = admin
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22");
        assert!(allows_everything(&encoded));
        assert!(allows_everything(
            r#"{"Statement":{"Effect":"Allow","Action":["s3:*","*:*"],"Resource":["*"]}}"#
        ));
        for not in [
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b"}]}"#,
            "not json",
        ] {
            assert!(!allows_everything(not), "{not}");
        }
    }

    #[test]
    fn a_report_without_a_needed_column_is_refused() {
        let e = parse_credential_report(b"user,arn\nx,y\n").unwrap_err();
        assert!(e.to_string().contains("user_creation_time"), "{e}");
        assert!(parse_credential_report(b"").is_err());
    }
}
