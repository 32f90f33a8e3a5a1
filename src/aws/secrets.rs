//! Secrets Manager adapter: one secret per user.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use aws_sdk_secretsmanager::Client;

use super::gather::{Gathering, Until};
use super::{call, classify, AwsError, Budget, ErrorKind, Retry};
use crate::state::{
    SecretDoc, SecretMeta, SecretState, MANAGED_BY, TAG_EMPLOYEE_ID, TAG_MANAGED_BY,
};

/// The staging label Secrets Manager moves to the prior value on every write.
const PREVIOUS: &str = "AWSPREVIOUS";
const CURRENT: &str = "AWSCURRENT";

#[derive(Clone)]
pub struct Secrets {
    client: Client,
    kms_key_id: Option<String>,
    /// The `ListSecrets` by employee not yet sent, which a record may still join.
    /// See [`Secrets::find_by_employee`].
    gathering: Gathering<Listed>,
}

/// A secret's name and tags.
type Found = Vec<(String, BTreeMap<String, String>)>;
type Listed = Result<Arc<Found>, AwsError>;

/// AWS takes at most 10 values in one `ListSecrets` filter.
const MAX_FILTER_VALUES: usize = 10;

macro_rules! op {
    ($budget:expr, $name:literal, $req:expr) => {
        call($budget, Retry::Safe, || async {
            $req.send().await.map_err(|e| classify($name, e))
        })
    };
}

fn to_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect()
}

impl Secrets {
    pub fn new(client: Client, kms_key_id: Option<String>) -> Self {
        Secrets {
            client,
            kms_key_id,
            gathering: Gathering::default(),
        }
    }

