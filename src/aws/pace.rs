//! Client-side pacing: one adaptive rate limiter per AWS service, shared by every
//! record of the instance, in front of the HTTP connector of that service's client.
//!
//! IAM's request rate is account-wide: every concurrent instance draws on it, and
//! above it IAM answers `Throttling`. Retrying throttled calls is always safe (they
//! changed nothing, see [`crate::aws::call`]), but an instance that keeps sending
//! at full speed wastes most of its calls and takes turns from the others. So each
//! instance paces itself:
//!
//! - Until the service first throttles, nothing is paced.
//! - A throttled answer cuts the pace to `BETA` times the rate actually sent over
//!   the last second (at most once per epoch, and only for a request sent after
//!   the previous cut, so one burst of throttles is one signal).
//! - Every answer that is not a throttle raises the pace additively (by
//!   `max(1, rate / 10)` calls per second per second), never above twice the rate
//!   actually sent (an idle instance does not bank a burst).
//! - The pace never drops below `floor`: the instance's share of a rate the account
//!   can always give (`RATE_FLOOR_PER_SECOND / MAX_INSTANCES`, see `wiring`). Below
//!   its share the cuts would only idle the account's rate; and throttling that is
//!   not caused by the rate (a burst of throttles from another tenant of the
//!   account, or an unlucky run) cannot pace an instance down to a crawl.
//!
//! Slots come `1 / rate` apart and go to the waiting request of the record that
//! started first (its `RecordNotes` sequence number): the records of a batch finish
//! one after another instead of all together at the end, so when the pace is slow
//! and the deadline near, the records left are ones that have not started (the
//! batch hands those back untouched, see `batch`), not ones cut halfway, say
//! between the welcome mail and the tag that records it. A throttled request of a
//! paced record is retried after a few milliseconds only (`aws::call`): the pacer
//! spaces the retry, and a longer backoff of its own would make the record miss its
//! turns to later records (at 10 calls/s and two throttles in three, the batch's
//! records then finished out of order). The wait is before the
//! request is handed to the HTTP connector, i.e. outside its read timeout; a
//! record's deadline still ends it (the batch times the record out).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use tokio::time::Instant;

/// The cut on a throttle (CUBIC's and the SDK's adaptive mode's value).
const BETA: f64 = 0.7;
/// The send rate is measured over this window.
const WINDOW: Duration = Duration::from_secs(1);
/// Cuts are at least this far apart, and at least two slots of the current pace.
const MIN_EPOCH: Duration = Duration::from_millis(200);
const MAX_EPOCH: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct State {
    /// Calls per second; `None` until the service first throttles.
    rate: Option<f64>,
    /// The earliest free slot.
    next: Instant,
    last_cut: Option<Instant>,
    last_raise: Instant,
    /// Send times within the last `WINDOW`.
    sent: VecDeque<Instant>,
    throttles: u64,
    /// Requests waiting for a slot: (record sequence, ticket).
    waiting: BTreeSet<(u64, u64)>,
    tickets: u64,
}

/// Every pacer of the process, for [`tail_time`].
static PACERS: Mutex<Vec<Weak<Pacer>>> = Mutex::new(Vec::new());

/// IAM calls a record makes after its first (a joiner: ~6), with room for retries.
const CALLS_PER_RECORD: f64 = 10.0;

/// The time a record needs after its welcome mail (one IAM TagUser, with room for
/// a few slots' wait at the slowest current pace): a mail is not sent later than
/// this before the record's deadline.
pub fn record_window() -> Duration {
    let slowest = slowest_rate();
    Duration::from_secs_f64((1.0 + 4.0 / slowest).clamp(1.0, 30.0))
}

fn slowest_rate() -> f64 {
    PACERS
        .lock()
        .map(|mut v| {
            v.retain(|w| w.strong_count() > 0);
            v.iter()
                .filter_map(|w| w.upgrade().and_then(|p| p.rate()))
                .fold(f64::INFINITY, f64::min)
        })
        .unwrap_or(f64::INFINITY)
}

