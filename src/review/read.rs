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
use super::model::{
    Calls, CredentialReport, Credentials, IamUser, Inputs, KeySlot, SecretMeta, Settings,
};
use super::ReviewError;
use crate::aws::{call, classify, AwsError, Budget, ErrorKind, Retry};
use crate::event::parse_rfc3339;

/// IAM's largest page for `GetAccountAuthorizationDetails`.
const IAM_PAGE: i32 = 1000;
/// Secrets Manager's largest page for `ListSecrets`.
const SECRETS_PAGE: i32 = 100;

/// Which read a progress message is about; they run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Users,
    CredentialReport,
    Secrets,
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
}

fn time_of(t: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.secs()).ok()
}

impl Reader {
    /// `deadline` bounds every call and retry.
    pub fn new(sdk: &SdkConfig, deadline: Instant) -> Self {
        Reader {
            iam: aws_sdk_iam::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            scheduler: aws_sdk_scheduler::Client::new(sdk),
            budget: Budget::until(deadline),
            first_poll: Duration::from_millis(250),
            report_wait: Duration::from_secs(120),
            calls: Mutex::new(BTreeMap::new()),
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
        let (users, report, secrets, schedules) = futures::try_join!(
            Box::pin(async { self.users(s, progress).await.map_err(ReviewError::from) }),
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
            users,
            report,
            secrets,
            schedules,
        })
    }

    /// Users under `USER_PATH` and `TEMPLATE_PATH`, with groups, policies, tags and
    /// boundary, from the account authorization details.
    async fn users(&self, s: &Settings, progress: &dyn Progress) -> Result<Vec<IamUser>, AwsError> {
        let mut users = Vec::new();
        let mut marker: Option<String> = None;
        let mut seen = 0usize;
        loop {
            let out = call(&self.budget, Retry::Safe, || async {
                self.count("GetAccountAuthorizationDetails");
                self.iam
                    .get_account_authorization_details()
                    .filter(EntityType::User)
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
                });
            }
            progress.update(
                Part::Users,
                format!("{seen} IAM users read, {} in scope", users.len()),
            );
            match out.marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_owned()),
                _ => return Ok(users),
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
    fn a_report_without_a_needed_column_is_refused() {
        let e = parse_credential_report(b"user,arn\nx,y\n").unwrap_err();
        assert!(e.to_string().contains("user_creation_time"), "{e}");
        assert!(parse_credential_report(b"").is_err());
    }
}
