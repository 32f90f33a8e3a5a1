//! The smallest SQS-triggered Lambda function on `lambda_runtime`: an empty
//! `SqsBatchResponse` for every batch. Same runtime set-up as the provisioner's
//! `bootstrap` (current-thread tokio), so the ratio of their cold starts shows what
//! the provisioner adds.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<SqsEvent>| async {
        Ok::<_, Error>(SqsBatchResponse::default())
    }))
    .await
}
