//! The front door's Lambda binary (contract section 10): a function URL's
//! request in, one contract event onto the provisioner's queue. The logic is in
//! `hr_iam_provisioner::frontdoor`.

use hr_iam_provisioner::frontdoor::http::FrontDoor;
use hr_iam_provisioner::frontdoor::store::{AwsStore, StoreConfig};
use hr_iam_provisioner::frontdoor::{lambda, Settings};
use hr_iam_provisioner::{logging, wiring};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init();
    let var = |k: &str| std::env::var(k).ok();
    let (settings, store_config) = match Settings::from_env(var).and_then(|s| {
        let c = StoreConfig::from_env(var, &s.user_path)?;
        Ok((s, c))
    }) {
        Ok(v) => v,
        Err(e) => {
            // One line naming the variable, then stop: never half-run.
            tracing::error!("{e}");
            std::process::exit(2);
        }
    };
    let sdk = wiring::sdk_config().await;
    let door = FrontDoor::new(AwsStore::new(&sdk, store_config), settings);
    let door = &door;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        let resp = match lambda::request(ev.payload) {
            Ok(req) => door.handle(&req).await,
            Err(e) => {
                tracing::error!("{e}");
                return Err::<Value, Error>(e.into());
            }
        };
        Ok(lambda::response(&resp))
    }))
    .await
}
