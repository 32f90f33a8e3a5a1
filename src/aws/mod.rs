//! Thin adapters over the SDK clients. Every SDK error is mapped to a few kinds the
//! rest of the code reasons about; retries and backoff live in [`call`] alone, and
//! the pace of each service's requests in [`pace`].

pub mod iam;
pub mod mail;
pub mod pace;
pub mod scheduler;
pub mod secrets;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    /// DeleteConflict: something is still attached.
    Conflict,
    LimitExceeded,
    Throttled,
    /// May succeed if tried again: timeouts, 5xx, IAM's temporary states.
    Transient,
    /// Refused for the resource's state, e.g. a secret scheduled for deletion.
    InvalidState,
    /// The endpoint does not implement the operation (only local emulators).
    Unsupported,
    Fatal,
}

/// An AWS call that failed. It holds the error code and AWS's message only: never a
/// request or response body, which may hold a credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} failed: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    pub op: &'static str,
    pub kind: ErrorKind,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn new(op: &'static str, kind: ErrorKind, message: impl Into<String>) -> Self {
        AwsError {
            op,
            kind,
            code: None,
            message: message.into(),
        }
    }
}

pub fn kind_of_code(code: &str) -> ErrorKind {
    match code {
        "NoSuchEntity" | "ResourceNotFoundException" | "NotFoundException" => ErrorKind::NotFound,
        "EntityAlreadyExists" | "ResourceExistsException" | "AlreadyExistsException" => {
            ErrorKind::AlreadyExists
        }
        "DeleteConflict" => ErrorKind::Conflict,
        "LimitExceeded" | "LimitExceededException" => ErrorKind::LimitExceeded,
        "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "SlowDown" => ErrorKind::Throttled,
        "EntityTemporarilyUnmodifiable"
        | "ConcurrentModification"
        | "ServiceFailure"
        | "ServiceUnavailable"
        | "InternalFailure"
        | "InternalServiceError"
        | "InternalServiceErrorException"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorKind::Transient,
        "InvalidRequestException" => ErrorKind::InvalidState,
        // What emulators answer for an action they lack (AWS never does for the
        // actions this code calls).
        "InvalidAction" | "UnknownOperationException" | "NotImplemented" => ErrorKind::Unsupported,
        _ => ErrorKind::Fatal,
    }
}

/// Maps an SDK error. Only code, message and status are kept.
pub fn classify<E, R>(op: &'static str, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().map(str::to_owned);
            let message = se.err().message().unwrap_or_default().to_owned();
            let kind = match code.as_deref() {
                Some(c) => kind_of_code(c),
                // An answer with no AWS error code: a non-AWS 5xx page.
                None => ErrorKind::Unsupported,
            };
            AwsError {
                op,
                kind,
                code,
                message,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            AwsError::new(
                op,
                ErrorKind::Transient,
                "no usable answer (timeout or network)",
            )
        }
        _ => AwsError::new(op, ErrorKind::Fatal, "request could not be built"),
    }
}

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: throttling and transient failures.
    Safe,
    /// Writes that would duplicate if repeated after an unknown outcome (CreateUser,
    /// CreateAccessKey, SendEmail): only errors that prove nothing happened.
    ThrottleOnly,
    /// As `Safe`, and NoSuchEntity too: the user was created moments ago and IAM
    /// is eventually consistent.
    AfterCreate,
}

/// The retry budget of one call: attempts and a deadline the caller sets (the
/// Lambda deadline less a margin). Backoff is exponential with full jitter.
///
/// Throttling is the exception to `max_attempts`: a throttled call changed nothing,
/// and IAM's rate is account-wide, so on a busy day any call may be throttled many
/// times in a row through no fault of its own. It is retried while the deadline
/// allows (backoff capped at `throttle_cap`; the instance's pacer, [`pace`], does
/// the pacing), instead of failing the record into SQS's visibility timeout and,
/// five receives later, the dead-letter queue.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub deadline: Instant,
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    pub throttle_cap: Duration,
}

impl Budget {
    pub fn until(deadline: Instant) -> Self {
        Budget {
            deadline,
            max_attempts: 10,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            throttle_cap: Duration::from_millis(500),
        }
    }
}

