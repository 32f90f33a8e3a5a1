//! KMS adapter: one read, to resolve a key alias to the key it names. A secret is
//! ours only when it is encrypted with `SECRET_KMS_KEY_ID` itself, and an alias is
//! only a name: anyone may point an alias of theirs at a key of theirs.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_kms::Client;

use super::{call, classify, AwsError, Budget, ErrorKind, OnFirstUse, Retry};

pub struct Kms {
    client: OnFirstUse<Client>,
    /// Alias -> key ARN, per container: aliases are re-pointed rarely, and a
    /// container lives minutes to hours.
    resolved: Mutex<HashMap<String, String>>,
}

impl Clone for Kms {
    fn clone(&self) -> Self {
        let cache = self.resolved.lock().map(|m| m.clone()).unwrap_or_default();
        Kms {
            client: self.client.clone(),
            resolved: Mutex::new(cache),
        }
    }
}

/// Whether a key reference is a customer alias (`alias/x` or an alias ARN). The
/// AWS managed `alias/aws/...` names cannot be created by anyone else: they are
/// taken as spelled.
pub fn is_customer_alias(key: &str) -> bool {
    let tail = key.rsplit(':').next().unwrap_or(key);
    let tail = if key.starts_with("arn:") { tail } else { key };
    tail.starts_with("alias/") && !tail.starts_with("alias/aws/")
}

impl Kms {
    pub fn new(client: Client) -> Self {
        Self::on_first_use(OnFirstUse::ready(client))
    }

    pub fn on_first_use(client: OnFirstUse<Client>) -> Self {
        Kms {
            client,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// The key ARN a customer alias names; anything else is returned as it is.
    /// `None`: the alias names no key we may describe (unknown, another account's,
    /// or access denied), so it can never count as `SECRET_KMS_KEY_ID`.
    pub async fn key_arn(&self, key: &str, b: &Budget) -> Result<Option<String>, AwsError> {
        if !is_customer_alias(key) {
            return Ok(Some(key.to_owned()));
        }
        if let Some(arn) = self.resolved.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(Some(arn));
        }
        let out = call(b, Retry::Safe, || async {
            self.client
                .get()
                .describe_key()
                .key_id(key)
                .send()
                .await
                .map_err(|e| classify("DescribeKey", e))
        })
        .await;
        let arn = match out {
            Ok(out) => out.key_metadata().and_then(|m| m.arn()).map(str::to_owned),
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Fatal) => {
                tracing::warn!(key, error = %e, "KMS alias not resolved: taken as another key");
                None
            }
            Err(e) => return Err(e),
        };
        if let (Some(arn), Ok(mut m)) = (&arn, self.resolved.lock()) {
            m.insert(key.to_owned(), arn.clone());
        }
        Ok(arn)
    }
}

#[cfg(test)]
mod tests {
    use super::is_customer_alias;

    #[test]
    fn customer_aliases_are_told_from_keys_and_aws_aliases() {
        assert!(is_customer_alias("alias/hr-secrets"));
        assert!(is_customer_alias(
            "arn:aws:kms:eu-west-1:111122223333:alias/hr-secrets"
        ));
        assert!(!is_customer_alias("alias/aws/secretsmanager"));
        assert!(!is_customer_alias(
            "arn:aws:kms:eu-west-1:111122223333:alias/aws/secretsmanager"
        ));
        assert!(!is_customer_alias("1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(!is_customer_alias(
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
    }
}
