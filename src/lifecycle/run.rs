//! The scheduled lifecycle writer: reads like the audit (one listing of users,
//! the credential report, the secrets with their tags), then, for each active
//! managed user that holds a key or a password, its keys (`ListAccessKeys`)
//! and its secret's value, plans with [`super::plan`] and applies the steps.
//!
//! It runs inside the provisioner function (which already holds the write
//! permissions), on its own EventBridge schedule whose input is
//! `{"hr-iam-lifecycle":"run"}`; the daily audit stays read-only. `now` is a
//! parameter: the clock seam the tests set (moto dates every key "now").

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_iam::types::StatusType;
use serde::Serialize;
use time::OffsetDateTime;

use super::{plan, Key, Limits, Step, Subject};
use crate::apply::Services;
use crate::aws::mail::compose_new_key;
use crate::aws::{call, classify, AwsError, Budget, ErrorKind, Retry};
use crate::config::Config;
use crate::event::format_utc;
use crate::password::Secret;
use crate::review::model::{Inputs, Settings};
use crate::review::read::{Quiet, Reader};
use crate::review::ReviewError;
use crate::state::*;

/// What one user's run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub user_name: String,
    /// Changes made, in order (as in the core's audit line).
    pub actions: Vec<String>,
    /// Why (rotation due, unused for N days, ...).
    pub reasons: Vec<String>,
    /// Set when a step failed: the next run finishes the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Read(#[from] ReviewError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{0}")]
    Internal(&'static str),
}

/// The writer's clients: the function's services, and an IAM client for the
/// two calls the core never makes (`ListAccessKeys` with status,
/// `UpdateAccessKey`).
pub struct Writer<'a> {
    pub config: &'a Config,
    pub services: &'a Services,
    pub iam: aws_sdk_iam::Client,
}

/// The run's memory of one user: the secret's value and the key just created
/// (its secret half exists only in CreateAccessKey's answer).
#[derive(Default)]
struct Vault {
    doc: Option<SecretDoc>,
    created: Option<(String, Secret, String)>,
}

fn time_of(t: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.secs()).ok()
}

/// Whether a user may need a step at all, from the audit's read alone: it has a
/// key, a password unused long enough, or a rotation in progress. Everyone
/// else costs no per-user call.
fn worth_a_look(
    inputs: &Inputs,
    s: &Settings,
    limits: &Limits,
    name: &str,
    now: OffsetDateTime,
) -> bool {
    let secret = inputs
        .secrets
        .iter()
        .find(|x| x.name == format!("{}{name}", s.secret_prefix));
    let rotating = secret.is_some_and(|x| x.tag(TAG_PREVIOUS_ACCESS_KEY_ID).is_some());
    let row = inputs.report.rows.get(name);
    let has_keys = row.is_some_and(|r| !r.keys.is_empty());
    let password_unused = row.is_some_and(|r| {
        r.password_enabled
            && r.password_last_used
                .or(r.created)
                .is_some_and(|t| now - t >= time::Duration::days(limits.unused_days))
    });
    rotating || has_keys || password_unused
}

