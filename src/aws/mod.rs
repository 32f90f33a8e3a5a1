//! Thin adapters over the SDK clients. Every SDK error is mapped to a few kinds the
//! rest of the code reasons about; retries and backoff live in [`call`] alone, and
//! the pace of each service's requests in [`pace`].

pub mod gather;
pub mod iam;
pub mod kms;
pub mod mail;
pub mod pace;
pub mod queue;
pub mod scheduler;
pub mod secrets;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
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
    /// A local emulator's 500 without an error code: how it says it lacks the
    /// operation, or its own fault under concurrent requests (moto is not
    /// thread-safe: a list can fail while another request adds to it). Tried
    /// again a few times, then taken as `Unsupported`.
    EmulatorFault,
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

/// Whether the endpoint is a local emulator: set by `wiring` before the first call,
/// never unset. It only changes what an answer without an error code means.
static EMULATOR_ENDPOINT: AtomicBool = AtomicBool::new(false);

pub fn set_emulator_endpoint() {
    EMULATOR_ENDPOINT.store(true, Ordering::Relaxed);
}

/// An error answer with no AWS error code. From AWS it is the front end's error page
/// while a host restarts or is overloaded (500, 502, 503, 504): it passes, so it is
/// transient (the call and the record are tried again). From a local emulator, a
/// 500 is how it says it lacks the operation (moto: "has not been implemented"),
/// or a fault of its own that passes: [`ErrorKind::EmulatorFault`]. 501 and
/// anything else is "not implemented" either way.
pub fn kind_without_code(status: u16, emulator: bool) -> ErrorKind {
    match status {
        501 => ErrorKind::Unsupported,
        500 if emulator => ErrorKind::EmulatorFault,
        500..=599 if !emulator => ErrorKind::Transient,
        _ => ErrorKind::Unsupported,
    }
}

/// Attempts of a call an emulator answers with a code-less 500: enough to get past
/// its concurrency faults, few enough for an operation it lacks.
const EMULATOR_FAULT_ATTEMPTS: u32 = 3;

/// Maps an SDK error. Only code, message and status are kept.
pub fn classify<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().map(str::to_owned);
            let status = se.raw().status().as_u16();
            let mut message = se.err().message().unwrap_or_default().to_owned();
            let kind = match code.as_deref() {
                Some(c) => kind_of_code(c),
                None => {
                    if message.is_empty() {
                        message = format!("HTTP {status} with no error code");
                    }
                    kind_without_code(status, EMULATOR_ENDPOINT.load(Ordering::Relaxed))
                }
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
    /// The record's last request waited for a slot of a pacing pacer: a throttled
    /// retry is spaced by the pacer, in the record's turn (see [`call`]).
    paced: AtomicBool,
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
    pub fn set_paced(&self, paced: bool) {
        self.paced.store(paced, Ordering::Relaxed);
    }
    pub fn paced(&self) -> bool {
        self.paced.load(Ordering::Relaxed)
    }
}

/// The backoff ceiling of a throttled retry whose request was paced: the pacer
/// already spaces the retry (its next slot), and it hands slots to the earliest-
/// started record first. A long backoff of its own would make the record miss its
/// turns, the slots would go to later records, and under a slow pace every record
/// of the batch would advance together and be cut halfway at the deadline instead
/// of finishing one after another.
const PACED_THROTTLE_CAP: Duration = Duration::from_millis(10);

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
        (_, ErrorKind::Transient | ErrorKind::EmulatorFault) => true,
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
        let max_attempts = match err.kind {
            ErrorKind::EmulatorFault => budget.max_attempts.min(EMULATOR_FAULT_ATTEMPTS),
            _ => budget.max_attempts,
        };
        if !retryable(err.kind, err.code.as_deref(), retry)
            || (!throttled && attempt >= max_attempts)
        {
            return give_up(err);
        }
        let paced = notes.as_ref().is_some_and(|n| n.paced());
        let cap = match (throttled, paced) {
            (true, true) => budget.throttle_cap.min(PACED_THROTTLE_CAP),
            (true, false) => budget.throttle_cap,
            _ => budget.cap,
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

/// An SDK client built on its first use. Building one costs about 0.2 ms of the
/// container's start; the clients the first record rarely needs (KMS, for an
/// alias; SQS, to release records handed back) are built this way (issue 20).
pub struct OnFirstUse<C> {
    client: std::sync::OnceLock<C>,
    make: Arc<dyn Fn() -> C + Send + Sync>,
}

impl<C: Clone + Send + Sync + 'static> OnFirstUse<C> {
    pub fn later(make: impl Fn() -> C + Send + Sync + 'static) -> Self {
        OnFirstUse {
            client: std::sync::OnceLock::new(),
            make: Arc::new(make),
        }
    }

    pub fn ready(client: C) -> Self {
        let me = Self::later({
            let c = client.clone();
            move || c.clone()
        });
        let _ = me.client.set(client);
        me
    }

    pub fn get(&self) -> &C {
        self.client.get_or_init(|| (self.make)())
    }
}