/// What the calls of one record ran into, for the batch to decide whether the
/// record is worth running again within the invocation, and how. Set up per record
/// by the batch (a tokio task-local, so the adapters need no extra argument); a
/// call outside any record (tests, tools) notes nothing.
#[derive(Debug, Default)]
pub struct RecordNotes {
    /// The record's place in this instance's order of starting: the pacer gives
    /// slots to the lowest first ([`pace`]).
    seq: u64,
    /// When the record's time is up (the batch cuts it there).
    deadline: Option<Instant>,
    /// The error with which the last failed call gave up.
    last_error: Mutex<Option<AwsError>>,
    /// Look for a case-insensitive holder of the name even where IAM itself is
    /// trusted to refuse one at CreateUser (see `Iam::lookup`).
    case_scan: AtomicBool,
    throttled: AtomicU32,
}

static RECORD_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl RecordNotes {
    /// Notes for a record starting now (the next sequence number), due by `deadline`.
    pub fn starting(deadline: Instant) -> Self {
        RecordNotes {
            seq: RECORD_SEQ.fetch_add(1, Ordering::Relaxed),
            deadline: Some(deadline),
            ..RecordNotes::default()
        }
    }
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    /// The error the last failed call gave up with, taken (cleared).
    pub fn take_last_error(&self) -> Option<AwsError> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }
    pub fn case_scan(&self) -> bool {
        self.case_scan.load(Ordering::Relaxed)
    }
    pub fn request_case_scan(&self) {
        self.case_scan.store(true, Ordering::Relaxed);
    }
    /// Throttled attempts so far (each was retried or ended its call).
    pub fn throttled(&self) -> u32 {
        self.throttled.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    static NOTES: Arc<RecordNotes>;
}

/// Runs `f` (one record's work) with `notes` collecting what its calls run into.
pub async fn with_notes<F: Future>(notes: Arc<RecordNotes>, f: F) -> F::Output {
    NOTES.scope(notes, f).await
}

/// The notes of the record being processed, if any.
pub fn notes() -> Option<Arc<RecordNotes>> {
    NOTES.try_with(Arc::clone).ok()
}

fn retryable(kind: ErrorKind, code: Option<&str>, retry: Retry) -> bool {
    match (retry, kind) {
        (_, ErrorKind::Throttled) => true,
        // IAM's temporary states are reported before anything changes.
        (_, ErrorKind::Transient)
            if matches!(
                code,
                Some("EntityTemporarilyUnmodifiable" | "ConcurrentModification")
            ) =>
        {
            true
        }
        (Retry::ThrottleOnly, _) => false,
        (_, ErrorKind::Transient) => true,
        (Retry::AfterCreate, ErrorKind::NotFound) => true,
        _ => false,
    }
}