/// How long one more record takes at the slowest current pace: the time a record
/// should have left to be started at all. 2 s while nothing is paced.
pub fn tail_time() -> Duration {
    Duration::from_secs_f64((CALLS_PER_RECORD / slowest_rate()).clamp(2.0, 60.0))
}

/// The pace of one service for this instance.
pub struct Pacer {
    service: &'static str,
    floor: f64,
    state: Mutex<State>,
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacer")
            .field("service", &self.service)
            .field("floor", &self.floor)
            .field("rate", &self.rate())
            .finish()
    }
}

impl Pacer {
    /// `floor`: calls per second the pace never drops below (at least 0.1).
    pub fn new(service: &'static str, floor: f64) -> Arc<Pacer> {
        let now = Instant::now();
        let p = Arc::new(Pacer {
            service,
            floor: floor.max(0.1),
            state: Mutex::new(State {
                rate: None,
                next: now,
                last_cut: None,
                last_raise: now,
                sent: VecDeque::new(),
                throttles: 0,
                waiting: BTreeSet::new(),
                tickets: 0,
            }),
        });
        if let Ok(mut v) = PACERS.lock() {
            v.push(Arc::downgrade(&p));
        }
        p
    }

    /// The current pace (calls per second), `None` while unpaced.
    pub fn rate(&self) -> Option<f64> {
        self.state.lock().ok().and_then(|s| s.rate)
    }

    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// Throttled answers seen.
    pub fn throttles(&self) -> u64 {
        self.state.lock().map(|s| s.throttles).unwrap_or_default()
    }

    fn measured(sent: &mut VecDeque<Instant>, now: Instant) -> f64 {
        while sent
            .front()
            .is_some_and(|&t| now.duration_since(t) > WINDOW)
        {
            sent.pop_front();
        }
        sent.len() as f64 / WINDOW.as_secs_f64()
    }

    /// Waits for a slot, given before any later-started record's (`priority`: the
    /// record's sequence number, lower first). Returns the instant it was granted.
    pub async fn acquire(&self, priority: u64) -> Instant {
        let key = {
            let Ok(mut s) = self.state.lock() else {
                return Instant::now();
            };
            if s.rate.is_none() {
                let now = Instant::now();
                s.sent.push_back(now);
                return now;
            }
            s.tickets += 1;
            let key = (priority, s.tickets);
            s.waiting.insert(key);
            key
        };
        // Leaves the queue however the wait ends (a record cut by its deadline).
        struct Queued<'a>(&'a Pacer, (u64, u64));
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                if let Ok(mut s) = self.0.state.lock() {
                    s.waiting.remove(&self.1);
                }
            }
        }
        let _queued = Queued(self, key);
        loop {
            let wake = {
                let Ok(mut s) = self.state.lock() else {
                    return Instant::now();
                };
                let now = Instant::now();
                match s.rate {
                    None => {
                        s.sent.push_back(now);
                        return now;
                    }
                    Some(rate) if now >= s.next && s.waiting.first() == Some(&key) => {
                        s.next = s.next.max(now) + Duration::from_secs_f64(1.0 / rate);
                        s.sent.push_back(now);
                        return now;
                    }
                    Some(_) if now >= s.next => None,
                    Some(_) => Some(s.next),
                }
            };
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                // The slot is due but an earlier record's request takes it.
                None => tokio::task::yield_now().await,
            }
        }
    }

    /// Reserves the next slot in arrival order: the instant the request may be sent.
    pub fn reserve(&self, now: Instant) -> Instant {
        let Ok(mut s) = self.state.lock() else {
            return now;
        };
        let at = match s.rate {
            None => now,
            Some(rate) => {
                let at = s.next.max(now);
                s.next = at + Duration::from_secs_f64(1.0 / rate);
                at
            }
        };
        s.sent.push_back(at);
        at
    }

    /// What the service answered to a request sent at `sent_at`.
    pub fn answered(&self, sent_at: Instant, throttled: bool, now: Instant) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let measured = Self::measured(&mut s.sent, now);
        if throttled {
            s.throttles += 1;
            let cut = match (s.rate, s.last_cut) {
                (None, _) => Some(measured),
                (Some(rate), Some(last)) => {
                    let epoch = Duration::from_secs_f64(2.0 / rate).clamp(MIN_EPOCH, MAX_EPOCH);
                    (sent_at >= last && now.duration_since(last) >= epoch)
                        .then_some(rate.min(measured.max(self.floor)))
                }
                (Some(rate), None) => Some(rate),
            };
            if let Some(base) = cut {
                let rate = (base * BETA).max(self.floor);
                tracing::debug!(service = self.service, rate, "throttled: pace cut");
                s.rate = Some(rate);
                s.last_cut = Some(now);
                s.next = s.next.max(now);
            }
        } else if let Some(rate) = s.rate {
            let dt = now.duration_since(s.last_raise).as_secs_f64();
            let raised = rate + (rate / 10.0).max(1.0) * dt;
            s.rate = Some(raised.min((2.0 * measured).max(rate)).max(self.floor));
        }
        s.last_raise = now;
    }
}

