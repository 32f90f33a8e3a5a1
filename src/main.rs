//! The Lambda `bootstrap`: configuration and clients once, then the runtime loop.
//! An SQS batch is provisioned; an EventBridge schedule (or `{"hr-iam-audit":
//! "audit"}`) runs the audit, so one code asset serves both functions.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use hr_iam_provisioner::aws::Budget;
use hr_iam_provisioner::batch::deadline_from;
use hr_iam_provisioner::config::Config;
use hr_iam_provisioner::lifecycle::run::Writer;
use hr_iam_provisioner::review::lambda::{dispatch, scheduled, Invocation, Response};
use hr_iam_provisioner::review::read::Reader;
use hr_iam_provisioner::service::Provisioner;
use hr_iam_provisioner::{logging, wiring};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tokio::sync::OnceCell;

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
    let (services, queue) = wiring::provisioner_services_from_env(&config).await;
    let provisioner = Arc::new(Provisioner::new(config, services).with_queue(queue));
    // The once-per-container reads start now, and a few turns of this one-thread
    // runtime put them on the wire before the runtime's first poll: sent a
    // millisecond before the first record's reads, a backend that serves in turn
    // (an emulator) answers them first instead of interleaving them with the
    // record's; in AWS they overlap the rest of the start either way.
    provisioner.warm_up();
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    // The audit's clients are built on its first invocation only.
    let audit_sdk: Arc<OnceCell<SdkConfig>> = Arc::new(OnceCell::new());
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let p = Arc::clone(&provisioner);
        let audit_sdk = Arc::clone(&audit_sdk);
        async move {
            let deadline = deadline_from(ev.context.deadline);
            match dispatch(ev.payload)? {
                Invocation::Sqs(batch) => {
                    let resp: SqsBatchResponse = p
                        .handle_batch(batch, &ev.context.invoked_function_arn, deadline)
                        .await;
                    Ok::<_, Error>(Response::Sqs(resp))
                }
                Invocation::Lifecycle => {
                    let sdk = audit_sdk.get_or_init(wiring::sdk_config).await;
                    let writer = Writer {
                        config: &p.config,
                        services: &p.services,
                        iam: aws_sdk_iam::Client::new(sdk),
                    };
                    let budget = Budget::until(deadline);
                    let reader = Reader::new(sdk, deadline);
                    // Boxed: the SDK's nested futures are too deep to lay out inline.
                    let outcomes =
                        Box::pin(writer.run(&reader, time::OffsetDateTime::now_utc(), &budget))
                            .await?;
                    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
                    // An invocation error, so the function's Errors alarm sees it;
                    // each failed user was logged at ERROR, and the next run
                    // finishes what is missing.
                    if failed > 0 {
                        return Err(format!("lifecycle: {failed} user(s) failed").into());
                    }
                    Ok(Response::Audit(serde_json::json!({
                        "hr-iam-lifecycle": "run",
                        "users_changed": outcomes.len() - failed,
                        "users_failed": failed,
                    })))
                }
                Invocation::Audit => {
                    let sdk = audit_sdk.get_or_init(wiring::sdk_config).await;
                    let summary = scheduled(&p.config, &Reader::new(sdk, deadline)).await?;
                    Ok(Response::Audit(summary))
                }
            }
        }
    }))
    .await
}