/// Runs one AWS call with the retry policy. `f` makes a fresh request each time.
pub async fn call<T, F, Fut>(budget: &Budget, retry: Retry, mut f: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let notes = notes();
    let give_up = |err: AwsError| {
        if let Some(n) = &notes {
            if let Ok(mut last) = n.last_error.lock() {
                *last = Some(err.clone());
            }
        }
        Err(err)
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let err = match f().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let throttled = err.kind == ErrorKind::Throttled;
        if throttled {
            if let Some(n) = &notes {
                n.throttled.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !retryable(err.kind, err.code.as_deref(), retry)
            || (!throttled && attempt >= budget.max_attempts)
        {
            return give_up(err);
        }
        let cap = if throttled {
            budget.throttle_cap
        } else {
            budget.cap
        };
        let ceiling = budget.base.saturating_mul(1u32 << attempt.min(16)).min(cap);
        let sleep = ceiling.mul_f64(rand::random::<f64>());
        if Instant::now() + sleep >= budget.deadline {
            return give_up(err);
        }
        tracing::debug!(op = err.op, attempt, kind = ?err.kind, "retrying AWS call");
        tokio::time::sleep(sleep).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fail(kind: ErrorKind, code: &str) -> AwsError {
        AwsError {
            op: "Op",
            kind,
            code: Some(code.into()),
            message: String::new(),
        }
    }

    async fn attempts(retry: Retry, kind: ErrorKind, code: &str, fail_times: u32) -> (u32, bool) {
        let n = AtomicU32::new(0);
        let budget = Budget {
            deadline: Instant::now() + Duration::from_secs(60),
            max_attempts: 5,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            throttle_cap: Duration::from_millis(2),
        };
        let r = call(&budget, retry, || async {
            let i = n.fetch_add(1, Ordering::SeqCst);
            if i < fail_times {
                Err(fail(kind, code))
            } else {
                Ok(())
            }
        })
        .await;
        (n.load(Ordering::SeqCst), r.is_ok())
    }

    #[tokio::test]
    async fn policy_retries_what_it_should() {
        use ErrorKind::*;
        assert_eq!(
            attempts(Retry::Safe, Throttled, "Throttling", 3).await,
            (4, true)
        );
        assert_eq!(
            attempts(Retry::ThrottleOnly, Throttled, "Throttling", 2).await,
            (3, true)
        );
        assert_eq!(
            attempts(Retry::ThrottleOnly, Transient, "ServiceFailure", 1).await,
            (1, false)
        );
        assert_eq!(
            attempts(Retry::Safe, Transient, "ServiceFailure", 1).await,
            (2, true)
        );
        assert_eq!(
            attempts(
                Retry::ThrottleOnly,
                Transient,
                "EntityTemporarilyUnmodifiable",
                1
            )
            .await,
            (2, true)
        );
        assert_eq!(
            attempts(Retry::Safe, NotFound, "NoSuchEntity", 1).await,
            (1, false)
        );
        assert_eq!(
            attempts(Retry::AfterCreate, NotFound, "NoSuchEntity", 2).await,
            (3, true)
        );
        assert_eq!(
            attempts(Retry::Safe, Conflict, "DeleteConflict", 1).await,
            (1, false)
        );
        // Throttling is retried past max_attempts (the deadline ends it)...
        assert_eq!(
            attempts(Retry::Safe, Throttled, "Throttling", 99).await,
            (100, true)
        );
        assert_eq!(
            attempts(Retry::ThrottleOnly, Throttled, "Throttling", 30).await,
            (31, true)
        );
        // ...anything else stops at max_attempts.
        assert_eq!(
            attempts(Retry::Safe, Transient, "ServiceFailure", 99).await,
            (5, false)
        );
    }

    #[tokio::test]
    async fn throttling_is_retried_until_the_deadline_then_noted() {
        let n = AtomicU32::new(0);
        let budget = Budget {
            deadline: Instant::now() + Duration::from_millis(300),
            max_attempts: 3,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(10),
            throttle_cap: Duration::from_millis(10),
        };
        let notes = Arc::new(RecordNotes::default());
        let r: Result<(), AwsError> = with_notes(notes.clone(), async {
            call(&budget, Retry::Safe, || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(fail(ErrorKind::Throttled, "Throttling"))
            })
            .await
        })
        .await;
        let tries = n.load(Ordering::SeqCst);
        assert!(r.is_err());
        assert!(
            tries > 3,
            "throttling is not bounded by max_attempts: {tries}"
        );
        assert!(Instant::now() >= budget.deadline - Duration::from_millis(20));
        assert_eq!(notes.throttled(), tries);
        let last = notes.take_last_error().expect("noted");
        assert_eq!(last.kind, ErrorKind::Throttled);
        assert!(notes.take_last_error().is_none(), "taken");
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(kind_of_code("NoSuchEntity"), ErrorKind::NotFound);
        assert_eq!(
            kind_of_code("ResourceNotFoundException"),
            ErrorKind::NotFound
        );
        assert_eq!(kind_of_code("DeleteConflict"), ErrorKind::Conflict);
        assert_eq!(
            kind_of_code("TooManyRequestsException"),
            ErrorKind::Throttled
        );
        assert_eq!(
            kind_of_code("InvalidRequestException"),
            ErrorKind::InvalidState
        );
        assert_eq!(kind_of_code("AccessDenied"), ErrorKind::Fatal);
    }
}
