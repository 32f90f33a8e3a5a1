//! Secrets Manager adapter: one secret per user.

use aws_sdk_secretsmanager::types::Tag;
use aws_sdk_secretsmanager::Client;

use super::{call, classify, AwsError, Budget, ErrorKind, Retry};
use crate::state::{SecretDoc, SecretState};

#[derive(Clone)]
pub struct Secrets {
    client: Client,
    kms_key_id: Option<String>,
}

macro_rules! op {
    ($budget:expr, $name:literal, $req:expr) => {
        call($budget, Retry::Safe, || async {
            $req.send().await.map_err(|e| classify($name, e))
        })
    };
}

impl Secrets {
    pub fn new(client: Client, kms_key_id: Option<String>) -> Self {
        Secrets { client, kms_key_id }
    }

    /// Reads the secret: its state for the planner, its values for the applier.
    pub async fn read(
        &self,
        name: &str,
        b: &Budget,
    ) -> Result<(SecretState, Option<SecretDoc>), AwsError> {
        match op!(
            b,
            "GetSecretValue",
            self.client.get_secret_value().secret_id(name)
        )
        .await
        {
            Ok(out) => {
                let doc = out.secret_string().and_then(SecretDoc::parse);
                let view = doc.as_ref().map(SecretDoc::view).unwrap_or_default();
                Ok((SecretState::Present(view), doc))
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok((SecretState::Absent, None)),
            // Refused for its state: scheduled for deletion, if DescribeSecret says so.
            Err(e) if e.kind == ErrorKind::InvalidState => {
                if self.is_scheduled(name, b).await? {
                    Ok((SecretState::Scheduled, None))
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn is_scheduled(&self, name: &str, b: &Budget) -> Result<bool, AwsError> {
        let out = op!(
            b,
            "DescribeSecret",
            self.client.describe_secret().secret_id(name)
        )
        .await?;
        Ok(out.deleted_date().is_some())
    }

    /// Creates the secret, or, when the name exists (live or scheduled for deletion),
    /// restores and overwrites it. Returns the calls made, for the audit.
    pub async fn create_or_replace(
        &self,
        name: &str,
        doc: &SecretDoc,
        tags: &[(String, String)],
        b: &Budget,
    ) -> Result<Vec<&'static str>, AwsError> {
        match self.create(name, doc, tags, b).await {
            Ok(()) => Ok(vec!["CreateSecret"]),
            Err(e) if matches!(e.kind, ErrorKind::AlreadyExists | ErrorKind::InvalidState) => {
                let mut made = Vec::new();
                if self.is_scheduled(name, b).await? {
                    self.restore(name, b).await?;
                    made.push("RestoreSecret");
                }
                self.put(name, doc, b).await?;
                made.push("PutSecretValue");
                Ok(made)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn create(
        &self,
        name: &str,
        doc: &SecretDoc,
        tags: &[(String, String)],
        b: &Budget,
    ) -> Result<(), AwsError> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let body = doc.to_json();
        // The SDK fills ClientRequestToken, so a retried create is idempotent.
        op!(
            b,
            "CreateSecret",
            self.client
                .create_secret()
                .name(name)
                .description("IAM credentials issued by hr-provisioner")
                .secret_string(&body)
                .set_kms_key_id(self.kms_key_id.clone())
                .set_tags(Some(tags.clone()))
        )
        .await
        .map(drop)
    }

    pub async fn put(&self, name: &str, doc: &SecretDoc, b: &Budget) -> Result<(), AwsError> {
        let body = doc.to_json();
        op!(
            b,
            "PutSecretValue",
            self.client
                .put_secret_value()
                .secret_id(name)
                .secret_string(&body)
        )
        .await
        .map(drop)
    }

    pub async fn restore(&self, name: &str, b: &Budget) -> Result<(), AwsError> {
        op!(
            b,
            "RestoreSecret",
            self.client.restore_secret().secret_id(name)
        )
        .await
        .map(drop)
    }

    /// Schedules deletion; a secret already scheduled or gone is fine.
    pub async fn schedule_deletion(
        &self,
        name: &str,
        days: i64,
        b: &Budget,
    ) -> Result<(), AwsError> {
        let r = op!(
            b,
            "DeleteSecret",
            self.client
                .delete_secret()
                .secret_id(name)
                .recovery_window_in_days(days)
        )
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind == ErrorKind::InvalidState && self.is_scheduled(name, b).await? => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
