//! The audit of contract section 8: does what AWS holds match what HR and the
//! rules say, for every managed user, without reading a secret's value?
//!
//! [`read`] makes a fixed number of AWS calls (plus paging): the account
//! authorization details, the IAM credential report and the secrets listed with
//! their tags. [`compare::compare`] is pure. [`render`] prints the report;
//! [`lambda`] runs it on a schedule inside the function.
//!
//! Nothing here calls `GetSecretValue`: secrets are compared through their tags.

pub mod access;
pub mod cis;
pub mod compare;
pub mod dates;
pub mod lambda;
pub mod model;
pub mod read;
pub mod render;

use crate::aws::AwsError;
use crate::config::{Config, ConfigError};

pub use compare::compare;
pub use model::{Code, Finding, Inputs, Report, Settings};

// The tags of contract section 3, from the one place that defines them.
pub use crate::state::{
    STATUS_DELETED, TAG_ACCESS_KEY_CREATED, TAG_ACCESS_KEY_ID, TAG_DEPARTMENT, TAG_EMAIL,
    TAG_USER_NAME,
};

/// The audit never sends mail; the function's configuration requires a sender, so
/// one that cannot be delivered to stands in when none is set.
pub const PLACEHOLDER_SENDER: &str = "audit-sends-no-mail@example.invalid";

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("credential report: {0}")]
    CredentialReport(String),
    /// The report was made, but something could not be checked.
    #[error("audit incomplete: {0}")]
    Incomplete(String),
}

/// The function's configuration, read through `get`, with `SENDER_EMAIL`
/// defaulted: the audit reads the same variables but sends nothing.
pub fn config_from_env(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    Config::from_env(|k| {
        let v = get(k);
        if k == "SENDER_EMAIL" && v.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Some(PLACEHOLDER_SENDER.to_owned());
        }
        v
    })
}

/// Reads AWS and compares: the whole audit.
pub async fn run(
    config: &Config,
    reader: &read::Reader,
    progress: &dyn read::Progress,
) -> Result<Report, ReviewError> {
    let settings = Settings::from_config(config);
    let inputs = reader.read(&settings, progress).await;
    let calls = reader.calls();
    let mut report = compare(&inputs?, &settings, time::OffsetDateTime::now_utc());
    report.calls = Some(calls);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_needs_no_sender_but_keeps_every_other_check() {
        let c = config_from_env(|_| None).unwrap();
        assert_eq!(c.sender_email, PLACEHOLDER_SENDER);
        let c =
            config_from_env(|k| (k == "SENDER_EMAIL").then(|| "it@example.com".into())).unwrap();
        assert_eq!(c.sender_email, "it@example.com");
        let e = config_from_env(|k| (k == "USER_PATH").then(|| "bad".into())).unwrap_err();
        assert_eq!(e.variable, "USER_PATH");
    }

    /// The review code has no way to read a secret's value: no call to it exists
    /// in its source (the moto test also checks it at the wire).
    #[test]
    fn no_review_source_reads_a_secret_value() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/review");
        // `batch_get_secret_value` contains it too.
        let forbidden = ["get_secret_value"];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // Only code before the test module counts (this test names the calls).
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for f in forbidden {
                assert!(!code.contains(f), "{} mentions {f}", path.display());
            }
        }
    }
}
