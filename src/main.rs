//! The Lambda `bootstrap`: configuration and clients once, then the runtime loop.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use hr_iam_provisioner::batch::deadline_from;
use hr_iam_provisioner::config::Config;
use hr_iam_provisioner::service::Provisioner;
use hr_iam_provisioner::{logging, wiring};
use lambda_runtime::{service_fn, Error, LambdaEvent};

// One thread: the work is I/O-bound and concurrent within the batch; a single
// thread keeps memory (one malloc arena, no worker stacks) and start-up small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init();
    let config = match Config::from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            // One line naming the variable, then stop: never half-run.
            tracing::error!(variable = e.variable, "{e}");
            std::process::exit(2);
        }
    };
    let services = wiring::services_from_env(&config).await;
    let provisioner = Arc::new(Provisioner::new(config, services));
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| {
        let p = Arc::clone(&provisioner);
        async move {
            let deadline = deadline_from(ev.context.deadline);
            let resp: SqsBatchResponse = p
                .handle_batch(ev.payload, &ev.context.invoked_function_arn, deadline)
                .await;
            Ok::<_, Error>(resp)
        }
    }))
    .await
}
