//! Builds the AWS clients. Region and credentials come from the environment (as
//! Lambda sets them); `AWS_ENDPOINT_URL` points every client at a local emulator.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::apply::Services;
use crate::aws::iam::Iam;
use crate::aws::mail::Mailer;
use crate::aws::secrets::Secrets;
use crate::config::Config;

/// SDK retries are off: [`crate::aws::call`] is the one retry policy, so that its
/// budget is the whole budget.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await
}

/// `emulator`: the endpoint is a local emulator, which may lack an API.
pub fn services(sdk: &SdkConfig, config: &Config, emulator: bool) -> Services {
    Services {
        iam: Iam::new(aws_sdk_iam::Client::new(sdk), emulator),
        secrets: Secrets::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            config.kms_key_id.clone(),
        ),
        mailer: Mailer::new(aws_sdk_sesv2::Client::new(sdk), config.sender_email.clone()),
    }
}

pub async fn services_from_env(config: &Config) -> Services {
    // Only an emulator endpoint may lack an API; real AWS never does.
    let emulator = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_IAM").is_some();
    services(&sdk_config().await, config, emulator)
}
