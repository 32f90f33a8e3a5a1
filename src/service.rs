//! One record, end to end: read state -> plan -> apply, until converged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::apply::{ActionLog, Applier, ApplyError, Faults, Services, Vault};
use crate::audit::Outcome;
use crate::aws::iam::Depth;
use crate::aws::kms::is_customer_alias;
use crate::aws::{AwsError, Budget, ErrorKind};
use crate::config::Config;
use crate::event::{EventType, HrEvent};
use crate::password::{generate_default, PasswordPolicy};
use crate::plan::{
    foreign_secret, key_created, last_event, plan, Context, Cred, Granted, Step, Verdict,
};
use crate::rules::Rule;
use crate::schedule::{Decision, SchedStep};
use crate::state::{
    Attachments, Lookup, SecretDoc, SecretMeta, SecretState, SecretView, UserState, MANAGED_BY,
    STATUS_ACTIVE, STATUS_DELETED, TAG_EMPLOYEE_ID, TAG_MANAGED_BY, TAG_STATUS, TAG_USER_ID,
    TAG_USER_NAME,
};
use time::OffsetDateTime;

/// Rounds of read -> plan -> apply per record: a DeleteConflict (something was
/// attached after the read) is answered by reading again and removing it.
const MAX_ROUNDS: usize = 3;

/// How long the warm-up's reads may take before the first record reads for itself.
const WARM_UP_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

pub struct Provisioner {
    pub config: Config,
    pub services: Services,
    signin_url: OnceCell<String>,
    /// The account alias (None: the account has none), read once per container.
    account_alias: OnceCell<Option<String>>,
    password_policy: OnceCell<PasswordPolicy>,
    /// Template users' (groups, managed policies), by name.
    templates: OnceCell<TemplateGrants>,
    /// `SECRET_KMS_KEY_ID` resolved to a key ARN when it is an alias.
    kms_key: OnceCell<String>,
    faults: Option<Arc<dyn Faults>>,
    /// The HR queue, to release records handed back untouched (the Lambda
    /// bootstrap sets it; tests and tools run without).
    pub(crate) queue: Option<crate::aws::queue::Queue>,
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
    /// Every user acted on, when a leaver retired more than one.
    pub users: Vec<String>,
    /// For `scheduled`: when the record takes effect.
    pub due_at: Option<time::OffsetDateTime>,
    /// Schedule steps still to apply once the record is applied (src/dates.rs).
    pub after: Vec<SchedStep>,
    /// A leaver's schedules could not be read: it was applied without them, and
    /// fails afterwards so that SQS retries the schedule part.
    pub schedules_unread: Option<String>,
    /// Failed before anything was done, for lack of time in the invocation: the
    /// record is made visible again at once (src/aws/queue.rs).
    pub handed_back: bool,
}

impl Report {
    pub fn new(outcome: Outcome, reason: Option<String>) -> Self {
        Report {
            outcome,
            reason,
            planned: Vec::new(),
            user_name: None,
            users: Vec::new(),
            due_at: None,
            after: Vec::new(),
            schedules_unread: None,
            handed_back: false,
        }
    }
}

impl Provisioner {
    pub fn new(config: Config, services: Services) -> Self {
        Provisioner {
            config,
            services,
            signin_url: OnceCell::new(),
            account_alias: OnceCell::new(),
            password_policy: OnceCell::new(),
            templates: OnceCell::new(),
            kms_key: OnceCell::new(),
            faults: None,
            queue: None,
        }
    }

    pub fn with_queue(mut self, queue: crate::aws::queue::Queue) -> Self {
        self.queue = Some(queue);
        self
    }

