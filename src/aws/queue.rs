//! The HR queue, for one thing only: records the function hands back untouched
//! (too little time left in the invocation to start them) are made visible again
//! at once, instead of waiting out the queue's visibility timeout (720 s in the
//! stack). Every other failed record keeps that timeout: it is the retry's
//! back-off, and SQS's receive count still moves it to the dead-letter queue.

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
use aws_sdk_sqs::Client;

use super::{call, classify, AwsError, Budget, ErrorKind, OnFirstUse, Retry};

/// One record to release: where it came from and its receipt for this delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub source_arn: String,
    pub receipt_handle: String,
}

#[derive(Clone)]
pub struct Queue {
    client: OnFirstUse<Client>,
}

impl Queue {
    pub fn new(client: Client) -> Self {
        Self::on_first_use(OnFirstUse::ready(client))
    }

    /// Built when a record is first handed back: most containers never need it.
    pub fn on_first_use(client: OnFirstUse<Client>) -> Self {
        Queue { client }
    }

    /// Sets the visibility timeout of these records to zero: one
    /// ChangeMessageVisibilityBatch per queue (a batch holds at most 10 records,
    /// SQS's limit per call). Returns how many were released.
    pub async fn release(&self, records: &[Release], b: &Budget) -> Result<usize, AwsError> {
        let mut released = 0;
        let mut by_queue: Vec<(String, Vec<&Release>)> = Vec::new();
        for r in records {
            let url = queue_url(&r.source_arn).ok_or_else(|| {
                AwsError::new(
                    "ChangeMessageVisibilityBatch",
                    ErrorKind::Fatal,
                    "the record's eventSourceARN is not an SQS queue ARN",
                )
            })?;
            match by_queue.iter_mut().find(|(u, _)| *u == url) {
                Some((_, v)) => v.push(r),
                None => by_queue.push((url, vec![r])),
            }
        }
        for (url, items) in by_queue {
            for chunk in items.chunks(10) {
                let entries: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(format!("r{i}"))
                            .receipt_handle(&r.receipt_handle)
                            .visibility_timeout(0)
                            .build()
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        AwsError::new(
                            "ChangeMessageVisibilityBatch",
                            ErrorKind::Fatal,
                            e.to_string(),
                        )
                    })?;
                let out = call(b, Retry::Safe, || async {
                    self.client
                        .get()
                        .change_message_visibility_batch()
                        .queue_url(&url)
                        .set_entries(Some(entries.clone()))
                        .send()
                        .await
                        .map_err(|e| classify("ChangeMessageVisibilityBatch", e))
                })
                .await?;
                released += out.successful().len();
                if let Some(f) = out.failed().first() {
                    return Err(AwsError::new(
                        "ChangeMessageVisibilityBatch",
                        ErrorKind::Fatal,
                        format!(
                            "{} of the records were not released: {}",
                            out.failed().len(),
                            f.code()
                        ),
                    ));
                }
            }
        }
        Ok(released)
    }
}

/// The queue URL of an SQS queue ARN (`arn:PARTITION:sqs:REGION:ACCOUNT:NAME`), as
/// SQS forms it: `https://sqs.REGION.DOMAIN/ACCOUNT/NAME`. Against an endpoint
/// override (an emulator) the SDK sends the call there; the URL names the queue.
pub fn queue_url(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sqs"), Some(region), Some(account), Some(name)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    };
    let digits = !account.is_empty() && account.bytes().all(|c| c.is_ascii_digit());
    if !(ok(partition) && ok(region) && ok(name) && digits) {
        return None;
    }
    let domain = match partition {
        "aws-cn" => "amazonaws.com.cn",
        _ => "amazonaws.com",
    };
    Some(format!("https://sqs.{region}.{domain}/{account}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::queue_url;

    #[test]
    fn queue_urls_follow_the_arn() {
        assert_eq!(
            queue_url("arn:aws:sqs:eu-west-1:123456789012:hr-hr-events.fifo").as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/123456789012/hr-hr-events.fifo")
        );
        assert_eq!(
            queue_url("arn:aws-cn:sqs:cn-north-1:123456789012:q").as_deref(),
            Some("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q")
        );
        for bad in [
            "",
            "arn:aws:sns:us-east-1:123456789012:q",
            "arn:aws:sqs:us-east-1:acct:q",
            "arn:aws:sqs:us-east-1:123456789012:",
            "arn:aws:sqs:us-east-1:123456789012:a/b",
        ] {
            assert_eq!(queue_url(bad), None, "{bad}");
        }
    }
}
