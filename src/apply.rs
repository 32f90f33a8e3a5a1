//! Executes a plan, stage by stage, through the AWS adapters. It holds the secret
//! values the plan refers to (the vault) and records every change made.

use std::sync::{Arc, Mutex};

use futures::future::try_join_all;

use crate::aws::iam::Iam;
use crate::aws::kms::Kms;
use crate::aws::mail::{compose, Mailer};
use crate::aws::scheduler::Scheduler;
use crate::aws::secrets::Secrets;
use crate::aws::{AwsError, Budget, ErrorKind, Retry};
use crate::config::Config;
use crate::event::HrEvent;
use crate::password::Secret;
use crate::plan::{secret_status, secret_tags, Cred, Plan, SecretHow, SecretWrite, Step};
use crate::state::SecretDoc;

/// The AWS services, behind their adapters.
#[derive(Clone)]
pub struct Services {
    pub iam: Iam,
    pub secrets: Secrets,
    pub mailer: Mailer,
    /// Only to resolve KMS aliases (whose key encrypts a secret).
    pub kms: Kms,
    /// Only with `SCHEDULE_TARGET_ARN` set: without it no schedule can exist.
    pub scheduler: Option<Scheduler>,
}

/// A hook for fault-injection tests: called after each change is made; `true`
/// stops the record there, as a crash of the process would.
pub trait Faults: Send + Sync {
    fn crash_after(&self, action: &str) -> bool;
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("stopped by fault injection after {0}")]
    Crash(String),
    #[error("internal: {0}")]
    Internal(&'static str),
}

/// The changes made so far, shared so that a record cut short by its deadline
/// still reports them.
#[derive(Clone, Default)]
pub struct ActionLog(Arc<Mutex<Vec<String>>>);

impl ActionLog {
    pub fn push(&self, action: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(action);
        }
    }
    pub fn take(&self) -> Vec<String> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    pub fn is_empty(&self) -> bool {
        self.0.lock().map(|v| v.is_empty()).unwrap_or(true)
    }
    pub fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }
}

/// Credential values of one run: what the secret held, what was generated.
#[derive(Default)]
pub struct Vault {
    /// The secret's value as last read or written.
    pub current: Option<SecretDoc>,
    pub new_password: Option<Secret>,
    /// Id, secret half and creation time of the key created in this run.
    pub created_key: Option<(String, Secret, String)>,
    /// Creation time of the key the secret already holds (for its tags).
    pub kept_key_created: Option<String>,
    /// The user's IAM UserId (for the secret's `hr:user-id`): read, or given by
    /// CreateUser in this run.
    pub user_id: String,
}

pub struct Applier<'a> {
    pub services: &'a Services,
    pub config: &'a Config,
    pub event: &'a HrEvent,
    /// The user's secret: `SECRET_PREFIX` + its name, or the secret that found the
    /// user when it was renamed.
    pub secret_name: String,
    pub signin_url: &'a str,
    pub budget: Budget,
    pub log: &'a ActionLog,
    pub faults: Option<&'a dyn Faults>,
    pub vault: Mutex<Vault>,
}