    pub fn with_faults(mut self, faults: Arc<dyn Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Starts the once-per-container reads (the password policy; the account alias
    /// unless `SIGNIN_URL` is set) in the background as the container starts, so
    /// that they overlap the runtime's first poll instead of the first record's
    /// reads (issue 20: the cold start). A record that needs a value still being
    /// read waits for that read; one that failed is read again by the record.
    /// Off with `WARM_UP=false` (the audit function: its role reads neither).
    pub fn warm_up(self: &Arc<Self>) {
        if !self.config.warm_up {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            // Short and few: a record waiting behind this read keeps its own budget.
            let b = Budget {
                max_attempts: 3,
                ..Budget::until(tokio::time::Instant::now() + WARM_UP_BUDGET)
            };
            let alias = async {
                if me.config.signin_url.is_none() {
                    me.account_alias(&b).await.map(|_| ())
                } else {
                    Ok(())
                }
            };
            let (policy, alias) = futures::join!(me.password_policy(&b), alias);
            for e in [policy.err(), alias.err()].into_iter().flatten() {
                tracing::info!(error = %e, "warm-up read failed; the first record that needs it reads it again");
            }
        });
    }

    async fn account_alias(&self, b: &Budget) -> Result<Option<&str>, AwsError> {
        self.account_alias
            .get_or_try_init(|| self.services.iam.account_alias(b))
            .await
            .map(Option::as_deref)
    }

    /// `SIGNIN_URL`, else the account alias, else the account id of the invoked
    /// function. Resolved once per container; never guessed.
    async fn signin_url(&self, function_arn: &str, b: &Budget) -> Result<&str, AwsError> {
        self.signin_url
            .get_or_try_init(|| async {
                if let Some(u) = &self.config.signin_url {
                    return Ok(u.clone());
                }
                let host = match self.account_alias(b).await? {
                    Some(alias) => alias.to_owned(),
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

    /// Read when a password is generated, not before: movers and leavers never
    /// need it, and the warm-up has usually read it by then.
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

    /// `SECRET_KMS_KEY_ID` as a key: a customer alias is resolved once per
    /// container (an alias that names no key we may describe matches nothing).
    async fn kms_key(&self, b: &Budget) -> Result<Option<&str>, AwsError> {
        let Some(want) = self.config.kms_key_id.as_deref() else {
            return Ok(None);
        };
        let resolved = self
            .kms_key
            .get_or_try_init(|| async {
                Ok::<_, AwsError>(
                    self.services
                        .kms
                        .key_arn(want, b)
                        .await?
                        .unwrap_or_else(|| want.to_owned()),
                )
            })
            .await?;
        Ok(Some(resolved.as_str()))
    }

    /// The secret's metadata, its KMS key named as a key (a customer alias is
    /// resolved: a secret is ours only under `SECRET_KMS_KEY_ID` itself).
    async fn describe(
        &self,
        secret_name: &str,
        b: &Budget,
    ) -> Result<Option<SecretMeta>, AwsError> {
        let Some(mut meta) = self.services.secrets.describe(secret_name, b).await? else {
            return Ok(None);
        };
        if let Some(k) = meta.kms_key_id.as_deref().filter(|k| is_customer_alias(k)) {
            if let Some(arn) = self.services.kms.key_arn(k, b).await? {
                meta.kms_key_id = Some(arn);
            }
        }
        Ok(Some(meta))
    }

    /// Reads what AWS holds about one user and its secret. A leaver's first read
    /// (`Cutoff`) is IAM alone: the user and whether the deny-all is on, so that
    /// Secrets Manager being slow, down or denying never delays the cut-off. The
    /// other reads: the user and its secret's metadata at once, then (for a user
    /// of this employee) its attachments, the secret's resource policy and, when
    /// the secret is ours, its value.
    async fn read(
        &self,
        ev: &HrEvent,
        secret_name: &str,
        depth: ReadDepth,
        b: &Budget,
    ) -> Result<(UserState, Option<SecretDoc>), AwsError> {
        let (iam, secrets, cfg) = (&self.services.iam, &self.services.secrets, &self.config);
        let user = ev.user_name.as_str();
        if depth == ReadDepth::Cutoff {
            let (lookup, att) = futures::join!(
                iam.lookup(user, b),
                iam.deny_check(user, cfg.deny_policy_arn.as_deref(), b)
            );
            return Ok((
                UserState {
                    lookup: lookup?,
                    attachments: att,
                    secret: SecretState::Absent,
                    secret_meta: None,
                },
                None,
            ));
        }
        // A joiner most likely finds no user: an emulator's case scan runs at once.
        let lookup = async {
            if ev.event_type == EventType::Joined {
                iam.lookup_new(user, b).await
            } else {
                iam.lookup(user, b).await
            }
        };
        let (lookup, meta, kms_key) =
            futures::try_join!(lookup, self.describe(secret_name, b), self.kms_key(b))?;
        // Only a user this function may act on is read further: the role may read
        // nothing else, and the planner rejects the others from GetUser alone.
        let found = matches!(&lookup, Lookup::Found(u)
            if u.path == cfg.user_path
                && u.tag(TAG_MANAGED_BY) == Some(MANAGED_BY)
                && u.tag(TAG_EMPLOYEE_ID) == Some(ev.employee.employee_id.as_str()));
        // Everything that decides whether the secret is ours, before its value is read.
        // Secrets Manager refuses most calls on a secret pending deletion: its
        // policy is checked once it is restored (apply.rs).
        let policy = async {
            match &meta {
                Some(m) if !m.scheduled => secrets.has_policy(secret_name, b).await,
                _ => Ok(false),
            }
        };
        let ours = meta.as_ref().is_some_and(|m| {
            !m.scheduled && foreign_secret(m, kms_key, &ev.employee.employee_id).is_none()
        });
        let value = async {
            match (&meta, found && ours) {
                (Some(_), true) => secrets.read(secret_name, b).await,
                (Some(m), false) if m.scheduled => Ok((SecretState::Scheduled, None)),
                (Some(_), false) => Ok((SecretState::Present(SecretView::default()), None)),
                (None, _) => Ok((SecretState::Absent, None)),
            }
        };
        let attachments = async {
            match (found, depth) {
                (true, ReadDepth::Leaver) => iam.attachments(user, Depth::Leaver, b).await,
                (true, _) => iam.attachments(user, Depth::Joiner, b).await,
                (false, _) => Ok(Attachments::default()),
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
                secret: secret.clone(),
                secret_meta,
            },
            doc,
        ))
    }

    /// The users of this employee other than the one the name rule gives, found
    /// through the secrets tagged with its employee id (one employee, one user):
    /// each secret names its user (`hr:user-name`) and its IAM id (`hr:user-id`),
    /// which finds the user after a rename. The name rule's own secret is left to
    /// [`Provisioner::renamed`].
    async fn others(&self, ev: &HrEvent, b: &Budget) -> Result<Vec<Other>, AwsError> {
        let cfg = &self.config;
        let mut found = self
            .services
            .secrets
            .find_by_employee(&cfg.secret_prefix, &ev.employee.employee_id, b)
            .await?;
        found.sort();
        let own = cfg.secret_name(&ev.user_name);
        let mut out: Vec<Other> = Vec::new();
        for (secret_name, tags) in found {
            let named = tags.get(TAG_USER_NAME).cloned();
            if secret_name == own || named.as_deref() == Some(ev.user_name.as_str()) {
                continue;
            }
            let mut user = None;
            if let Some(n) = named.as_deref() {
                if self.is_mine(ev, n, b).await? {
                    user = Some(n.to_owned());
                }
            }
            if user.is_none() {
                user = self.by_user_id(ev, &tags, b).await?;
            }
            if user
                .as_ref()
                .is_some_and(|u| out.iter().any(|o| o.user.as_ref() == Some(u)))
            {
                continue;
            }
            out.push(Other {
                user,
                secret_name,
                tags,
            });
        }
        // Users first (they are acted on), secrets without a user after.
        out.sort_by_key(|o| o.user.is_none());
        Ok(out)
    }

    /// Whether `name` is a managed user of this employee under `USER_PATH`.
    async fn is_mine(&self, ev: &HrEvent, name: &str, b: &Budget) -> Result<bool, AwsError> {
        let cfg = &self.config;
        Ok(
            matches!(self.services.iam.lookup(name, b).await?, Lookup::Found(u)
            if u.path == cfg.user_path
                && u.tag(TAG_MANAGED_BY) == Some(MANAGED_BY)
                && u.tag(TAG_EMPLOYEE_ID) == Some(ev.employee.employee_id.as_str())),
        )
    }

    /// The user a secret's `hr:user-id` names, when it goes by another name than the
    /// secret says (renamed with UpdateUser outside the function) and is this
    /// employee's. Tombstones are not looked up: their user is gone.
    async fn by_user_id(
        &self,
        ev: &HrEvent,
        tags: &BTreeMap<String, String>,
        b: &Budget,
    ) -> Result<Option<String>, AwsError> {
        if tags.get(TAG_STATUS).map(String::as_str) == Some(STATUS_DELETED) {
            return Ok(None);
        }
        let Some(id) = tags.get(TAG_USER_ID).filter(|id| !id.is_empty()) else {
            return Ok(None);
        };
        let Some(n) = self
            .services
            .iam
            .name_of_user_id(id, &self.config.user_path, b)
            .await?
        else {
            return Ok(None);
        };
        let named = tags.get(TAG_USER_NAME).map(String::as_str);
        if named == Some(n.as_str()) || !self.is_mine(ev, &n, b).await? {
            return Ok(None);
        }
        tracing::warn!(event_id = %ev.event_id, user_name = %n, was = named.unwrap_or_default(),
            "user found by its IAM id: renamed outside the function (users are never renamed back)");
        Ok(Some(n))
    }

    /// When the name rule finds no user, whether the name rule's own secret names
    /// one by its IAM id (renamed outside the function).
    async fn renamed(
        &self,
        ev: &HrEvent,
        meta: Option<&SecretMeta>,
        b: &Budget,
    ) -> Result<Option<String>, AwsError> {
        match meta {
            Some(m)
                if m.tag(TAG_MANAGED_BY) == Some(MANAGED_BY)
                    && m.tag(TAG_EMPLOYEE_ID) == Some(ev.employee.employee_id.as_str()) =>
            {
                self.by_user_id(ev, &m.tags, b).await
            }
            _ => Ok(None),
        }
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
        if ev.event_type == EventType::Left {
            return Box::pin(self.converge_leaver(ev, b, log)).await;
        }
        // Joiners and movers need the URL (for the secret and the mail) and the
        // rules; the URL is read once per container (by the warm-up, or else
        // alongside the first state read). The employee's other users are looked
        // for at the same time. The password policy waits until a password is made.
        let per_container = async {
            let (url, rules) =
                futures::try_join!(self.signin_url(function_arn, &b), self.rules_for(ev, &b))?;
            Ok::<_, AwsError>((url, rules))
        };
        let own_secret = self.config.secret_name(&ev.user_name);
        // The employee's pending schedules (effective dates) are read alongside.
        let ((signin_url, rules), first, others, pending) = futures::try_join!(
            Box::pin(per_container),
            Box::pin(self.read(ev, &own_secret, ReadDepth::Joiner, &b)),
            Box::pin(self.others(ev, &b)),
            Box::pin(crate::dates::read_pending(&self.services, ev, &b))
        )?;
        let (rule, granted) = match rules {
            Ok(r) => r,
            Err(why) => return Ok(Report::new(Outcome::Rejected, Some(why))),
        };
        let mine = matches!(&first.0.lookup, Lookup::Found(u)
            if u.tag(TAG_EMPLOYEE_ID) == Some(ev.employee.employee_id.as_str()));
        // One employee, one user: when the name rule finds no user of this
        // employee, the employee's existing user (found through its secret) is the
        // one acted on. Users are never renamed.
        let mut renamed_target = None;
        if matches!(first.0.lookup, Lookup::Absent) {
            if let Some(n) = self.renamed(ev, first.0.secret_meta.as_ref(), &b).await? {
                renamed_target = Some(Other {
                    user: Some(n),
                    secret_name: own_secret.clone(),
                    tags: first
                        .0
                        .secret_meta
                        .as_ref()
                        .map(|m| m.tags.clone())
                        .unwrap_or_default(),
                });
            }
        }
        let mut target = renamed_target.as_ref();
        if !mine && target.is_none() {
            if let Some(o) = others.iter().find(|o| o.user.is_some()) {
                target = Some(o);
            } else if ev.event_type == EventType::Changed {
                // A mover for a user that is gone: its secret says why (deleted by
                // a leaver: unchanged; else failed, as for a joiner on the way).
                target = others.first();
            }
        }
        if others.iter().filter(|o| o.user.is_some()).count() + usize::from(mine) > 1 {
            tracing::warn!(event_id = %ev.event_id, employee_id = %ev.employee.employee_id,
                users = ?others.iter().filter_map(|o| o.user.as_deref()).collect::<Vec<_>>(),
                "several users for one employee: the audit reports duplicate-employee; a leaver retires them all");
        }
        let (ev_for, secret_name, first) = match target {
            Some(o) => {
                let user = o.user.clone().or_else(|| o.named()).unwrap_or_default();
                tracing::warn!(event_id = %ev.event_id, user_name = %user, name_rule = %ev.user_name,
                    "user found through its secret: the name rule gives another name; users are never renamed");
                let alt = HrEvent {
                    user_name: user,
                    ..ev.clone()
                };
                let read = Box::pin(self.read(&alt, &o.secret_name, ReadDepth::Joiner, &b)).await?;
                (alt, o.secret_name.clone(), read)
            }
            None => {
                // A joiner older than the tombstone another name left is stale.
                if let Some(why) = self.older_than_tombstone(ev, &others) {
                    return Ok(Report::new(Outcome::Stale, Some(why)));
                }
                (ev.clone(), own_secret, first)
            }
        };
        let kms_key = self.kms_key(&b).await?;
        // Effective dates (src/schedule.rs): the record may take effect later, be
        // older than a pending schedule, or leave schedules to write afterwards.
        let known = crate::dates::known(&ev_for, &self.config, kms_key, &first.0);
        let (after, act_as) = match self.effective(&ev_for, &pending, &known, &b, log).await? {
            Ok(proceed) => proceed,
            Err(report) => return Ok(report),
        };
        let ev_for = act_as.unwrap_or(ev_for);
        let cx = Context {
            config: &self.config,
            rule: &rule,
            granted: &granted,
            signin_url,
            now: OffsetDateTime::now_utc(),
            kms_key,
        };
        let acted_on = (ev_for.user_name != ev.user_name).then(|| ev_for.user_name.clone());
        let mut report = Box::pin(self.rounds(
            &ev_for,
            &secret_name,
            &cx,
            Some(first),
            ReadDepth::Joiner,
            &b,
            log,
        ))
        .await?;
        report.user_name = acted_on;
        report.after = after;
        Ok(report)
    }

    /// What the record's effective dates decide: go on (with the schedule steps
    /// to write once the record is applied, and the event to act as), or the
    /// record's report already (stale, rejected, or scheduled for later).
    async fn effective(
        &self,
        ev: &HrEvent,
        pending: &crate::schedule::PendingSet,
        known: &crate::schedule::Known,
        b: &Budget,
        log: &ActionLog,
    ) -> Result<Result<(Vec<SchedStep>, Option<HrEvent>), Report>, ApplyError> {
        let now = crate::dates::now();
        Ok(
            match crate::schedule::decide(ev, now, &self.config.schedule, pending, known) {
                Decision::Stale(why) => Err(Report::new(Outcome::Stale, Some(why))),
                Decision::Rejected(why) => Err(Report::new(Outcome::Rejected, Some(why))),
                Decision::Scheduled { steps, due_at } => {
                    Err(self.scheduled(steps, due_at, b, log).await?)
                }
                Decision::Proceed { steps, act_as } => Ok((steps, act_as)),
            },
        )
    }

    /// A record that takes effect later: only its schedules are written now.
    async fn scheduled(
        &self,
        steps: Vec<SchedStep>,
        due_at: OffsetDateTime,
        b: &Budget,
        log: &ActionLog,
    ) -> Result<Report, ApplyError> {
        if self.config.dry_run {
            let mut r = Report::new(Outcome::Planned, None);
            r.due_at = Some(due_at);
            r.planned = steps.iter().map(ToString::to_string).collect();
            return Ok(r);
        }
        crate::dates::apply(&self.services, &steps, b, log, self.faults.as_deref()).await?;
        let mut r = Report::new(Outcome::Scheduled, None);
        r.due_at = Some(due_at);
        Ok(r)
    }

    /// A joiner for which no user exists, checked against the tombstones of this
    /// employee's other names (delete mode): an older event recreates nothing.
    fn older_than_tombstone(&self, ev: &HrEvent, others: &[Other]) -> Option<String> {
        others
            .iter()
            .filter(|o| o.user.is_none() && o.status() == STATUS_DELETED)
            .find_map(|o| {
                let last = last_event(&o.tags);
                let key = last.at.map(|at| (at, last.rank, last.id.to_owned()))?;
                let (at, rank, id) = ev.order_key();
                ((at, rank, id.to_owned()) < key).then(|| {
                    format!(
                        "event at {} is older than the last event applied, {} (kept on the deleted user's secret {})",
                        ev.occurred_at_tag(),
                        last.id,
                        o.secret_name
                    )
                })
            })
    }

    /// A leaver retires every user of the employee: the one the name rule gives
    /// (cut off from IAM reads alone, before Secrets Manager is asked anything),
    /// then each one the employee's secrets name.
    async fn converge_leaver(
        &self,
        ev: &HrEvent,
        b: Budget,
        log: &ActionLog,
    ) -> Result<Report, ApplyError> {
        let depth = if self.config.dry_run {
            ReadDepth::Leaver
        } else {
            ReadDepth::Cutoff
        };
        let own_secret = self.config.secret_name(&ev.user_name);
        // The name rule's user first, from IAM alone; its cut-off is applied before
        // any other read, and before Secrets Manager can fail the record. The
        // employee's schedules are read alongside; unreadable, they do not hold
        // up the cut-off: the leaver is applied, then fails for a retry.
        let (first, pending) = futures::join!(
            Box::pin(self.read(ev, &own_secret, depth, &b)),
            Box::pin(crate::dates::read_pending(&self.services, ev, &b))
        );
        let first = first?;
        let (pending, schedules_unread) = match pending {
            Ok(p) => (p, None),
            Err(e) if !self.config.dry_run => {
                tracing::warn!(event_id = %ev.event_id, user_name = %ev.user_name, error = %e,
                    "schedules unreadable: the leaver is applied without them, then fails");
                (crate::schedule::PendingSet::default(), Some(e.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        // Effective dates: a leaver whose end_date is ahead is scheduled, not
        // applied; one delivered by a schedule that was replaced is stale.
        let known = crate::dates::known(ev, &self.config, None, &first.0);
        let (after, act_as) = match self.effective(ev, &pending, &known, &b, log).await? {
            Ok(proceed) => proceed,
            Err(report) => return Ok(report),
        };
        let mut report =
            Box::pin(self.retire_all(act_as.as_ref().unwrap_or(ev), first, depth, &b, log)).await?;
        report.after = after;
        report.schedules_unread = schedules_unread;
        Ok(report)
    }

    /// Every user of the employee is retired (see [`Self::converge_leaver`]).
    async fn retire_all(
        &self,
        ev: &HrEvent,
        first: (UserState, Option<SecretDoc>),
        depth: ReadDepth,
        b: &Budget,
        log: &ActionLog,
    ) -> Result<Report, ApplyError> {
        let b = *b;
        let granted = Granted::default();
        let rule = self.config.rules.default.clone();
        let cx = |kms_key| Context {
            config: &self.config,
            rule: &rule,
            granted: &granted,
            signin_url: "",
            now: OffsetDateTime::now_utc(),
            kms_key,
        };
        let own_secret = self.config.secret_name(&ev.user_name);
        let mine = matches!(&first.0.lookup, Lookup::Found(u)
            if u.tag(TAG_EMPLOYEE_ID) == Some(ev.employee.employee_id.as_str()));
        let mut reports = Vec::new();
        // The employee's other users are looked for while the name rule's user is
        // retired: the cut-off never waits for that read, and the leaver saves a
        // round trip. Each outcome stands alone (no try_join).
        let cx0 = cx(None);
        let primary = async {
            if mine {
                Some(
                    self.rounds(ev, &own_secret, &cx0, Some(first), depth, &b, log)
                        .await,
                )
            } else {
                None
            }
        };
        let (primary, others) = futures::join!(Box::pin(primary), Box::pin(self.others(ev, &b)));
        if let Some(r) = primary {
            reports.push((ev.user_name.clone(), r));
        }
        // Then every other user of this employee (found through its secrets).
        let others = match others {
            Ok(o) => o,
            Err(e) => {
                reports.push((ev.user_name.clone(), Err(ApplyError::Aws(e))));
                return Ok(combine(ev, reports));
            }
        };
        let kms_key = match self.kms_key(&b).await {
            Ok(k) => k,
            Err(e) => {
                reports.push((ev.user_name.clone(), Err(ApplyError::Aws(e))));
                return Ok(combine(ev, reports));
            }
        };
        for o in &others {
            match &o.user {
                Some(user) => {
                    tracing::warn!(event_id = %ev.event_id, user_name = %user, name_rule = %ev.user_name,
                        "leaver: another user of this employee, found through its secret, is retired too; users are never renamed");
                    let alt = HrEvent {
                        user_name: user.clone(),
                        ..ev.clone()
                    };
                    let r = Box::pin(self.rounds(
                        &alt,
                        &o.secret_name,
                        &cx(kms_key),
                        None,
                        depth,
                        &b,
                        log,
                    ))
                    .await;
                    reports.push((user.clone(), r));
                }
                // A live secret of this employee whose user cannot be found (renamed
                // out of the path, or deleted outside the function): someone must look.
                None if o.status() == STATUS_ACTIVE => {
                    let name = o.named().unwrap_or_else(|| "(unnamed)".to_owned());
                    reports.push((
                        name.to_owned(),
                        Ok(Report::new(
                            Outcome::Failed,
                            Some(format!(
                                "secret {} names user {name}, which no longer exists under USER_PATH (neither by name nor by its {TAG_USER_ID}): renamed, moved or deleted outside the function; someone must look",
                                o.secret_name
                            )),
                        )),
                    ));
                }
                None => {}
            }
        }
        if !mine {
            // The name rule finds no user of this employee: the name rule's own
            // secret may name it by its IAM id (renamed outside the function);
            // else what that secret says decides (a tombstone: unchanged; a live
            // one: the user vanished, failed; none: unchanged).
            let meta = match Box::pin(self.describe(&own_secret, &b)).await {
                Ok(m) => m,
                Err(e) => {
                    reports.push((ev.user_name.clone(), Err(ApplyError::Aws(e))));
                    return Ok(combine(ev, reports));
                }
            };
            let renamed = match Box::pin(self.renamed(ev, meta.as_ref(), &b)).await {
                Ok(r) => r,
                Err(e) => {
                    reports.push((ev.user_name.clone(), Err(ApplyError::Aws(e))));
                    return Ok(combine(ev, reports));
                }
            };
            match renamed {
                Some(user) if !reports.iter().any(|(u, _)| *u == user) => {
                    let alt = HrEvent {
                        user_name: user.clone(),
                        ..ev.clone()
                    };
                    let r = Box::pin(self.rounds(
                        &alt,
                        &own_secret,
                        &cx(kms_key),
                        None,
                        depth,
                        &b,
                        log,
                    ))
                    .await;
                    reports.insert(0, (user, r));
                }
                Some(_) => {}
                None if reports.is_empty() || meta.is_some() => {
                    let r = Box::pin(self.rounds(
                        ev,
                        &own_secret,
                        &cx(kms_key),
                        None,
                        ReadDepth::Leaver,
                        &b,
                        log,
                    ))
                    .await;
                    reports.push((ev.user_name.clone(), r));
                }
                None => {}
            }
        }
        Ok(combine(ev, reports))
    }

    /// Read -> plan -> apply until the user converges (or a verdict).
    #[allow(clippy::too_many_arguments)]
    async fn rounds(
        &self,
        ev: &HrEvent,
        secret_name: &str,
        cx: &Context<'_>,
        first: Option<(UserState, Option<SecretDoc>)>,
        mut depth: ReadDepth,
        b: &Budget,
        log: &ActionLog,
    ) -> Result<Report, ApplyError> {
        let mut read = first;
        let mut conflicts = 0;
        // A failure found on the cut-off (tampered state) outlives the cut-off's
        // own tags, which overwrite the forged ones.
        let mut sticky: Option<String> = None;
        let start = log.len();
        loop {
            let (state, doc) = match read.take() {
                Some(r) => r,
                None => Box::pin(self.read(ev, secret_name, depth, b)).await?,
            };
            // A leaver's cut-off is planned without the KMS key (IAM alone); every
            // plan that sees the secret compares it with SECRET_KMS_KEY_ID itself.
            let resolved;
            let cx = if state.secret_meta.is_some() && cx.kms_key.is_none() {
                resolved = Context {
                    kms_key: self.kms_key(b).await?,
                    ..*cx
                };
                &resolved
            } else {
                cx
            };
            let verdict = plan(ev, cx, &state);
            let done = |outcome, reason: Option<String>| {
                Ok(match (&sticky, outcome) {
                    (Some(why), _) => Report::new(Outcome::Failed, Some(why.clone())),
                    (None, o) => Report::new(o, reason),
                })
            };
            let (p, then_read) = match verdict {
                Verdict::Stale(why) => return done(Outcome::Stale, Some(why)),
                Verdict::Rejected(why) => return Ok(Report::new(Outcome::Rejected, Some(why))),
                Verdict::Failed(why) => return Ok(Report::new(Outcome::Failed, Some(why))),
                Verdict::Unchanged(why) if log.len() == start => {
                    return done(Outcome::Unchanged, Some(why))
                }
                Verdict::Unchanged(_) => return done(Outcome::Applied, None),
                Verdict::ReadMore(p) => (p, true),
                Verdict::Apply(p) => (p, false),
            };
            if self.config.dry_run {
                let mut r = Report::new(Outcome::Planned, None);
                r.planned = p.action_names();
                return Ok(r);
            }
            let new_password = if p
                .steps()
                .any(|s| matches!(s, Step::WriteSecret(w) if w.password == Cred::New))
            {
                Some(generate_default(self.password_policy(b).await?))
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
            let user_id = match &state.lookup {
                Lookup::Found(u) => u.user_id.clone(),
                _ => String::new(),
            };
            let applier = Applier {
                services: &self.services,
                config: &self.config,
                event: ev,
                secret_name: secret_name.to_owned(),
                signin_url: cx.signin_url,
                budget: *b,
                log,
                faults: self.faults.as_deref(),
                vault: Mutex::new(Vault {
                    current: doc,
                    new_password,
                    created_key: None,
                    kept_key_created,
                    user_id,
                }),
            };
            match Box::pin(applier.apply(&p)).await {
                Ok(()) if then_read => {
                    if sticky.is_none() {
                        sticky = p.fail_after.clone();
                    }
                    depth = ReadDepth::Leaver;
                }
                Ok(()) => {
                    return Ok(match p.fail_after.or(sticky) {
                        Some(why) => Report::new(Outcome::Failed, Some(why)),
                        // Every step found done (an emulator lacking a call).
                        None if log.len() == start => Report::new(
                            Outcome::Unchanged,
                            Some(format!("{} already in effect", ev.event_type.as_str())),
                        ),
                        None => Report::new(Outcome::Applied, None),
                    });
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

/// Another user (or a secret without one) of the employee, found through the
/// employee's secrets.
#[derive(Debug, Clone)]
struct Other {
    /// The user, when it exists (by name or by its IAM id) and is this employee's.
    user: Option<String>,
    secret_name: String,
    /// The secret's tags.
    tags: BTreeMap<String, String>,
}

impl Other {
    fn status(&self) -> &str {
        self.tags.get(TAG_STATUS).map_or("", String::as_str)
    }
    /// The user the secret names (`hr:user-name`).
    fn named(&self) -> Option<String> {
        self.tags.get(TAG_USER_NAME).cloned()
    }
}

/// One report for a leaver that acted on several users: the worst outcome, the
/// first reason of it, the users acted on.
fn combine(ev: &HrEvent, reports: Vec<(String, Result<Report, ApplyError>)>) -> Report {
    let severity = |o: Outcome| match o {
        Outcome::Failed | Outcome::Rejected => 4,
        Outcome::Applied => 3,
        Outcome::Planned | Outcome::Scheduled => 2,
        Outcome::Stale => 1,
        Outcome::Unchanged => 0,
    };
    let mut users = Vec::new();
    let mut worst: Option<Report> = None;
    for (user, r) in reports {
        let r = r.unwrap_or_else(|e| Report::new(Outcome::Failed, Some(e.to_string())));
        if !users.contains(&user) {
            users.push(user);
        }
        if let Some(w) = &mut worst {
            if w.outcome == Outcome::Planned && r.outcome == Outcome::Planned {
                w.planned.extend(r.planned);
                continue;
            }
        }
        if worst
            .as_ref()
            .is_none_or(|w| severity(r.outcome) > severity(w.outcome))
        {
            worst = Some(r);
        }
    }
    let mut report = worst.unwrap_or_else(|| {
        Report::new(
            Outcome::Unchanged,
            Some(format!("user {} does not exist", ev.user_name)),
        )
    });
    if users.first().is_some_and(|u| *u != ev.user_name) {
        report.user_name = users.first().cloned();
    }
    report.users = users;
    report
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
