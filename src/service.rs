//! One record, end to end: read state -> plan -> apply, until converged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::apply::{ActionLog, Applier, ApplyError, Faults, Services, Vault};
use crate::audit::Outcome;
use crate::aws::iam::Depth;
use crate::aws::{AwsError, Budget, ErrorKind};
use crate::config::Config;
use crate::event::{EventType, HrEvent};
use crate::password::{generate_default, PasswordPolicy};
use crate::plan::{foreign_secret, key_created, plan, Context, Cred, Granted, Step, Verdict};
use crate::rules::Rule;
use crate::schedule::{Decision, SchedStep};
use crate::state::{
    Attachments, Lookup, SecretDoc, SecretState, SecretView, UserState, MANAGED_BY,
    TAG_EMPLOYEE_ID, TAG_MANAGED_BY, TAG_USER_NAME,
};

/// Rounds of read -> plan -> apply per record: a DeleteConflict (something was
/// attached after the read) is answered by reading again and removing it.
const MAX_ROUNDS: usize = 3;

pub struct Provisioner {
    pub config: Config,
    pub services: Services,
    signin_url: OnceCell<String>,
    password_policy: OnceCell<PasswordPolicy>,
    /// Template users' (groups, managed policies), by name.
    templates: OnceCell<TemplateGrants>,
    faults: Option<Arc<dyn Faults>>,
}

/// How one record ended, before it becomes an audit line.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// For `planned`: the steps a real run would make.
    pub planned: Vec<String>,
    /// The user acted on, when it is not the one the name rule gives (found
    /// through its secret after an email change).
    pub user_name: Option<String>,
    /// For `scheduled`: when the record takes effect.
    pub due_at: Option<time::OffsetDateTime>,
    /// Schedule steps still to apply once the record is applied (src/dates.rs).
    pub after: Vec<SchedStep>,
    /// A leaver's schedules could not be read: it was applied without them, and
    /// fails afterwards so that SQS retries the schedule part.
    pub schedules_unread: Option<String>,
}

impl Report {
    pub fn new(outcome: Outcome, reason: Option<String>) -> Self {
        Report {
            outcome,
            reason,
            planned: Vec::new(),
            user_name: None,
            due_at: None,
            after: Vec::new(),
            schedules_unread: None,
        }
    }
}

impl Provisioner {
    pub fn new(config: Config, services: Services) -> Self {
        Provisioner {
            config,
            services,
            signin_url: OnceCell::new(),
            password_policy: OnceCell::new(),
            templates: OnceCell::new(),
            faults: None,
        }
    }