/// Whether an answer is a throttle, in any of the three services' shapes: IAM's
/// `<Code>Throttling</Code>` (400), the awsJson `ThrottlingException` (400), SES's
/// `TooManyRequestsException` (429). Only error answers are read.
fn is_throttle(status: u16, error_type: Option<&str>, body: &[u8]) -> bool {
    const MARKS: [&[u8]; 4] = [
        b"Throttling",
        b"TooManyRequests",
        b"RequestLimitExceeded",
        b"SlowDown",
    ];
    let has = |hay: &[u8]| MARKS.iter().any(|m| hay.windows(m.len()).any(|w| w == *m));
    status == 429 || error_type.is_some_and(|t| has(t.as_bytes())) || has(body)
}

/// SES v2 `SendEmail`: `POST /v2/email/outbound-emails`.
fn is_send_email(request: &HttpRequest) -> bool {
    request.method() == "POST"
        && request.uri().split('?').next().is_some_and(|p| {
            p.trim_end_matches('/')
                .ends_with("/v2/email/outbound-emails")
        })
}

/// The local answer to a mail that is not sent (see the module's doc).
fn too_late_to_mail() -> HttpResponse {
    let mut resp = HttpResponse::new(
        429u16.try_into().expect("429 is a status code"), // ok: constant
        SdkBody::from(
            r#"{"message":"not sent: too little time left before the record's deadline to record the welcome mail; it goes out on redelivery"}"#,
        ),
    );
    resp.headers_mut()
        .insert("x-amzn-errortype", "TooManyRequestsException");
    resp.headers_mut()
        .insert("content-type", "application/json");
    resp
}

/// An HTTP client whose connectors wait for the pacer before each request and tell
/// it how the service answered.
pub fn paced(inner: SharedHttpClient, pacer: Arc<Pacer>) -> SharedHttpClient {
    SharedHttpClient::new(PacedClient { inner, pacer })
}

#[derive(Debug)]
struct PacedClient {
    inner: SharedHttpClient,
    pacer: Arc<Pacer>,
}

impl HttpClient for PacedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(PacedConnector {
            inner: self.inner.http_connector(settings, components),
            pacer: Arc::clone(&self.pacer),
        })
    }
}

#[derive(Debug)]
struct PacedConnector {
    inner: SharedHttpConnector,
    pacer: Arc<Pacer>,
}