    /// What Secrets Manager says about the secret, without its value: tags, key,
    /// whether deletion is scheduled. `None`: no secret under the name.
    pub async fn describe(&self, name: &str, b: &Budget) -> Result<Option<SecretMeta>, AwsError> {
        let out = match op!(
            b,
            "DescribeSecret",
            self.client.describe_secret().secret_id(name)
        )
        .await
        {
            Ok(out) => out,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let labelled = |label: &str| {
            out.version_ids_to_stages().and_then(|m| {
                m.iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == label))
                    .map(|(id, _)| id.clone())
            })
        };
        let (previous_version, current_version) = (labelled(PREVIOUS), labelled(CURRENT));
        Ok(Some(SecretMeta {
            tags: tag_map(out.tags()),
            kms_key_id: out.kms_key_id().map(str::to_owned),
            scheduled: out.deleted_date().is_some(),
            has_policy: false,
            previous_version,
            current_version,
        }))
    }

    /// Takes the `AWSPREVIOUS` label off whichever version holds it: once a leaver
    /// has emptied the secret, that version holds the last credentials. (A version
    /// without labels is deprecated: no longer read by stage, removed by Secrets
    /// Manager in time; the secret itself is scheduled for deletion next.)
    /// `version`: the one the plan knows holds the label (read with the secret);
    /// unknown, it is read first.
    pub async fn clear_previous(
        &self,
        name: &str,
        version: Option<&str>,
        b: &Budget,
    ) -> Result<bool, AwsError> {
        let version = match version {
            Some(v) => v.to_owned(),
            None => match self
                .describe(name, b)
                .await?
                .and_then(|m| m.previous_version)
            {
                Some(v) => v,
                None => return Ok(false),
            },
        };
        op!(
            b,
            "UpdateSecretVersionStage",
            self.client
                .update_secret_version_stage()
                .secret_id(name)
                .version_stage(PREVIOUS)
                .remove_from_version_id(&version)
        )
        .await?;
        Ok(true)
    }

    /// Whether a resource policy is attached: anyone it names could read the value.
    pub async fn has_policy(&self, name: &str, b: &Budget) -> Result<bool, AwsError> {
        let out = op!(
            b,
            "GetResourcePolicy",
            self.client.get_resource_policy().secret_id(name)
        )
        .await?;
        Ok(out.resource_policy().is_some_and(|p| !p.trim().is_empty()))
    }

    /// Reads the value: its view for the planner, its values for the applier.
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
            // Refused for its state: scheduled for deletion meanwhile.
            Err(e) if e.kind == ErrorKind::InvalidState => Ok((SecretState::Scheduled, None)),
            Err(e) => Err(e),
        }
    }

    async fn is_scheduled(&self, name: &str, b: &Budget) -> Result<bool, AwsError> {
        Ok(self.describe(name, b).await?.is_some_and(|m| m.scheduled))
    }

    /// The provisioner's secrets tagged with an employee id (live or scheduled for
    /// deletion), as (name, tags): how a user is found after HR changed its email.
    ///
    /// Records that ask in the same moment (the first reads of a batch's records)
    /// share one call for up to 10 employees: a batch of 10 joiners made 10, and an
    /// emulator reads every secret of the account for each (issue 20). A record only
    /// joins a call not yet sent, so its answer is never older than its question.
    pub async fn find_by_employee(
        &self,
        prefix: &str,
        employee_id: &str,
        b: &Budget,
    ) -> Result<Found, AwsError> {
        // Closed as it is sent: every member's question is older than the call.
        let all = self
            .gathering
            .share(
                prefix,
                employee_id,
                MAX_FILTER_VALUES,
                Until::Sent,
                |ids| async move {
                    list_by_employees(&self.client, prefix, &ids, b)
                        .await
                        .map(Arc::new)
                },
            )
            .await?;
        Ok(all
            .iter()
            // The filters match any tag key and any tag value: check the pair.
            .filter(|(_, tags)| tags.get(TAG_EMPLOYEE_ID).map(String::as_str) == Some(employee_id))
            .cloned()
            .collect())
    }

    pub async fn tag(
        &self,
        name: &str,
        tags: &[(String, String)],
        b: &Budget,
    ) -> Result<(), AwsError> {
        let tags = to_tags(tags);
        op!(
            b,
            "TagResource",
            self.client
                .tag_resource()
                .secret_id(name)
                .set_tags(Some(tags.clone()))
        )
        .await
        .map(drop)
    }

    pub async fn untag(&self, name: &str, keys: &[String], b: &Budget) -> Result<(), AwsError> {
        op!(
            b,
            "UntagResource",
            self.client
                .untag_resource()
                .secret_id(name)
                .set_tag_keys(Some(keys.to_vec()))
        )
        .await
        .map(drop)
    }

    pub async fn create(
        &self,
        name: &str,
        doc: &SecretDoc,
        tags: &[(String, String)],
        b: &Budget,
    ) -> Result<(), AwsError> {
        let tags = to_tags(tags);
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

/// One `ListSecrets` for the provisioner's secrets tagged with any of `ids`.
async fn list_by_employees(
    c: &Client,
    prefix: &str,
    ids: &[String],
    b: &Budget,
) -> Result<Found, AwsError> {
    let values = |key: FilterNameStringType, v: &[String]| {
        Filter::builder()
            .key(key)
            .set_values(Some(v.to_vec()))
            .build()
    };
    let list: Vec<_> = call(b, Retry::Safe, || async {
        c.list_secrets()
            .include_planned_deletion(true)
            // The selective filter first: AWS ANDs them in any order, and an
            // emulator that tries them one by one (moto, over every secret)
            // stops at the first miss (issue 20: the load bench's N = 1000).
            .filters(values(FilterNameStringType::TagValue, ids))
            .filters(values(
                FilterNameStringType::TagKey,
                &[TAG_EMPLOYEE_ID.to_owned()],
            ))
            .filters(values(FilterNameStringType::Name, &[prefix.to_owned()]))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListSecrets", e))
    })
    .await?;
    Ok(list
        .iter()
        .flat_map(|page| page.secret_list())
        .filter_map(|s| {
            let tags = tag_map(s.tags());
            let ours = tags.get(TAG_EMPLOYEE_ID).is_some_and(|e| ids.contains(e))
                && tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY);
            let name = s.name()?;
            (ours && name.starts_with(prefix)).then(|| (name.to_owned(), tags))
        })
        .collect())
}
