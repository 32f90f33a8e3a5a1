//! The front door (contract section 10): a second function that turns a signed
//! webhook or a SCIM 2.0 request into one contract event on the provisioner's
//! queue. It never writes to IAM: its AWS surface is [`Store`] (SendMessage, its
//! own token secrets, and a read-only view of the users under `USER_PATH`).
//!
//! [`webhook`] checks signatures, [`scim`] maps SCIM to events (both pure),
//! [`http`] routes a request and logs its audit line, [`store`] is the AWS
//! adapter, [`lambda`] converts a function-URL request.

pub mod http;
pub mod lambda;
pub mod scim;
pub mod store;
pub mod webhook;

use std::future::Future;

use crate::password::Secret;
use scim::Held;

/// A failed AWS call behind the front door. It names the call and AWS's code
/// only: never a token or a body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} failed: {detail}")]
pub struct StoreError {
    pub op: &'static str,
    pub detail: String,
}

/// What the front door reads and writes. The AWS version is [`store::AwsStore`];
/// tests use an in-memory one.
pub trait Store {
    /// The webhook signing keys valid now (one, or two during a rotation).
    fn webhook_keys(&self) -> impl Future<Output = Result<Vec<Secret>, StoreError>>;
    /// The SCIM bearer tokens valid now.
    fn scim_tokens(&self) -> impl Future<Output = Result<Vec<Secret>, StoreError>>;
    /// Sends one event body to the queue (FIFO: group and deduplication id).
    fn send(
        &self,
        body: &str,
        group: &str,
        dedup_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>>;
    /// The user of that name under `USER_PATH`, with its tags; `None` when absent
    /// or elsewhere.
    fn user(&self, name: &str) -> impl Future<Output = Result<Option<Held>, StoreError>>;
    /// The names of every user under `USER_PATH`, sorted.
    fn user_names(&self) -> impl Future<Output = Result<Vec<String>, StoreError>>;
}

/// The front door's settings (environment variables of its function).
#[derive(Debug, Clone)]
pub struct Settings {
    pub user_path: String,
    /// As the provisioner's: an older webhook event is refused here already.
    pub max_event_age_days: i64,
}

impl Settings {
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let user_path = var("USER_PATH")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/employees/".to_owned());
        if !(user_path.starts_with('/') && user_path.ends_with('/')) {
            return Err(format!(
                "USER_PATH must start and end with /, got {user_path:?}"
            ));
        }
        let max_event_age_days = match var("MAX_EVENT_AGE_DAYS").as_deref() {
            None | Some("") => 14,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=365).contains(&n) => n,
                _ => return Err(format!("MAX_EVENT_AGE_DAYS must be 1-365, got {v:?}")),
            },
        };
        Ok(Settings {
            user_path,
            max_event_age_days,
        })
    }
}

/// Reads a token secret's value: a plain string is one key; a JSON object
/// `{"current": "...", "previous": "..."}` is two, both valid (a rotation: add the
/// new key as `current` with the old as `previous`, switch the sender, then drop
/// `previous`). Empty values are ignored; no key at all is an error.
pub fn parse_keys(value: &str) -> Result<Vec<Secret>, String> {
    let trimmed = value.trim();
    let keys: Vec<String> = if trimmed.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|_| "the secret is not valid JSON".to_owned())?;
        let obj = v
            .as_object()
            .ok_or_else(|| "the secret is not a JSON object".to_owned())?;
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "current" | "previous"))
        {
            return Err(format!(
                "the secret has key {k:?}; expected only \"current\" and \"previous\""
            ));
        }
        ["current", "previous"]
            .iter()
            .filter_map(|k| obj.get(*k).and_then(serde_json::Value::as_str))
            .map(str::to_owned)
            .collect()
    } else {
        vec![trimmed.to_owned()]
    };
    let keys: Vec<Secret> = keys
        .into_iter()
        .filter(|k| !k.is_empty())
        .map(Secret::new)
        .collect();
    if keys.is_empty() {
        return Err("the secret holds no key".to_owned());
    }
    // A key shorter than 32 bytes is guessable offline from one signed request.
    if keys.iter().any(|k| k.expose().len() < 32) {
        return Err("every key must be at least 32 characters".to_owned());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_plain_or_current_and_previous() {
        let a = "a".repeat(32);
        let b = "b".repeat(40);
        let one = parse_keys(&a).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].expose(), a);
        let two = parse_keys(&format!(r#"{{"current":"{b}","previous":"{a}"}}"#)).unwrap();
        assert_eq!(two.iter().map(Secret::expose).collect::<Vec<_>>(), [&b, &a]);
        assert!(parse_keys(&format!(r#"{{"current":"{b}","next":"{a}"}}"#))
            .unwrap_err()
            .contains("\"next\""));
        assert!(parse_keys("short").unwrap_err().contains("32"));
        assert!(parse_keys(r#"{"current":""}"#)
            .unwrap_err()
            .contains("no key"));
        assert!(parse_keys("{not json").is_err());
        // The error never repeats a key.
        assert!(!parse_keys("shortsecret")
            .unwrap_err()
            .contains("shortsecret"));
    }

    #[test]
    fn settings_defaults_and_refusals() {
        let s = Settings::from_env(|_| None).unwrap();
        assert_eq!(
            (s.user_path.as_str(), s.max_event_age_days),
            ("/employees/", 14)
        );
        assert!(Settings::from_env(|k| (k == "USER_PATH").then(|| "x".to_owned())).is_err());
        assert!(
            Settings::from_env(|k| (k == "MAX_EVENT_AGE_DAYS").then(|| "0".to_owned()))
                .unwrap_err()
                .contains("MAX_EVENT_AGE_DAYS")
        );
    }
}