    pub fn with_faults(mut self, faults: Arc<dyn Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// `SIGNIN_URL`, else the account alias, else the account id of the invoked
    /// function. Resolved once per container; never guessed.
    async fn signin_url(&self, function_arn: &str, b: &Budget) -> Result<&str, AwsError> {
        self.signin_url
            .get_or_try_init(|| async {
                if let Some(u) = &self.config.signin_url {
                    return Ok(u.clone());
                }
                let host = match self.services.iam.account_alias(b).await? {
                    Some(alias) => alias,
                    None => account_id(function_arn).ok_or_else(|| {
                        AwsError::new(
                            "SignInUrl",
                            ErrorKind::Fatal,
                            "no account alias and no account id in the invoked function ARN; set SIGNIN_URL",
                        )
                    })?,
                };
                Ok(format!("https://{host}.signin.aws.amazon.com/console"))
            })
            .await
            .map(String::as_str)
    }

    async fn password_policy(&self, b: &Budget) -> Result<&PasswordPolicy, AwsError> {
        self.password_policy
            .get_or_try_init(|| self.services.iam.password_policy(b))
            .await
    }

    /// The event's rule with its template's grants added, and what all rules grant.
    /// Templates are read once per container; a template that is not one rejects
    /// the record (and is read again next time, once the operator fixed it).
    async fn rules_for(
        &self,
        ev: &HrEvent,
        b: &Budget,
    ) -> Result<Result<(Rule, Granted), String>, AwsError> {
        let rules = &self.config.rules;
        let dept = ev.employee.department.as_deref();
        if rules.templates().is_empty() {
            return Ok(Ok((
                rules.for_department(dept).clone(),
                Granted::of(rules.all()),
            )));
        }
        let templates = match self
            .templates
            .get_or_try_init(|| async {
                let mut by_name = BTreeMap::new();
                for name in rules.templates() {
                    let t = self
                        .services
                        .iam
                        .template(name, &self.config.template_path, b)
                        .await
                        .map_err(TemplateError::Aws)?
                        .map_err(TemplateError::Invalid)?;
                    by_name.insert(name.to_owned(), t);
                }
                Ok::<_, TemplateError>(by_name)
            })
            .await
        {
            Ok(t) => t,
            Err(TemplateError::Aws(e)) => return Err(e),
            Err(TemplateError::Invalid(why)) => return Ok(Err(why)),
        };
        let effective = |r: &Rule| {
            let mut r = r.clone();
            if let Some((groups, policies)) = r.copy_from.as_ref().and_then(|t| templates.get(t)) {
                for g in groups {
                    if !r.groups.contains(g) {
                        r.groups.push(g.clone());
                    }
                }
                for p in policies {
                    if !r.managed_policies.contains(p) {
                        r.managed_policies.push(p.clone());
                    }
                }
            }
            r
        };
        let all: Vec<Rule> = rules.all().map(effective).collect();
        Ok(Ok((
            effective(rules.for_department(dept)),
            Granted::of(&all),
        )))
    }

    /// Reads what AWS holds about one user name: the user and its secret's metadata
    /// at once, then (for an existing user) its attachments, the secret's resource
    /// policy and, when the secret is ours, its value.
    async fn read(
        &self,
        ev: &HrEvent,
        depth: ReadDepth,
        b: &Budget,
    ) -> Result<(UserState, Option<SecretDoc>), AwsError> {
        let (iam, secrets, cfg) = (&self.services.iam, &self.services.secrets, &self.config);
        let user = ev.user_name.as_str();
        let secret_name = cfg.secret_name(user);
        let cutoff = async {
            match depth {
                ReadDepth::Cutoff => Ok::<_, AwsError>(Some(
                    iam.deny_check(user, cfg.deny_policy_arn.as_deref(), b)
                        .await,
                )),
                _ => Ok(None),
            }
        };
        let (lookup, meta, cutoff) = futures::try_join!(
            iam.lookup(user, b),
            secrets.describe(&secret_name, b),
            cutoff
        )?;
        // Only a user this function may act on is read further: the role may read
        // nothing else, and the planner rejects the others from GetUser alone.
        let found = matches!(&lookup, Lookup::Found(u)
            if u.path == cfg.user_path
                && u.tag(TAG_MANAGED_BY) == Some(MANAGED_BY)
                && u.tag(TAG_EMPLOYEE_ID) == Some(ev.employee.employee_id.as_str()));
        // Everything that decides whether the secret is ours, before its value is read.
        // Secrets Manager refuses most calls on a secret pending deletion: its
        // policy is checked once it is restored (apply.rs).
        // The cut-off does not touch the secret: its policy waits for the full read.
        let policy = async {
            match &meta {
                Some(m) if !m.scheduled && cutoff.is_none() => {
                    secrets.has_policy(&secret_name, b).await
                }
                _ => Ok(false),
            }
        };
        let ours = meta.as_ref().is_some_and(|m| {
            !m.scheduled && foreign_secret(m, cfg, &ev.employee.employee_id).is_none()
        });
        let value = async {
            match (&meta, found && ours && cutoff.is_none()) {
                (Some(_), true) => secrets.read(&secret_name, b).await,
                (Some(m), false) if m.scheduled => Ok((SecretState::Scheduled, None)),
                (Some(_), false) => Ok((SecretState::Present(SecretView::default()), None)),
                (None, _) => Ok((SecretState::Absent, None)),
            }
        };
        let attachments = async {
            match (&cutoff, found, depth) {
                (Some(att), _, _) => Ok(att.clone()),
                (None, true, ReadDepth::Leaver) => iam.attachments(user, Depth::Leaver, b).await,
                (None, true, _) => iam.attachments(user, Depth::Joiner, b).await,
                (None, false, _) => Ok(Attachments::default()),
            }
        };
        let (has_policy, (secret, doc), attachments) =
            futures::try_join!(policy, value, attachments)?;
        let secret_meta = meta.map(|mut m| {
            m.has_policy = has_policy;
            m
        });
        Ok((
            UserState {
                lookup,
                attachments,
                secret,
                secret_meta,
            },
            doc,
        ))
    }

    /// A leaver or mover whose name rule finds no user of this employee (HR changed
    /// the email) is found through the secret tagged with its employee id. Users are
    /// never renamed: the existing user is acted on.
    async fn locate(
        &self,
        ev: &HrEvent,
        state: &UserState,
        b: &Budget,
    ) -> Result<Option<HrEvent>, AwsError> {
        let mine = |l: &Lookup| matches!(l, Lookup::Found(u) if u.tag(TAG_EMPLOYEE_ID) == Some(ev.employee.employee_id.as_str()));
        if ev.event_type == EventType::Joined || mine(&state.lookup) {
            return Ok(None);
        }
        let found = self
            .services
            .secrets
            .find_by_employee(&self.config.secret_prefix, &ev.employee.employee_id, b)
            .await?;
        let mut names: Vec<&str> = found
            .iter()
            .filter_map(|(_, tags)| tags.get(TAG_USER_NAME).map(String::as_str))
            .filter(|n| *n != ev.user_name)
            .collect();
        names.sort_unstable();
        names.dedup();
        let Some(name) = names.first() else {
            return Ok(None);
        };
        if names.len() > 1 {
            tracing::warn!(event_id = %ev.event_id, employee_id = %ev.employee.employee_id, candidates = ?names,
                "several secrets name a user for this employee; using the first");
        }
        Ok(Some(HrEvent {
            user_name: (*name).to_owned(),
            ..ev.clone()
        }))
    }

    /// Brings AWS in line with one event. Changes made are pushed to `log`.
    pub async fn process(
        &self,
        ev: &HrEvent,
        function_arn: &str,
        b: Budget,
        log: &ActionLog,
    ) -> Report {
        // Boxed: the state machine of a record is large, and test threads have small
        // stacks.
        let mut report = match Box::pin(self.converge(ev, function_arn, b, log)).await {
            Ok(r) => r,
            Err(e) => return Report::new(Outcome::Failed, Some(e.to_string())),
        };
        // Effective dates: the schedules the record leaves are written once the
        // record itself is in effect (a crash before then redoes them).
        let after = std::mem::take(&mut report.after);
        if report.outcome == Outcome::Planned {
            report.planned.extend(after.iter().map(ToString::to_string));
        } else if matches!(report.outcome, Outcome::Applied | Outcome::Unchanged)
            && !after.is_empty()
        {
            match crate::dates::apply(&self.services, &after, &b, log, self.faults.as_deref()).await
            {
                Ok(()) => report.outcome = Outcome::Applied,
                Err(e) => return Report::new(Outcome::Failed, Some(e.to_string())),
            }
            report.reason = None;
        }
        if let (Some(why), Outcome::Applied | Outcome::Unchanged) =
            (report.schedules_unread.take(), report.outcome)
        {
            return Report::new(
                Outcome::Failed,
                Some(format!(
                    "applied, but its schedules could not be read: {why}"
                )),
            );
        }
        report
    }

    async fn converge(
        &self,
        ev: &HrEvent,
        function_arn: &str,
        b: Budget,
        log: &ActionLog,
    ) -> Result<Report, ApplyError> {
        // Only joiners and movers need the URL (for the secret and the mail), the
        // password policy and the rules; the first two are read once per container,
        // alongside the first state read so that a cold container pays no extra
        // round trip. A leaver keeps whatever URL the secret already says.
        let leaver = ev.event_type == EventType::Left;
        let per_container = async {
            if leaver {
                return Ok(("", None));
            }
            let (url, _, rules) = futures::try_join!(
                self.signin_url(function_arn, &b),
                self.password_policy(&b),
                self.rules_for(ev, &b)
            )?;
            Ok::<_, AwsError>((url, Some(rules)))
        };
        // A leaver's first read is only what its cut-off needs (fail safe); a dry
        // run plans everything from one read.
        let mut depth = match (leaver, self.config.dry_run) {
            (true, false) => ReadDepth::Cutoff,
            (true, true) => ReadDepth::Leaver,
            (false, _) => ReadDepth::Joiner,
        };
        let ((signin_url, rules), mut first, pending) = futures::try_join!(
            Box::pin(per_container),
            Box::pin(self.read(ev, depth, &b)),
            // Infallible here: a leaver's cut-off needs IAM alone (contract 5).
            async { Ok(crate::dates::read_pending(&self.services, ev, &b).await) }
        )?;
        let (pending, schedules_unread) = match pending {
            Ok(p) => (p, None),
            Err(e) if leaver && !self.config.dry_run => {
                tracing::warn!(event_id = %ev.event_id, user_name = %ev.user_name, error = %e,
                    "schedules unreadable: the leaver is applied without them, then fails");
                (crate::schedule::PendingSet::default(), Some(e.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let (rule, granted) = match rules {
            Some(Ok(r)) => r,
            Some(Err(why)) => return Ok(Report::new(Outcome::Rejected, Some(why))),
            None => (self.config.rules.default.clone(), Granted::default()),
        };
        // The user the employee's secret names, when the name rule finds none of
        // this employee's: acted on if it exists (or left a tombstone).
        let mut acted_on = None;
        if let Some(other) = self.locate(ev, &first.0, &b).await? {
            let alt = Box::pin(self.read(&other, depth, &b)).await?;
            if matches!(alt.0.lookup, Lookup::Found(_)) || alt.0.secret_meta.is_some() {
                tracing::warn!(event_id = %ev.event_id, user_name = %other.user_name, name_rule = %ev.user_name,
                    "user found through its secret: the name rule gives another name; users are never renamed");
                first = alt;
                acted_on = Some(other);
            }
        }
        let ev = acted_on.as_ref().unwrap_or(ev);
        // Effective dates (src/schedule.rs): the record may take effect later, be
        // older than a pending schedule, or leave schedules to write afterwards.
        let known = crate::dates::known(ev, &self.config, &first.0);
        let (after, act_as) = match crate::schedule::decide(
            ev,
            crate::dates::now(),
            &self.config.schedule,
            &pending,
            &known,
        ) {
            Decision::Stale(why) => return Ok(Report::new(Outcome::Stale, Some(why))),
            Decision::Rejected(why) => return Ok(Report::new(Outcome::Rejected, Some(why))),
            Decision::Scheduled { steps, due_at } if self.config.dry_run => {
                let mut r = Report::new(Outcome::Planned, None);
                r.due_at = Some(due_at);
                r.planned = steps.iter().map(ToString::to_string).collect();
                return Ok(r);
            }
            Decision::Scheduled { steps, due_at } => {
                crate::dates::apply(&self.services, &steps, &b, log, self.faults.as_deref())
                    .await?;
                let mut r = Report::new(Outcome::Scheduled, None);
                r.due_at = Some(due_at);
                return Ok(r);
            }
            Decision::Proceed { steps, act_as } => (steps, act_as),
        };
        let ev = act_as.as_ref().unwrap_or(ev);
        let report = |outcome, reason| {
            let mut r = Report::new(outcome, reason);
            r.user_name = acted_on.as_ref().map(|e| e.user_name.clone());
            r.after = after.clone();
            r.schedules_unread = schedules_unread.clone();
            r
        };
        let cx = Context {
            config: &self.config,
            rule: &rule,
            granted: &granted,
            signin_url,
        };
        let mut read = Some(first);
        let mut conflicts = 0;
        loop {
            let (state, doc) = match read.take() {
                Some(r) => r,
                None => Box::pin(self.read(ev, depth, &b)).await?,
            };
            let (p, then_read) = match plan(ev, &cx, &state) {
                Verdict::Stale(why) => return Ok(report(Outcome::Stale, Some(why))),
                Verdict::Rejected(why) => return Ok(report(Outcome::Rejected, Some(why))),
                Verdict::Failed(why) => return Ok(report(Outcome::Failed, Some(why))),
                Verdict::Unchanged(why) if log.is_empty() => {
                    return Ok(report(Outcome::Unchanged, Some(why)))
                }
                Verdict::Unchanged(_) => return Ok(report(Outcome::Applied, None)),
                Verdict::ReadMore(p) => (p, true),
                Verdict::Apply(p) => (p, false),
            };
            if self.config.dry_run {
                let mut r = report(Outcome::Planned, None);
                r.planned = p.action_names();
                return Ok(r);
            }
            let new_password = if p
                .steps()
                .any(|s| matches!(s, Step::WriteSecret(w) if w.password == Cred::New))
            {
                Some(generate_default(self.password_policy(&b).await?))
            } else {
                None
            };
            let kept_key_created = match (&doc, &state.secret_meta) {
                (Some(d), Some(m)) => d
                    .access_key_id
                    .as_deref()
                    .map(|id| key_created(&state.attachments, m, id)),
                _ => None,
            };
            let applier = Applier {
                services: &self.services,
                config: &self.config,
                event: ev,
                signin_url,
                budget: b,
                log,
                faults: self.faults.as_deref(),
                vault: Mutex::new(Vault {
                    current: doc,
                    new_password,
                    created_key: None,
                    kept_key_created,
                }),
            };
            match Box::pin(applier.apply(&p)).await {
                Ok(()) if then_read => depth = ReadDepth::Leaver,
                Ok(()) => {
                    return Ok(match p.fail_after {
                        Some(why) => report(Outcome::Failed, Some(why)),
                        None => report(Outcome::Applied, None),
                    })
                }
                Err(ApplyError::Aws(e))
                    if e.kind == ErrorKind::Conflict && conflicts < MAX_ROUNDS =>
                {
                    conflicts += 1;
                    tracing::warn!(event_id = %ev.event_id, user_name = %ev.user_name, op = e.op,
                        "conflict: reading the user again to remove what remains");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadDepth {
    /// A leaver's first read: the user, its secret's metadata, the deny-all.
    Cutoff,
    Joiner,
    Leaver,
}

/// Template users' (groups, managed policies), by name.
type TemplateGrants = BTreeMap<String, (Vec<String>, Vec<String>)>;

enum TemplateError {
    Aws(AwsError),
    Invalid(String),
}

/// The account id in `arn:aws:lambda:region:account:function:name`.
pub fn account_id(function_arn: &str) -> Option<String> {
    let id = function_arn.split(':').nth(4)?;
    (id.len() == 12 && id.bytes().all(|c| c.is_ascii_digit())).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_id_comes_from_the_function_arn() {
        assert_eq!(
            account_id("arn:aws:lambda:eu-west-1:123456789012:function:hr").as_deref(),
            Some("123456789012")
        );
        assert_eq!(account_id("arn:aws:lambda:eu-west-1::function:hr"), None);
        assert_eq!(account_id(""), None);
    }
}