impl HttpConnector for PacedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        let pacer = Arc::clone(&self.pacer);
        HttpConnectorFuture::new(async move {
            let notes = crate::aws::notes();
            let priority = notes.as_ref().map_or(u64::MAX, |n| n.seq());
            pacer.acquire(priority).await;
            if let Some(n) = &notes {
                n.set_paced(pacer.rate().is_some());
            }
            if is_send_email(&request) {
                let due = notes.as_ref().and_then(|n| n.deadline());
                if due.is_some_and(|d| Instant::now() + record_window() > d) {
                    if let Some(n) = &notes {
                        // Answered here, not by the service: no slot to wait for.
                        n.set_paced(false);
                    }
                    return Ok(too_late_to_mail());
                }
            }
            let sent = Instant::now();
            let mut resp: HttpResponse = inner.call(request).await?;
            let status = resp.status().as_u16();
            let throttled = if (400..600).contains(&status) {
                // Error answers are small: read the body to see what it is, and put
                // it back for the SDK's own parsing.
                let body = ByteStream::new(resp.take_body())
                    .collect()
                    .await
                    .map(|b| b.into_bytes())
                    .unwrap_or_default();
                let t = is_throttle(status, resp.headers().get("x-amzn-errortype"), &body);
                *resp.body_mut() = SdkBody::from(body);
                t
            } else {
                false
            };
            pacer.answered(sent, throttled, Instant::now());
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_refused_as_too_late_reads_as_ses_throttling() {
        let r = too_late_to_mail();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(
            r.headers().get("x-amzn-errortype"),
            Some("TooManyRequestsException")
        );
        let mut send = HttpRequest::new(SdkBody::from("{}"));
        assert!(!is_send_email(&send), "GET / is not a mail");
        send.set_method("POST").unwrap();
        send.set_uri("https://email.us-east-1.amazonaws.com/v2/email/outbound-emails")
            .unwrap();
        assert!(is_send_email(&send));
        send.set_uri("https://email.us-east-1.amazonaws.com/v2/email/identities")
            .unwrap();
        assert!(!is_send_email(&send));
    }

    #[test]
    fn throttles_are_recognised_in_every_shape() {
        let iam = br#"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"#;
        assert!(is_throttle(400, None, iam));
        assert!(is_throttle(
            400,
            Some("ThrottlingException"),
            br#"{"__type":"ThrottlingException"}"#
        ));
        assert!(is_throttle(429, None, b"{}"));
        assert!(!is_throttle(
            404,
            None,
            b"<Error><Code>NoSuchEntity</Code></Error>"
        ));
        assert!(!is_throttle(400, Some("InvalidRequestException"), b"{}"));
    }

    #[tokio::test(start_paused = true)]
    async fn unpaced_until_throttled_then_cut_once_per_epoch_and_never_below_the_floor() {
        let p = Pacer::new("iam", 2.0);
        let t0 = Instant::now();
        // 40 calls within a second, all fine: no pace.
        for i in 0..40 {
            let at = t0 + Duration::from_millis(25 * i);
            assert_eq!(p.reserve(at), at);
            p.answered(at, false, at);
        }
        assert_eq!(p.rate(), None);
        let now = t0 + Duration::from_millis(1000);
        p.answered(now, true, now);
        let r1 = p.rate().expect("paced after a throttle");
        assert!(
            (r1 - 0.7 * 40.0).abs() < 3.0,
            "cut to 0.7x the measured rate: {r1}"
        );
        // A burst of throttles of requests sent before the cut: no further cut.
        for _ in 0..10 {
            p.answered(now - Duration::from_millis(10), true, now);
        }
        assert_eq!(p.rate(), Some(r1));
        // Slots are handed out 1/rate apart, in order.
        let a = p.reserve(now);
        let b = p.reserve(now);
        assert!((b - a).as_secs_f64() - 1.0 / r1 < 1e-6);
        // Many epochs of throttles: never below the floor.
        let mut t = now;
        for _ in 0..100 {
            t += Duration::from_secs(3);
            p.answered(t, true, t);
        }
        assert_eq!(p.rate(), Some(2.0));
        assert_eq!(p.throttles(), 111);
    }

    #[tokio::test(start_paused = true)]
    async fn slots_go_to_the_earliest_record_first() {
        let p = Pacer::new("iam", 1.0);
        let now = Instant::now();
        p.reserve(now);
        p.answered(now, true, now); // paced at the floor: one slot per second
        assert_eq!(p.rate(), Some(1.0));
        p.acquire(100).await; // takes the slot due now: the next is a second away
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for prio in [5u64, 3, 9, 1] {
            let (p, order) = (Arc::clone(&p), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                p.acquire(prio).await;
                order.lock().unwrap().push(prio);
            }));
            tokio::task::yield_now().await;
        }
        // A waiter that gives up leaves the queue.
        let gone = {
            let p = Arc::clone(&p);
            tokio::spawn(async move { p.acquire(0).await })
        };
        tokio::task::yield_now().await;
        gone.abort();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 3, 5, 9]);
        assert!(Instant::now() - now >= Duration::from_secs(3));
    }

    /// One record's chain: `calls` IAM calls through the pacer (40 ms each; of the
    /// instance's requests only every `throttle_every`-th is not throttled), a 40 ms
    /// call to another service after each. Returns when the record finished.
    async fn chain(
        p: Arc<Pacer>,
        calls: u32,
        sent: Arc<std::sync::atomic::AtomicU64>,
        throttle_every: u64,
    ) {
        use crate::aws::{call, AwsError, Budget, ErrorKind, Retry};
        use std::sync::atomic::Ordering;
        let budget = Budget::until(Instant::now() + Duration::from_secs(600));
        for _ in 0..calls {
            call(&budget, Retry::Safe, || {
                let (p, sent) = (Arc::clone(&p), Arc::clone(&sent));
                async move {
                    // As PacedConnector does.
                    let notes = crate::aws::notes();
                    let at = p
                        .acquire(notes.as_ref().map_or(u64::MAX, |n| n.seq()))
                        .await;
                    if let Some(n) = &notes {
                        n.set_paced(p.rate().is_some());
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    let n = sent.fetch_add(1, Ordering::SeqCst);
                    let throttled = n % throttle_every != 0;
                    p.answered(at, throttled, Instant::now());
                    if throttled {
                        Err(AwsError::new(
                            "GetUser",
                            ErrorKind::Throttled,
                            "Rate exceeded",
                        ))
                    } else {
                        Ok(())
                    }
                }
            })
            .await
            .expect("throttling is retried");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_records_keep_their_turn_and_finish_in_the_order_they_started() {
        use crate::aws::{with_notes, RecordNotes};
        let p = Pacer::new("iam", 10.0);
        let now = Instant::now();
        p.reserve(now);
        p.answered(now, true, now); // paced from the start, at 10 calls/s
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let notes = Arc::new(RecordNotes::starting(now + Duration::from_secs(600)));
            let seq = notes.seq();
            let (p, sent, done) = (Arc::clone(&p), Arc::clone(&sent), Arc::clone(&done));
            tasks.push(tokio::spawn(with_notes(notes, async move {
                // Two of three requests of the instance are throttled.
                chain(p, 6, sent, 3).await;
                done.lock().unwrap().push((seq, Instant::now()));
            })));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let done = done.lock().unwrap().clone();
        let order: Vec<u64> = done.iter().map(|(s, _)| *s).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        let times: Vec<u128> = done.iter().map(|(_, t)| (*t - now).as_millis()).collect();
        assert_eq!(
            order, sorted,
            "records finish in the order they started: {times:?} ms"
        );
        // The first record is done long before the last: they did not advance together.
        let (first, last) = (done[0].1 - now, done[done.len() - 1].1 - now);
        assert!(first * 3 < last, "first {first:?}, last {last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_pace_grows_back_without_throttles_but_not_while_idle() {
        let p = Pacer::new("iam", 1.0);
        let t0 = Instant::now();
        for i in 0..20 {
            let at = t0 + Duration::from_millis(50 * i);
            p.reserve(at);
        }
        let now = t0 + Duration::from_millis(999);
        p.answered(now, true, now);
        let r1 = p.rate().unwrap();
        // One answer per slot for 5 s: the pace rises by max(1, rate/10) per second.
        let mut t = now;
        for _ in 0..100 {
            let at = p.reserve(t);
            t = at;
            p.answered(at, false, at);
        }
        let r2 = p.rate().unwrap();
        assert!(r2 > r1 + 1.0, "{r1} -> {r2}");
        // Idle for a minute, then one answer: capped at twice the rate sent (0 in the
        // last second), so no more than it was.
        let later = t + Duration::from_secs(60);
        p.answered(later, false, later);
        assert!(p.rate().unwrap() <= r2);
    }
}