impl<C: Clone> Clone for OnFirstUse<C> {
    fn clone(&self) -> Self {
        let client = std::sync::OnceLock::new();
        if let Some(c) = self.client.get() {
            let _ = client.set(c.clone());
        }
        OnFirstUse {
            client,
            make: Arc::clone(&self.make),
        }
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

    /// A paced record's throttled retry waits a few milliseconds, then the pacer's
    /// slot (in its turn), never the long backoff of an unpaced call.
    #[tokio::test(start_paused = true)]
    async fn a_paced_throttled_retry_backs_off_only_a_few_milliseconds() {
        let notes = Arc::new(RecordNotes::default());
        notes.set_paced(true);
        let n = AtomicU32::new(0);
        let budget = Budget::until(Instant::now() + Duration::from_secs(60));
        let started = Instant::now();
        let r = with_notes(notes.clone(), async {
            call(&budget, Retry::Safe, || async {
                if n.fetch_add(1, Ordering::SeqCst) < 8 {
                    Err(fail(ErrorKind::Throttled, "Throttling"))
                } else {
                    Ok(())
                }
            })
            .await
        })
        .await;
        assert!(r.is_ok());
        assert_eq!(notes.throttled(), 8);
        assert!(
            started.elapsed() <= PACED_THROTTLE_CAP * 8,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_answer_without_code_is_transient_from_aws_and_an_emulator_fault_or_unsupported_from_an_emulator(
    ) {
        for status in [500, 502, 503, 504] {
            assert_eq!(kind_without_code(status, false), ErrorKind::Transient);
        }
        assert_eq!(kind_without_code(500, true), ErrorKind::EmulatorFault);
        for status in [502, 503, 504] {
            assert_eq!(kind_without_code(status, true), ErrorKind::Unsupported);
        }
        for status in [501, 400, 403, 404] {
            assert_eq!(kind_without_code(status, false), ErrorKind::Unsupported);
        }
        // And a transient answer is retried by a safe call, as any other.
        assert!(retryable(ErrorKind::Transient, None, Retry::Safe));
        assert!(!retryable(ErrorKind::Transient, None, Retry::ThrottleOnly));
    }

    /// An emulator's code-less 500 (moto failing under concurrent requests, or an
    /// operation it lacks) is tried three times by a safe call, once by a write
    /// whose outcome it leaves unknown.
    #[tokio::test]
    async fn an_emulator_fault_is_tried_three_times_by_safe_calls_only() {
        assert_eq!(
            attempts(Retry::Safe, ErrorKind::EmulatorFault, "", 2).await,
            (3, true)
        );
        assert_eq!(
            attempts(Retry::Safe, ErrorKind::EmulatorFault, "", 9).await,
            (3, false)
        );
        assert_eq!(
            attempts(Retry::ThrottleOnly, ErrorKind::EmulatorFault, "", 9).await,
            (1, false)
        );
    }

    /// Through the SDK's own error parsing: a 503 HTML page from a front end.
    #[tokio::test]
    async fn the_sdk_error_of_a_codeless_503_classifies_as_transient() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;

        let page = |status: u16| {
            Response::new(
                StatusCode::try_from(status).expect("status"),
                SdkBody::from("<html><body><h1>503 Service Unavailable</h1></body></html>"),
            )
        };
        let unavailable =
            mock!(aws_sdk_iam::Client::get_user).then_http_response(move || page(503));
        let client = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &[&unavailable], |c| c
            .retry_config(aws_config::retry::RetryConfig::disabled()));
        let err = client
            .get_user()
            .user_name("jane")
            .send()
            .await
            .expect_err("a 503 is an error");
        let e = classify("GetUser", err);
        assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Transient, None));
        assert_eq!(e.to_string(), "GetUser failed: HTTP 503 with no error code");
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
