//! One record, end to end: read state -> plan -> apply, until converged.

use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::apply::{ActionLog, Applier, ApplyError, Faults, Services, Vault};
use crate::audit::Outcome;
use crate::aws::iam::Depth;
use crate::aws::{AwsError, Budget, ErrorKind};
use crate::config::Config;
use crate::event::{EventType, HrEvent};
use crate::password::{generate_default, PasswordPolicy};
use crate::plan::{plan, Context, Cred, Step, Verdict};
use crate::state::{Lookup, SecretDoc, UserState};

/// Rounds of read -> plan -> apply per record: a DeleteConflict (something was
/// attached after the read) is answered by reading again and removing it.
const MAX_ROUNDS: usize = 3;

pub struct Provisioner {
    pub config: Config,
    pub services: Services,
    signin_url: OnceCell<String>,
    password_policy: OnceCell<PasswordPolicy>,
    faults: Option<Arc<dyn Faults>>,
}

/// How one record ended, before it becomes an audit line.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// For `planned`: the steps a real run would make.
    pub planned: Vec<String>,
}

impl Report {
    fn new(outcome: Outcome, reason: Option<String>) -> Self {
        Report {
            outcome,
            reason,
            planned: Vec::new(),
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

    /// Reads what AWS holds about the event's user.
    async fn read(
        &self,
        ev: &HrEvent,
        b: &Budget,
    ) -> Result<(UserState, Option<SecretDoc>), AwsError> {
        let iam = &self.services.iam;
        let secret_name = self.config.secret_name(&ev.user_name);
        // A leaver reads the secret alongside the user: it is needed whenever the
        // user exists. A fresh joiner must not pay for it (it writes the secret
        // optimistically), so a joiner reads it only once the user is found.
        let (lookup, leaver_secret) = match ev.event_type {
            EventType::Joined | EventType::Changed => (iam.lookup(&ev.user_name, b).await?, None),
            EventType::Left => {
                let (lookup, secret) = futures::try_join!(
                    iam.lookup(&ev.user_name, b),
                    self.services.secrets.read(&secret_name, b)
                )?;
                (lookup, Some(secret))
            }
        };
        if !matches!(lookup, Lookup::Found(_)) {
            return Ok((
                UserState {
                    lookup,
                    ..UserState::absent()
                },
                None,
            ));
        }
        let (attachments, (secret, doc)) = match leaver_secret {
            Some(secret) => (
                iam.attachments(&ev.user_name, Depth::Leaver, b).await?,
                secret,
            ),
            None => futures::try_join!(
                iam.attachments(&ev.user_name, Depth::Joiner, b),
                self.services.secrets.read(&secret_name, b)
            )?,
        };
        Ok((
            UserState {
                lookup,
                attachments,
                secret,
            },
            doc,
        ))
    }

    /// Brings AWS in line with one event. Changes made are pushed to `log`.
    pub async fn process(
        &self,
        ev: &HrEvent,
        function_arn: &str,
        b: Budget,
        log: &ActionLog,
    ) -> Report {
        match self.converge(ev, function_arn, b, log).await {
            Ok(r) => r,
            Err(e) => Report::new(Outcome::Failed, Some(e.to_string())),
        }
    }

    async fn converge(
        &self,
        ev: &HrEvent,
        function_arn: &str,
        b: Budget,
        log: &ActionLog,
    ) -> Result<Report, ApplyError> {
        // Only joiners need the URL (for the secret and the mail) and the password
        // policy; both are read once per container, alongside the first state read
        // so that a cold container pays no extra round trip. A leaver keeps
        // whatever URL the secret already says.
        let per_container = async {
            match ev.event_type {
                EventType::Joined | EventType::Changed => {
                    let (url, _) = futures::try_join!(
                        self.signin_url(function_arn, &b),
                        self.password_policy(&b)
                    )?;
                    Ok(url)
                }
                EventType::Left => Ok(""),
            }
        };
        let (signin_url, first) = futures::try_join!(per_container, self.read(ev, &b))?;
        let rule = self
            .config
            .rules
            .for_department(ev.employee.department.as_deref());
        let cx = Context {
            config: &self.config,
            rule,
            signin_url,
        };
        let mut read = Some(first);
        for round in 1..=MAX_ROUNDS {
            let (state, doc) = match read.take() {
                Some(r) => r,
                None => self.read(ev, &b).await?,
            };
            let p = match plan(ev, &cx, &state) {
                Verdict::Stale(why) => return Ok(Report::new(Outcome::Stale, Some(why))),
                Verdict::Rejected(why) => return Ok(Report::new(Outcome::Rejected, Some(why))),
                Verdict::Unchanged(_) if log.is_empty() => {
                    return Ok(Report::new(Outcome::Unchanged, None))
                }
                Verdict::Unchanged(_) => return Ok(Report::new(Outcome::Applied, None)),
                Verdict::Apply(p) => p,
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
                Some(generate_default(self.password_policy(&b).await?))
            } else {
                None
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
                }),
            };
            match applier.apply(&p).await {
                Ok(()) => return Ok(Report::new(Outcome::Applied, None)),
                Err(ApplyError::Aws(e)) if e.kind == ErrorKind::Conflict && round < MAX_ROUNDS => {
                    tracing::warn!(event_id = %ev.event_id, user_name = %ev.user_name, op = e.op,
                        "conflict: reading the user again to remove what remains");
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApplyError::Internal("did not converge"))
    }
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