impl Applier<'_> {
    pub async fn apply(&self, plan: &Plan) -> Result<(), ApplyError> {
        // Right after CreateUser, IAM may not see the user yet for a moment.
        let mut retry = Retry::Safe;
        for stage in &plan.stages {
            try_join_all(stage.iter().map(|step| self.step(step, retry))).await?;
            if stage.iter().any(|s| matches!(s, Step::CreateUser { .. })) {
                retry = Retry::AfterCreate;
            }
        }
        Ok(())
    }

    fn made(&self, action: String) -> Result<(), ApplyError> {
        let crash = self.faults.is_some_and(|f| f.crash_after(&action));
        self.log.push(action.clone());
        if crash {
            return Err(ApplyError::Crash(action));
        }
        Ok(())
    }

    async fn step(&self, step: &Step, retry: Retry) -> Result<(), ApplyError> {
        let (iam, b, user) = (
            &self.services.iam,
            &self.budget,
            self.event.user_name.as_str(),
        );
        let name = step.to_string();
        match step {
            Step::CreateUser { tags, boundary_arn } => {
                let id = iam
                    .create_user(
                        user,
                        &self.config.user_path,
                        tags,
                        boundary_arn.as_deref(),
                        b,
                    )
                    .await?;
                self.with_vault(|v| v.user_id = id)?;
            }
            Step::TagUser { tags } => iam.tag_user(user, tags, retry, b).await?,
            Step::UntagUser { keys } => iam.untag_user(user, keys, b).await?,
            Step::TagSecret { tags } => {
                self.services
                    .secrets
                    .tag(&self.secret_name, tags, b)
                    .await?
            }
            Step::UntagSecret { keys } => {
                self.services
                    .secrets
                    .untag(&self.secret_name, keys, b)
                    .await?
            }
            Step::PutBoundary { arn } => {
                if !iam.put_boundary(user, arn, retry, b).await? {
                    return Ok(());
                }
            }
            Step::PutDenyAll => iam.put_deny_all(user, b).await?,
            Step::DeleteInlinePolicy { name } => iam.delete_user_policy(user, name, b).await?,
            Step::AddToGroup { group } => iam.add_to_group(user, group, retry, b).await?,
            Step::RemoveFromGroup { group } => iam.remove_from_group(user, group, b).await?,
            Step::AttachPolicy { arn } => iam.attach_policy(user, arn, retry, b).await?,
            Step::DetachPolicy { arn } => iam.detach_policy(user, arn, b).await?,
            Step::DeleteAccessKey { id } => iam.delete_access_key(user, id, b).await?,
            Step::CreateAccessKey => {
                let key = iam.create_access_key(user, b).await?;
                self.with_vault(|v| v.created_key = Some(key))?;
            }
            Step::WriteSecret(w) => return self.write_secret(w).await,
            Step::CreateLoginProfile => {
                let pw = self.stored_password()?;
                let made = iam.create_login_profile(user, &pw, retry, b).await?;
                return self.made(made.to_owned());
            }
            Step::UpdateLoginProfile => {
                let pw = self.stored_password()?;
                iam.update_login_profile(user, &pw, b).await?;
            }
            Step::DeleteLoginProfile => iam.delete_login_profile(user, b).await?,
            Step::DeactivateMfa { serial } => iam.deactivate_mfa(user, serial, b).await?,
            Step::DeleteVirtualMfa { serial } => iam.delete_virtual_mfa(serial, b).await?,
            Step::DeleteSshKey { id } => iam.delete_ssh_key(user, id, b).await?,
            Step::DeleteSigningCert { id } => iam.delete_signing_cert(user, id, b).await?,
            Step::DeleteServiceCredential { id } => {
                iam.delete_service_credential(user, id, b).await?
            }
            Step::ClearPreviousSecretVersion { version_id } => {
                if !self
                    .services
                    .secrets
                    .clear_previous(&self.secret_name, version_id.as_deref(), b)
                    .await?
                {
                    return Ok(());
                }
            }
            Step::ScheduleSecretDeletion { recovery_days } => {
                self.services
                    .secrets
                    .schedule_deletion(&self.secret_name, *recovery_days, b)
                    .await?
            }
            Step::SendWelcome { to } => {
                let mail = compose(
                    user,
                    self.signin_url,
                    self.event.employee.first_name.as_deref(),
                );
                self.services.mailer.send(to, &mail, b).await?
            }
            Step::DeleteUser => iam.delete_user(user, b).await?,
        }
        self.made(name)
    }

    fn with_vault<T>(&self, f: impl FnOnce(&mut Vault) -> T) -> Result<T, ApplyError> {
        self.vault
            .lock()
            .map(|mut v| f(&mut v))
            .map_err(|_| ApplyError::Internal("vault lock poisoned"))
    }

    /// The password the secret holds now: login profiles are only ever set to it.
    fn stored_password(&self) -> Result<Secret, ApplyError> {
        self.with_vault(|v| v.current.as_ref().and_then(|d| d.password.clone()))?
            .ok_or(ApplyError::Internal("no stored password to apply"))
    }

    async fn write_secret(&self, w: &SecretWrite) -> Result<(), ApplyError> {
        let user = self.event.user_name.as_str();
        let doc = self.with_vault(
            |v| -> Result<(SecretDoc, Vec<(String, String)>), ApplyError> {
                let old = v.current.clone().unwrap_or_default();
                let password = match w.password {
                    Cred::Keep => old.password.clone(),
                    Cred::Drop => None,
                    Cred::New => Some(
                        v.new_password
                            .clone()
                            .ok_or(ApplyError::Internal("no generated password"))?,
                    ),
                };
                let (access_key_id, secret_access_key, created) = match w.key {
                    Cred::Keep => (
                        old.access_key_id.clone(),
                        old.secret_access_key.clone(),
                        v.kept_key_created.clone().unwrap_or_default(),
                    ),
                    Cred::Drop => (None, None, String::new()),
                    Cred::New => {
                        let (id, secret, created) = v
                            .created_key
                            .clone()
                            .ok_or(ApplyError::Internal("no created key"))?;
                        (Some(id), Some(secret), created)
                    }
                };
                let keep_previous = w.key == Cred::Keep;
                let tags = secret_tags(
                    self.event,
                    user,
                    &v.user_id,
                    secret_status(self.event, self.config),
                    access_key_id.as_deref().map(|id| (id, created.as_str())),
                );
                let doc = SecretDoc {
                    user_name: user.to_owned(),
                    signin_url: if self.signin_url.is_empty() {
                        old.signin_url.clone()
                    } else {
                        self.signin_url.to_owned()
                    },
                    password,
                    access_key_id,
                    secret_access_key,
                    employee_id: Some(self.event.employee.employee_id.clone()),
                    password_pending: w.password_pending,
                    // A rotation's old key stays while its key is kept (the
                    // lifecycle writer drops it after the grace).
                    previous_access_key_id: keep_previous
                        .then(|| old.previous_access_key_id.clone())
                        .flatten(),
                    previous_secret_access_key: keep_previous
                        .then(|| old.previous_secret_access_key.clone())
                        .flatten(),
                };
                Ok((doc, tags))
            },
        )??;
        let (doc, tags) = doc;
        let secrets = &self.services.secrets;
        let name = self.secret_name.as_str();
        let b = &self.budget;
        // The value first, then the tags that describe it: a crash in between
        // leaves tags that the next run finds stale and rewrites.
        match w.how {
            SecretHow::Create => {
                secrets.create(name, &doc, &tags, b).await?;
                self.with_vault(|v| v.current = Some(doc))?;
                return self.made("CreateSecret".into());
            }
            SecretHow::Put => {}
            SecretHow::Restore => {
                secrets.restore(name, b).await?;
                self.made("RestoreSecret".into())?;
                // Its policy could not be read while deletion was pending: a secret
                // that others may read never receives a credential. The next run
                // finds it live with a policy and rejects the record.
                if secrets.has_policy(name, b).await? {
                    return Err(ApplyError::Aws(AwsError::new(
                        "GetResourcePolicy",
                        ErrorKind::Fatal,
                        "the restored secret carries a resource policy: it is never written",
                    )));
                }
            }
        }
        secrets.put(name, &doc, b).await?;
        self.with_vault(|v| v.current = Some(doc))?;
        self.made("PutSecretValue".into())?;
        secrets.tag(name, &tags, b).await?;
        self.made("TagResource".into())
    }
}