impl Writer<'_> {
    /// One run over every active managed user.
    pub async fn run(
        &self,
        reader: &Reader,
        now: OffsetDateTime,
        budget: &Budget,
    ) -> Result<Vec<Outcome>, LifecycleError> {
        let settings = Settings::from_config(self.config);
        let limits = Limits::from_config(self.config);
        let inputs = Box::pin(reader.read(&settings, &Quiet)).await?;
        let mut out = Vec::new();
        for u in &inputs.users {
            let managed = u.path == self.config.user_path
                && u.tag(TAG_MANAGED_BY) == Some(MANAGED_BY)
                && u.tag(TAG_STATUS) == Some(STATUS_ACTIVE);
            if !managed || !worth_a_look(&inputs, &settings, &limits, &u.name, now) {
                continue;
            }
            let secret = inputs
                .secrets
                .iter()
                .find(|x| x.name == self.config.secret_name(&u.name));
            // Only a live secret of this employee is ever written (as the core).
            let ours = secret.is_some_and(|x| {
                x.deleted.is_none()
                    && x.tag(TAG_MANAGED_BY) == Some(MANAGED_BY)
                    && x.tag(TAG_EMPLOYEE_ID).is_some()
                    && x.tag(TAG_EMPLOYEE_ID) == u.tag(TAG_EMPLOYEE_ID)
            });
            if !ours {
                continue;
            }
            let row = inputs.report.rows.get(&u.name);
            // Boxed: the SDK's nested futures are too deep to lay out inline.
            let outcome = Box::pin(self.user(
                u.name.as_str(),
                u.tags.clone(),
                u.created,
                row,
                &limits,
                now,
                budget,
            ))
            .await;
            if !outcome.actions.is_empty() || outcome.error.is_some() {
                log(&outcome);
                out.push(outcome);
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn user(
        &self,
        name: &str,
        tags: BTreeMap<String, String>,
        created: Option<OffsetDateTime>,
        row: Option<&crate::review::model::Credentials>,
        limits: &Limits,
        now: OffsetDateTime,
        b: &Budget,
    ) -> Outcome {
        let mut outcome = Outcome {
            user_name: name.to_owned(),
            actions: Vec::new(),
            reasons: Vec::new(),
            error: None,
        };
        let vault = Mutex::new(Vault::default());
        let r = self
            .plan_and_apply(
                name,
                &tags,
                created,
                row,
                limits,
                now,
                b,
                &vault,
                &mut outcome,
            )
            .await;
        if let Err(e) = r {
            outcome.error = Some(e.to_string());
        }
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn plan_and_apply(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
        created: Option<OffsetDateTime>,
        row: Option<&crate::review::model::Credentials>,
        limits: &Limits,
        now: OffsetDateTime,
        b: &Budget,
        vault: &Mutex<Vault>,
        outcome: &mut Outcome,
    ) -> Result<(), LifecycleError> {
        let keys = self.access_keys(name, row, b).await?;
        let secret_name = self.config.secret_name(name);
        let (_, doc) = self.services.secrets.read(&secret_name, b).await?;
        let Some(doc) = doc else {
            return Err(LifecycleError::Internal(
                "the secret's value is not the provisioner's JSON: left to the core",
            ));
        };
        let subject = Subject {
            user: name.to_owned(),
            keys,
            login_profile: row.is_some_and(|r| r.password_enabled),
            password_last_used: row.and_then(|r| r.password_last_used),
            user_created: row.and_then(|r| r.created).or(created).unwrap_or(now),
            stored_key: doc.access_key_id.clone(),
            previous_key: doc.previous_access_key_id.clone(),
            stored_password: doc.password.is_some(),
            mailed_for: tags.get(TAG_KEY_ROTATION).cloned(),
            email: tags.get(TAG_EMAIL).cloned(),
        };
        let p = plan(&subject, limits, now);
        outcome.reasons = p.reasons.clone();
        if let Ok(mut v) = vault.lock() {
            v.doc = Some(doc);
        }
        for stage in &p.stages {
            for step in stage {
                if self.config.dry_run {
                    outcome.actions.push(format!("planned:{step}"));
                    continue;
                }
                Box::pin(self.apply(name, &subject, step, limits, now, b, vault)).await?;
                outcome.actions.push(step.to_string());
            }
        }
        Ok(())
    }

    /// The user's keys with status and creation from IAM, last use from the
    /// credential report (matched by creation time: the report has no ids).
    async fn access_keys(
        &self,
        name: &str,
        row: Option<&crate::review::model::Credentials>,
        b: &Budget,
    ) -> Result<Vec<Key>, AwsError> {
        let out = call(b, Retry::Safe, || async {
            self.iam
                .list_access_keys()
                .user_name(name)
                .send()
                .await
                .map_err(|e| classify("ListAccessKeys", e))
        })
        .await?;
        Ok(out
            .access_key_metadata()
            .iter()
            .filter_map(|k| {
                let created = k.create_date().and_then(time_of)?;
                let last_used = row.and_then(|r| {
                    r.keys
                        .iter()
                        .find(|s| s.created.unix_timestamp() == created.unix_timestamp())
                        .and_then(|s| s.last_used)
                });
                Some(Key {
                    id: k.access_key_id()?.to_owned(),
                    active: k.status() != Some(&StatusType::Inactive),
                    created,
                    last_used,
                })
            })
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        name: &str,
        subject: &Subject,
        step: &Step,
        limits: &Limits,
        now: OffsetDateTime,
        b: &Budget,
        vault: &Mutex<Vault>,
    ) -> Result<(), LifecycleError> {
        let iam = &self.services.iam;
        let secrets = &self.services.secrets;
        let secret_name = self.config.secret_name(name);
        let lock = || {
            vault
                .lock()
                .map_err(|_| LifecycleError::Internal("vault lock poisoned"))
        };
        match step {
            Step::DeleteKey { id } => iam.delete_access_key(name, id, b).await?,
            Step::DeactivateKey { id } => {
                call(b, Retry::Safe, || async {
                    self.iam
                        .update_access_key()
                        .user_name(name)
                        .access_key_id(id)
                        .status(StatusType::Inactive)
                        .send()
                        .await
                        .map_err(|e| classify("UpdateAccessKey", e))
                })
                .await?;
            }
            Step::CreateKey => {
                let made = iam.create_access_key(name, b).await?;
                lock()?.created = Some(made);
            }
            Step::StoreNewKey => {
                let (doc, new_id, new_created) = {
                    let v = lock()?;
                    let mut doc = v
                        .doc
                        .clone()
                        .ok_or(LifecycleError::Internal("no secret read"))?;
                    let (id, secret, created) = v
                        .created
                        .clone()
                        .ok_or(LifecycleError::Internal("no created key"))?;
                    doc.previous_access_key_id = doc.access_key_id.take();
                    doc.previous_secret_access_key = doc.secret_access_key.take();
                    doc.access_key_id = Some(id.clone());
                    doc.secret_access_key = Some(secret);
                    (doc, id, created)
                };
                secrets.put(&secret_name, &doc, b).await?;
                let old_created = subject
                    .keys
                    .iter()
                    .find(|k| Some(&k.id) == doc.previous_access_key_id.as_ref())
                    .map(|k| format_utc(k.created))
                    .unwrap_or_default();
                lock()?.doc = Some(doc.clone());
                let mut tags = vec![
                    (TAG_ACCESS_KEY_ID.to_owned(), new_id),
                    (TAG_ACCESS_KEY_CREATED.to_owned(), new_created),
                ];
                if let Some(old) = &doc.previous_access_key_id {
                    tags.push((TAG_PREVIOUS_ACCESS_KEY_ID.to_owned(), old.clone()));
                    tags.push((TAG_PREVIOUS_ACCESS_KEY_CREATED.to_owned(), old_created));
                }
                secrets.tag(&secret_name, &tags, b).await?;
            }
            Step::MailNewKey { to } => {
                let new_created = subject
                    .stored_key
                    .as_ref()
                    .filter(|_| subject.previous_key.is_some())
                    .and_then(|id| subject.keys.iter().find(|k| &k.id == id))
                    .map(|k| k.created)
                    .unwrap_or(now);
                let deadline = new_created + time::Duration::days(limits.grace_days);
                let day = format_utc(deadline);
                let mail = compose_new_key(name, day.get(..10).unwrap_or(&day));
                self.services.mailer.send(to, &mail, b).await?;
            }
            Step::MarkMailed => {
                let id = lock()?
                    .doc
                    .as_ref()
                    .and_then(|d| d.access_key_id.clone())
                    .ok_or(LifecycleError::Internal("no stored key to mark"))?;
                iam.tag_user(name, &[(TAG_KEY_ROTATION.to_owned(), id)], Retry::Safe, b)
                    .await?;
            }
            Step::DropPrevious => {
                let doc = {
                    let mut v = lock()?;
                    let doc = v
                        .doc
                        .as_mut()
                        .ok_or(LifecycleError::Internal("no secret read"))?;
                    doc.previous_access_key_id = None;
                    doc.previous_secret_access_key = None;
                    doc.clone()
                };
                secrets.put(&secret_name, &doc, b).await?;
                secrets
                    .untag(
                        &secret_name,
                        &[
                            TAG_PREVIOUS_ACCESS_KEY_ID.to_owned(),
                            TAG_PREVIOUS_ACCESS_KEY_CREATED.to_owned(),
                        ],
                        b,
                    )
                    .await?;
            }
            Step::DeleteLoginProfile => match iam.delete_login_profile(name, b).await {
                Ok(()) => {}
                // The credential report is up to four hours old: gone is done.
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            },
            Step::DropPassword => {
                let doc = {
                    let mut v = lock()?;
                    let doc = v
                        .doc
                        .as_mut()
                        .ok_or(LifecycleError::Internal("no secret read"))?;
                    doc.password = None;
                    doc.password_pending = false;
                    doc.clone()
                };
                secrets.put(&secret_name, &doc, b).await?;
            }
        }
        Ok(())
    }
}

/// One line per user acted on: user, actions, reasons; never a value.
fn log(o: &Outcome) {
    let json = serde_json::to_string(o).unwrap_or_default();
    match &o.error {
        None => {
            tracing::info!(target: "lifecycle", user_name = %o.user_name, json = %json, "lifecycle applied")
        }
        Some(e) => {
            tracing::error!(target: "lifecycle", user_name = %o.user_name, error = %e, json = %json, "lifecycle failed")
        }
    }
}
