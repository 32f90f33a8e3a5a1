//! The front door's AWS adapter: SendMessage to the queue, its own token secrets
//! (GetSecretValue, cached briefly), and IAM reads of users under `USER_PATH`.
//! Nothing here writes to IAM or Secrets Manager.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;

use super::scim::Held;
use super::{parse_keys, Store, StoreError};
use crate::aws::classify;
use crate::password::Secret;

/// How long token secrets are kept in memory. A rotation adds the new key beside
/// the old one (`current`/`previous`), so a cached copy is never the only valid
/// set for longer than this; it keeps Secrets Manager off the hot path.
pub const KEY_CACHE: Duration = Duration::from_secs(60);

pub struct AwsStore {
    sqs: aws_sdk_sqs::Client,
    sm: aws_sdk_secretsmanager::Client,
    iam: aws_sdk_iam::Client,
    queue_url: String,
    fifo: bool,
    webhook_secret_id: Option<String>,
    scim_secret_id: Option<String>,
    user_path: String,
    cache: Mutex<HashMap<String, (Instant, Vec<Secret>)>>,
}

/// The variables the adapter needs; `Err` names the one that is wrong.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub queue_url: String,
    pub webhook_secret_id: Option<String>,
    pub scim_secret_id: Option<String>,
    pub user_path: String,
}

impl StoreConfig {
    pub fn from_env(var: impl Fn(&str) -> Option<String>, user_path: &str) -> Result<Self, String> {
        let queue_url = var("QUEUE_URL")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| "QUEUE_URL is required: the provisioner's queue".to_owned())?;
        let webhook_secret_id = var("WEBHOOK_SECRET_ID").filter(|v| !v.is_empty());
        let scim_secret_id = var("SCIM_TOKEN_SECRET_ID").filter(|v| !v.is_empty());
        if webhook_secret_id.is_none() && scim_secret_id.is_none() {
            return Err(
                "WEBHOOK_SECRET_ID or SCIM_TOKEN_SECRET_ID is required: without either, every request is refused"
                    .to_owned(),
            );
        }
        Ok(StoreConfig {
            queue_url,
            webhook_secret_id,
            scim_secret_id,
            user_path: user_path.to_owned(),
        })
    }
}

impl AwsStore {
    pub fn new(sdk: &SdkConfig, c: StoreConfig) -> Self {
        // The SDK's standard retry (3 attempts) is enough here: a request that
        // still fails is answered 503 and the sender retries. SendMessage repeated
        // after an unknown outcome is deduplicated by the FIFO queue.
        let retry = RetryConfig::standard().with_max_attempts(3);
        let sqs = aws_sdk_sqs::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .build();
        let sm = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .build();
        let iam = aws_sdk_iam::config::Builder::from(sdk)
            .retry_config(retry)
            .build();
        AwsStore {
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            sm: aws_sdk_secretsmanager::Client::from_conf(sm),
            iam: aws_sdk_iam::Client::from_conf(iam),
            fifo: c.queue_url.ends_with(".fifo"),
            queue_url: c.queue_url,
            webhook_secret_id: c.webhook_secret_id,
            scim_secret_id: c.scim_secret_id,
            user_path: c.user_path,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn keys(&self, id: Option<&str>) -> Result<Vec<Secret>, StoreError> {
        // Not configured: no key, so every request of that kind is refused.
        let Some(id) = id else {
            return Ok(Vec::new());
        };
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, keys)) = cache.get(id) {
                if at.elapsed() < KEY_CACHE {
                    return Ok(keys.clone());
                }
            }
        }
        let out = self
            .sm
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| StoreError {
                op: "GetSecretValue",
                detail: classify("GetSecretValue", e).to_string(),
            })?;
        let keys =
            parse_keys(out.secret_string().unwrap_or_default()).map_err(|why| StoreError {
                op: "GetSecretValue",
                detail: format!("secret {id}: {why}"),
            })?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(id.to_owned(), (Instant::now(), keys.clone()));
        }
        Ok(keys)
    }
}

impl Store for AwsStore {
    async fn webhook_keys(&self) -> Result<Vec<Secret>, StoreError> {
        self.keys(self.webhook_secret_id.as_deref()).await
    }

    async fn scim_tokens(&self) -> Result<Vec<Secret>, StoreError> {
        self.keys(self.scim_secret_id.as_deref()).await
    }

    async fn send(&self, body: &str, group: &str, dedup_id: &str) -> Result<(), StoreError> {
        let mut req = self
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body);
        if self.fifo {
            req = req
                .message_group_id(group)
                .message_deduplication_id(dedup_id);
        }
        req.send().await.map(|_| ()).map_err(|e| StoreError {
            op: "SendMessage",
            detail: classify("SendMessage", e).to_string(),
        })
    }

    async fn user(&self, name: &str) -> Result<Option<Held>, StoreError> {
        let out = match self.iam.get_user().user_name(name).send().await {
            Ok(o) => o,
            Err(e) => {
                let e = classify("GetUser", e);
                if e.kind == crate::aws::ErrorKind::NotFound {
                    return Ok(None);
                }
                return Err(StoreError {
                    op: "GetUser",
                    detail: e.to_string(),
                });
            }
        };
        let Some(u) = out.user() else {
            return Ok(None);
        };
        // The view stops at USER_PATH: anything else does not exist for SCIM.
        if !u.path().starts_with(&self.user_path) {
            return Ok(None);
        }
        let mut tags: std::collections::BTreeMap<String, String> = u
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        if tags.is_empty() {
            // GetUser returns the tags in AWS; ListUserTags for an endpoint that
            // does not.
            let listed = self
                .iam
                .list_user_tags()
                .user_name(u.user_name())
                .send()
                .await
                .map_err(|e| StoreError {
                    op: "ListUserTags",
                    detail: classify("ListUserTags", e).to_string(),
                })?;
            tags = listed
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect();
        }
        Ok(Some(Held {
            user_name: u.user_name().to_owned(),
            tags,
            created: Some(crate::event::format_utc(
                time::OffsetDateTime::from_unix_timestamp(u.create_date().secs())
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            )),
        }))
    }

    async fn user_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        let mut pages = self
            .iam
            .list_users()
            .path_prefix(&self.user_path)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StoreError {
                op: "ListUsers",
                detail: classify("ListUsers", e).to_string(),
            })?;
            names.extend(page.users().iter().map(|u| u.user_name().to_owned()));
        }
        names.sort();
        Ok(names)
    }
}
