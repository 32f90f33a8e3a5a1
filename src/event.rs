//! The HR event (contract section 1): envelopes, field rules and the user-name rule.
//!
//! Parsing is pure. Every way an input can be wrong ends in a [`Rejection`] whose
//! message is fit for an operator; nothing here panics on input.

use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// SQS allows 1 MiB bodies; an HR event is a few hundred bytes. Anything larger is
/// refused before it is parsed, so hostile bodies cost nothing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest id we accept: it must fit an IAM tag value (256) with room to spare.
const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Joined,
    /// A mover: the whole current record; permissions follow the new rule.
    Changed,
    Left,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Joined => "employee.joined",
            EventType::Changed => "employee.changed",
            EventType::Left => "employee.left",
        }
    }

    /// The short name kept in the `hr:last-event-type` tag.
    pub fn short(self) -> &'static str {
        match self {
            EventType::Joined => "joined",
            EventType::Changed => "changed",
            EventType::Left => "left",
        }
    }

    /// At one instant a `left` ranks after `joined` and `changed` (contract
    /// section 5): a leaver dated like the employee's last mover or joiner, as HR
    /// systems that date by day often send, is never stale against it.
    pub fn rank(self) -> u8 {
        match self {
            EventType::Left => 1,
            EventType::Joined | EventType::Changed => 0,
        }
    }
}

/// The order of one employee's events: `(occurred_at, rank, event_id)`.
pub type OrderKey<'a> = (OffsetDateTime, u8, &'a str);

/// A validated HR event. `user_name` is already derived and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HrEvent {
    pub event_id: String,
    pub event_type: EventType,
    /// Always UTC.
    pub occurred_at: OffsetDateTime,
    pub employee: Employee,
    pub user_name: String,
    /// Set when the event was delivered by one of the function's own schedules
    /// (contract section 9): when it fell due and which record scheduled it.
    pub schedule: Option<Fired>,
}

/// An effective date as HR sent it: an instant, or a calendar day whose instant
/// (00:00 for a start, 24:00 for an end) depends on `HR_TIME_ZONE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectiveDate {
    At(OffsetDateTime),
    Day(time::Date),
}

impl EffectiveDate {
    /// RFC 3339 date-time (any offset) or `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<EffectiveDate> {
        if let Some(t) = parse_rfc3339(s) {
            return Some(EffectiveDate::At(t));
        }
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        (s.len() == 10)
            .then(|| time::Date::parse(s, &fmt).ok())
            .flatten()
            .map(EffectiveDate::Day)
    }

    /// As the event and the `hr:start-date`/`hr:end-date` tags carry it: the day
    /// as given, or the instant in UTC.
    pub fn as_text(&self) -> String {
        match self {
            EffectiveDate::At(t) => format_utc(*t),
            EffectiveDate::Day(d) => {
                format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
            }
        }
    }
}

/// The place of an event in one employee's stream (contract section 5):
/// `(occurred_at, rank, event_id)`, a leaver ranking after a joiner or mover of
/// the same instant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventKey {
    pub occurred_at: OffsetDateTime,
    pub rank: u8,
    pub event_id: String,
}

impl EventKey {
    pub fn new(occurred_at: OffsetDateTime, event_type: EventType, event_id: &str) -> Self {
        EventKey {
            occurred_at,
            rank: u8::from(event_type == EventType::Left),
            event_id: event_id.to_owned(),
        }
    }
}

/// What a scheduled delivery carries beside the event: its due time (from which
/// its age is counted) and the record that scheduled it (its place in the
/// employee's stream: a schedule older than the newest event is never acted on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub due_at: OffsetDateTime,
    pub by: EventKey,
    pub by_type: EventType,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Employee {
    pub employee_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub department: Option<String>,
    pub manager_email: Option<String>,
    /// Contract section 9: on a joiner, the first moment of access.
    pub start_date: Option<EffectiveDate>,
    /// Contract section 9: on any event, the last moment of access.
    pub end_date: Option<EffectiveDate>,
}

impl HrEvent {
    /// The event's place in its employee's stream.
    pub fn key(&self) -> EventKey {
        EventKey::new(self.occurred_at, self.event_type, &self.event_id)
    }

    /// `occurred_at` as stored in the `hr:last-event-at` tag (RFC 3339, UTC, `Z`).
    pub fn occurred_at_tag(&self) -> String {
        format_utc(self.occurred_at)
    }

    /// Where this event stands among the employee's events (contract section 5).
    pub fn order_key(&self) -> OrderKey<'_> {
        (
            self.occurred_at,
            self.event_type.rank(),
            self.event_id.as_str(),
        )
    }
}

/// Formats a UTC timestamp the one way tags carry it.
pub fn format_utc(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses an RFC 3339 timestamp (any offset) into UTC.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.to_offset(UtcOffset::UTC))
}

/// Why a record can never succeed, plus whatever identifiers could be read, so the
/// audit line still says which event and employee it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub reason: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub employee_id: Option<String>,
    pub user_name: Option<String>,
}

impl Rejection {
    fn new(reason: impl Into<String>) -> Self {
        Rejection {
            reason: reason.into(),
            event_id: None,
            event_type: None,
            employee_id: None,
            user_name: None,
        }
    }
}

#[derive(Deserialize)]
struct RawEvent {
    event_id: String,
    event_type: String,
    occurred_at: String,
    employee: RawEmployee,
    #[serde(default)]
    schedule: Option<RawFired>,
}

/// The `schedule` object of a scheduled delivery (written by src/schedule.rs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFired {
    due_at: String,
    by_event_id: String,
    by_event_type: String,
    by_occurred_at: String,
}

#[derive(Deserialize)]
struct RawEmployee {
    employee_id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    manager_email: Option<String>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
}

/// Parses one SQS message body: bare JSON, an SNS notification or an EventBridge event.
pub fn parse_body(body: &str) -> Result<HrEvent, Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::new(format!(
            "body is {} bytes; the limit is {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    let value = strict_json(body, "body")?;
    // Each envelope gives the event's value and what to call it in an error.
    let (event, what) = match envelope(&value)? {
        Envelope::Bare => (value, "not a valid HR event"),
        Envelope::Sns(message) => {
            let inner = strict_json(message, "SNS Message")?;
            (inner, "SNS Message is not a valid HR event")
        }
        Envelope::EventBridge(detail) => {
            (detail.clone(), "EventBridge detail is not a valid HR event")
        }
    };
    // The identifiers readable in the event, for the audit line of a rejection.
    let ids = PartialIds::from_value(&event);
    if !matches!(envelope(&event), Ok(Envelope::Bare)) || !event.is_object() {
        return Err(ids.reject(format!(
            "{what}: expected one JSON object with the HR event's fields, not another envelope"
        )));
    }
    if let Some((field, why)) = hidden_text(&event, "") {
        return Err(ids.reject(format!("{field} contains {why}")));
    }
    RawEvent::deserialize(&event)
        .map_err(|e| ids.reject(format!("{what}: {e}")))
        .and_then(|raw| validate(raw).map_err(|r| ids.fill(r)))
}

/// Parses JSON, refusing a key repeated in any object: two `event_id`s (or two
/// `employee`s) would let two readers of one message see different events.
fn strict_json(text: &str, what: &str) -> Result<Value, Rejection> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v.0))
        .map_err(|e| Rejection::new(format!("{what} is not valid JSON: {e}")))?;
    Ok(v)
}

/// A JSON value whose objects have unique keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Strict;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Strict(Value::Array(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut obj = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if obj.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate field `{}`",
                    truncate(&key)
                )));
            }
            obj.insert(key, v);
        }
        Ok(Strict(Value::Object(obj)))
    }
}

enum Envelope<'a> {
    Bare,
    Sns(&'a str),
    EventBridge(&'a Value),
}

const EVENT_KEYS: [&str; 4] = ["event_id", "event_type", "occurred_at", "employee"];
const SNS_KEYS: [&str; 2] = ["Type", "Message"];
const EVENTBRIDGE_KEYS: [&str; 2] = ["detail", "detail-type"];

/// Which envelope a body is. A body that could be read as more than one (a bare
/// event that also has `Type`/`Message` or `detail`) is refused, never guessed.
fn envelope(v: &Value) -> Result<Envelope<'_>, Rejection> {
    let Some(obj) = v.as_object() else {
        return Ok(Envelope::Bare);
    };
    let has = |keys: &[&str]| keys.iter().any(|k| obj.contains_key(*k));
    let kinds = [has(&EVENT_KEYS), has(&SNS_KEYS), has(&EVENTBRIDGE_KEYS)];
    if kinds.iter().filter(|k| **k).count() > 1 {
        return Err(Rejection::new(
            "ambiguous body: it mixes the fields of a bare HR event, an SNS notification \
             (Type/Message) and an EventBridge event (detail/detail-type)",
        ));
    }
    if kinds[1] {
        return match (obj.get("Type").and_then(Value::as_str), obj.get("Message")) {
            (Some("Notification"), Some(Value::String(m))) => Ok(Envelope::Sns(m)),
            _ => Err(Rejection::new(
                "SNS envelope: expected Type \"Notification\" and a string Message",
            )),
        };
    }
    if kinds[2] {
        return match (obj.get("detail-type"), obj.get("detail")) {
            (Some(Value::String(_)), Some(d @ Value::Object(_))) => Ok(Envelope::EventBridge(d)),
            _ => Err(Rejection::new(
                "EventBridge envelope: expected a string detail-type and an object detail",
            )),
        };
    }
    Ok(Envelope::Bare)
}

/// Unicode's letters (`\p{L}`): what IAM's tag pattern and a plain first name
/// both accept, unlike `char::is_alphabetic`, which also takes some marks and
/// letter-like numbers.
pub fn is_letter(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
    )
}

/// Characters that hide or reorder text for a reader: controls, bidirectional
/// overrides and isolates, zero-width characters, line and paragraph separators.
pub fn hidden_char(c: char) -> Option<&'static str> {
    match c {
        c if c.is_control() => Some("control characters"),
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{061C}' => Some("bidirectional-override characters"),
        '\u{200B}'..='\u{200D}'
        | '\u{2060}'..='\u{2064}'
        | '\u{FEFF}'
        | '\u{180E}'
        | '\u{034F}' => Some("zero-width characters"),
        '\u{2028}' | '\u{2029}' => Some("line-separator characters"),
        _ => None,
    }
}

/// The first string anywhere in the event (known fields or not) that holds a
/// hidden character: such text reaches tags, mails and operators' screens.
fn hidden_text(v: &Value, at: &str) -> Option<(String, &'static str)> {
    match v {
        Value::String(s) => s.chars().find_map(hidden_char).map(|why| {
            (
                if at.is_empty() {
                    "a value".into()
                } else {
                    at.to_owned()
                },
                why,
            )
        }),
        Value::Array(items) => items.iter().find_map(|i| hidden_text(i, at)),
        Value::Object(obj) => obj.iter().find_map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match k.chars().find_map(hidden_char) {
                Some(why) => Some((
                    format!(
                        "a field name in {}",
                        if at.is_empty() { "the event" } else { at }
                    ),
                    why,
                )),
                None => hidden_text(v, &path),
            }
        }),
        _ => None,
    }
}

/// The time window of contract section 1: a timestamp from the future would make
/// every later event stale (a user immune to offboarding); one older than
/// `max_age_days` may predate a deleted user's tombstone.
///
/// A scheduled delivery is applied as if it had arrived when it fell due: its
/// age counts from `schedule.due_at` (a hire entered 20 days ago and starting
/// today is young), and a due time in the future is refused like a timestamp.
pub fn check_window(ev: &HrEvent, now: OffsetDateTime, max_age_days: i64) -> Result<(), String> {
    let skew = time::Duration::minutes(5);
    if ev.occurred_at > now + skew {
        return Err(format!(
            "occurred_at {} is in the future (more than 5 minutes after {})",
            ev.occurred_at_tag(),
            format_utc(now)
        ));
    }
    if let Some(f) = &ev.schedule {
        if f.due_at > now + skew {
            return Err(format!(
                "schedule.due_at {} is in the future (more than 5 minutes after {})",
                format_utc(f.due_at),
                format_utc(now)
            ));
        }
        if f.due_at < now - time::Duration::days(max_age_days) {
            return Err(format!(
                "schedule.due_at {} is older than MAX_EVENT_AGE_DAYS ({max_age_days} days)",
                format_utc(f.due_at)
            ));
        }
        return Ok(());
    }
    if ev.occurred_at < now - time::Duration::days(max_age_days) {
        return Err(format!(
            "occurred_at {} is older than MAX_EVENT_AGE_DAYS ({max_age_days} days)",
            ev.occurred_at_tag()
        ));
    }
    Ok(())
}

/// Identifiers read leniently from a body that may not parse, for the audit line.
#[derive(Default)]
struct PartialIds {
    event_id: Option<String>,
    event_type: Option<String>,
    employee_id: Option<String>,
}

impl PartialIds {
    fn from_value(v: &Value) -> Self {
        let s = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN)
                .map(str::to_owned)
        };
        PartialIds {
            event_id: s(v.get("event_id")),
            event_type: s(v.get("event_type")),
            employee_id: s(v.get("employee").and_then(|e| e.get("employee_id"))),
        }
    }
    fn reject(&self, reason: String) -> Rejection {
        self.fill(Rejection::new(reason))
    }
    fn fill(&self, mut r: Rejection) -> Rejection {
        r.event_id = r.event_id.or_else(|| self.event_id.clone());
        r.event_type = r.event_type.or_else(|| self.event_type.clone());
        r.employee_id = r.employee_id.or_else(|| self.employee_id.clone());
        r
    }
}

fn validate(raw: RawEvent) -> Result<HrEvent, Rejection> {
    let RawEvent {
        event_id,
        event_type,
        occurred_at,
        employee: e,
        schedule,
    } = raw;
    check_id("event_id", &event_id)?;
    check_id("employee.employee_id", &e.employee_id)?;
    let event_type = match event_type.as_str() {
        "employee.joined" => EventType::Joined,
        "employee.left" => EventType::Left,
        "employee.changed" => EventType::Changed,
        other => {
            return Err(Rejection::new(format!(
            "unknown event_type {:?}: expected employee.joined, employee.changed or employee.left",
            truncate(other)
        )))
        }
    };
    let occurred_at = parse_rfc3339(&occurred_at).ok_or_else(|| {
        Rejection::new(format!(
            "occurred_at {:?} is not an RFC 3339 timestamp",
            truncate(&occurred_at)
        ))
    })?;
    if let Some(email) = &e.email {
        check_email("employee.email", email)?;
    }
    if let Some(m) = &e.manager_email {
        check_email("employee.manager_email", m)?;
    }
    if event_type == EventType::Joined && e.email.is_none() {
        return Err(Rejection::new(
            "employee.email is required for employee.joined",
        ));
    }
    for (field, v) in [
        ("employee.first_name", &e.first_name),
        ("employee.last_name", &e.last_name),
        ("employee.department", &e.department),
    ] {
        if let Some(v) = v {
            check_text(field, v)?;
        }
    }
    let user_name = user_name(e.username.as_deref(), e.email.as_deref())?;
    let date = |field: &str, v: &Option<String>| match v {
        None => Ok(None),
        Some(s) => EffectiveDate::parse(s).map(Some).ok_or_else(|| {
            Rejection::new(format!(
                "{field} {:?} is neither an RFC 3339 date-time nor a date (YYYY-MM-DD)",
                truncate(s)
            ))
        }),
    };
    let start_date = date("employee.start_date", &e.start_date)?;
    let end_date = date("employee.end_date", &e.end_date)?;
    let schedule = schedule.map(validate_fired).transpose()?;
    Ok(HrEvent {
        event_id,
        event_type,
        occurred_at,
        user_name,
        schedule,
        employee: Employee {
            employee_id: e.employee_id,
            email: e.email,
            first_name: e.first_name,
            last_name: e.last_name,
            department: e.department,
            manager_email: e.manager_email,
            start_date,
            end_date,
        },
    })
}

fn validate_fired(f: RawFired) -> Result<Fired, Rejection> {
    let time = |field: &str, v: &str| {
        parse_rfc3339(v).ok_or_else(|| {
            Rejection::new(format!(
                "{field} {:?} is not an RFC 3339 timestamp",
                truncate(v)
            ))
        })
    };
    let due_at = time("schedule.due_at", &f.due_at)?;
    let by_occurred_at = time("schedule.by_occurred_at", &f.by_occurred_at)?;
    check_id("schedule.by_event_id", &f.by_event_id)?;
    let by_type = match f.by_event_type.as_str() {
        "employee.joined" => EventType::Joined,
        "employee.changed" => EventType::Changed,
        "employee.left" => EventType::Left,
        other => {
            return Err(Rejection::new(format!(
                "schedule.by_event_type {:?} is not an event type",
                truncate(other)
            )))
        }
    };
    Ok(Fired {
        due_at,
        by: EventKey::new(by_occurred_at, by_type, &f.by_event_id),
        by_type,
    })
}

/// The user-name rule: explicit `username`, else the email's local part; lower-cased;
/// IAM's charset and length. Never silently changed: anything else is rejected.
pub fn user_name(username: Option<&str>, email: Option<&str>) -> Result<String, Rejection> {
    let (source, candidate) = match (username, email) {
        (Some(u), _) => ("employee.username", u),
        (None, Some(mail)) => (
            "the local part of employee.email",
            mail.rsplit_once('@')
                .map(|(local, _)| local)
                .unwrap_or(mail),
        ),
        (None, None) => {
            return Err(Rejection::new(
                "no user name: employee.username and employee.email are both absent",
            ))
        }
    };
    if candidate.is_empty() || candidate.len() > 64 {
        return Err(Rejection::new(format!(
            "{source} {:?} is not a valid IAM user name: it must be 1-64 characters",
            truncate(candidate)
        )));
    }
    // Checked before lower-casing, and ASCII-only: Unicode case folding would turn
    // look-alikes such as U+212A KELVIN SIGN into a plain `k`.
    if let Some(bad) = candidate.chars().find(|c| !is_iam_name_char(*c)) {
        return Err(Rejection::new(format!(
            "{source} {:?} is not a valid IAM user name: character {:?} is not one of A-Za-z0-9+=.@_-",
            truncate(candidate),
            bad
        )));
    }
    Ok(candidate.to_ascii_lowercase())
}

/// IAM's user-name charset without `,`: Secrets Manager refuses it in secret names
/// and tags, and the secret is written after the user exists.
pub fn is_iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=.@_-".contains(c)
}

/// Ids become IAM tag values, so they keep to a conservative subset of the tag charset.
fn check_id(field: &str, v: &str) -> Result<(), Rejection> {
    if v.is_empty() {
        return Err(Rejection::new(format!("{field} is empty")));
    }
    if v.len() > MAX_ID_LEN {
        return Err(Rejection::new(format!(
            "{field} is longer than {MAX_ID_LEN} characters"
        )));
    }
    if let Some(bad) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._:/=+-@".contains(*c)))
    {
        return Err(Rejection::new(format!(
            "{field} {:?} has character {bad:?}; allowed: A-Za-z0-9._:/=+-@",
            truncate(v)
        )));
    }
    Ok(())
}

/// A deliberately plain address check: one `@`, a dotted domain, printable ASCII only.
/// It keeps header injection and look-alike domains out of SES and tags.
pub fn check_email(field: &str, v: &str) -> Result<(), Rejection> {
    let bad = || {
        Rejection::new(format!(
            "{field} {:?} is not a valid email address",
            truncate(v)
        ))
    };
    if v.len() > 254 {
        return Err(bad());
    }
    let (local, domain) = v.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Free text (names, department): bounded, and free of hidden characters (also
/// checked for every string of the event before it is read).
fn check_text(field: &str, v: &str) -> Result<(), Rejection> {
    if v.chars().count() > 128 {
        return Err(Rejection::new(format!(
            "{field} is longer than 128 characters"
        )));
    }
    if let Some(why) = v.chars().find_map(hidden_char) {
        return Err(Rejection::new(format!("{field} contains {why}")));
    }
    Ok(())
}

/// Input echoed into an error is cut short, so a hostile body cannot flood the logs.
fn truncate(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(employee: &str) -> String {
        format!(
            r#"{{"event_id":"ev-1","event_type":"employee.joined","occurred_at":"2026-11-22T09:00:00Z","employee":{employee}}}"#
        )
    }

    const JANE: &str = r#"{"employee_id":"E1001","email":"jane.doe@example.com","username":"jane.doe","first_name":"Jane","last_name":"Doe","department":"engineering","manager_email":"lead@example.com"}"#;

    #[test]
    fn bare_event_parses_every_field() {
        let ev = parse_body(&body(JANE)).unwrap();
        assert_eq!(ev.event_id, "ev-1");
        assert_eq!(ev.event_type, EventType::Joined);
        assert_eq!(ev.user_name, "jane.doe");
        assert_eq!(ev.employee.employee_id, "E1001");
        assert_eq!(ev.employee.department.as_deref(), Some("engineering"));
        assert_eq!(
            ev.employee.manager_email.as_deref(),
            Some("lead@example.com")
        );
        assert_eq!(ev.occurred_at_tag(), "2026-11-22T09:00:00Z");
    }

    #[test]
    fn sns_and_eventbridge_envelopes_give_the_same_event() {
        let bare = body(JANE);
        let sns = serde_json::json!({"Type":"Notification","MessageId":"m","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":bare}).to_string();
        let inner: Value = serde_json::from_str(&bare).unwrap();
        let eb = serde_json::json!({"version":"0","id":"x","detail-type":"employee.joined","source":"hr","detail":inner}).to_string();
        let a = parse_body(&bare).unwrap();
        assert_eq!(parse_body(&sns).unwrap(), a);
        assert_eq!(parse_body(&eb).unwrap(), a);
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let b = body(JANE).replace("2026-11-22T09:00:00Z", "2026-11-22T10:30:00+01:30");
        assert_eq!(
            parse_body(&b).unwrap().occurred_at_tag(),
            "2026-11-22T09:00:00Z"
        );
    }

    #[test]
    fn name_defaults_to_lowercased_email_local_part() {
        let ev = parse_body(&body(
            r#"{"employee_id":"E1","email":"John.Smith@Example.com"}"#,
        ))
        .unwrap();
        assert_eq!(ev.user_name, "john.smith");
        let ev = parse_body(&body(
            r#"{"employee_id":"E1","email":"a@b.co","username":"Mixed.Case"}"#,
        ))
        .unwrap();
        assert_eq!(ev.user_name, "mixed.case");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let ev = parse_body(&body(
            r#"{"employee_id":"E1","email":"a@b.co","shoe_size":44}"#,
        ));
        assert!(ev.is_ok());
    }

    fn rejected(b: &str) -> Rejection {
        match parse_body(b) {
            Err(r) => r,
            Ok(ev) => panic!("accepted: {ev:?}"),
        }
    }

    #[test]
    fn hostile_and_malformed_bodies_are_rejected_with_a_reason() {
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not valid JSON"),
            ("".into(), "not valid JSON"),
            ("[]".into(), "not a valid HR event"),
            ("null".into(), "not a valid HR event"),
            (
                r#"{"event_type":"employee.joined"}"#.into(),
                "missing field `event_id`",
            ),
            (body(r#"{"email":"a@b.co"}"#), "missing field `employee_id`"),
            (
                body(r#"{"employee_id":5,"email":"a@b.co"}"#),
                "invalid type",
            ),
            (
                body(r#"{"employee_id":"","email":"a@b.co"}"#),
                "employee_id is empty",
            ),
            (body(r#"{"employee_id":"E1"}"#), "email is required"),
            (
                body(r#"{"employee_id":"E1","email":"no-at-sign"}"#),
                "not a valid email",
            ),
            (
                body(r#"{"employee_id":"E1","email":"a@b.co\r\nBcc: x@y.z"}"#),
                "control characters",
            ),
            (
                body(r#"{"employee_id":"E1","email":"a@b.co","username":""}"#),
                "1-64",
            ),
            (
                body(&format!(
                    r#"{{"employee_id":"E1","email":"a@b.co","username":"{}"}}"#,
                    "a".repeat(65)
                )),
                "1-64",
            ),
            (
                body(r#"{"employee_id":"E1","email":"a@b.co","username":"ja\u212Ane"}"#),
                "not one of",
            ),
            (
                body(r#"{"employee_id":"E1","email":"a@b.co","username":"jаne"}"#),
                "not one of",
            ),
            (
                body(r#"{"employee_id":"E1","email":"a@b.co","username":"../admin"}"#),
                "not one of",
            ),
            (
                body(r#"{"employee_id":"E1","email":"a@b.co","username":"a/b"}"#),
                "not one of",
            ),
            (
                body(r#"{"employee_id":"E1","email":"a@b.co","username":"jane doe"}"#),
                "not one of",
            ),
            (
                body(r#"{"employee_id":"E1","email":"o'brien@b.co"}"#),
                "not one of",
            ),
            (
                body(r#"{"employee_id":"E1","email":"a@b.co","first_name":"x\u0000y"}"#),
                "control",
            ),
            (
                body(r#"{"employee_id":"E1","email":"a@b.co","username":null,"first_name":7}"#),
                "invalid type",
            ),
        ];
        for (b, want) in cases {
            let r = rejected(&b);
            assert!(
                r.reason.contains(want),
                "{b:?}: got {:?}, want {want:?}",
                r.reason
            );
        }
    }

    #[test]
    fn event_type_and_timestamp_rules() {
        let b = body(JANE);
        assert!(rejected(&b.replace("employee.joined", "employee.fired"))
            .reason
            .contains("unknown event_type"));
        assert_eq!(
            parse_body(&b.replace("employee.joined", "employee.changed"))
                .unwrap()
                .event_type,
            EventType::Changed
        );
        assert!(rejected(&b.replace("2026-11-22T09:00:00Z", "yesterday"))
            .reason
            .contains("RFC 3339"));
        assert!(
            rejected(&b.replace("2026-11-22T09:00:00Z", "2026-11-22 09:00:00"))
                .reason
                .contains("RFC 3339")
        );
        // A left needs no email when a username is given.
        let left = r#"{"event_id":"e","event_type":"employee.left","occurred_at":"2026-11-22T09:00:00Z","employee":{"employee_id":"E1","username":"jane.doe"}}"#;
        assert_eq!(parse_body(left).unwrap().event_type, EventType::Left);
        let nameless = r#"{"event_id":"e","event_type":"employee.left","occurred_at":"2026-11-22T09:00:00Z","employee":{"employee_id":"E1"}}"#;
        assert!(rejected(nameless).reason.contains("no user name"));
    }

    #[test]
    fn rejections_keep_the_identifiers_they_could_read() {
        let r = rejected(&body(
            r#"{"employee_id":"E77","email":"a@b.co","username":"x/y"}"#,
        ));
        assert_eq!(r.event_id.as_deref(), Some("ev-1"));
        assert_eq!(r.employee_id.as_deref(), Some("E77"));
        assert_eq!(r.event_type.as_deref(), Some("employee.joined"));
    }

    #[test]
    fn oversized_and_deeply_nested_bodies_do_not_panic() {
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1024 * 1024));
        assert!(rejected(&big).reason.contains("limit"));
        let deep = "[".repeat(50_000);
        assert!(rejected(&deep).reason.contains("not valid JSON"));
        let ids = body(JANE).replace("ev-1", &"e".repeat(129));
        assert!(rejected(&ids).reason.contains("longer than"));
        assert!(rejected(&body(JANE).replace("ev-1", "ev 1"))
            .reason
            .contains("character"));
    }

    #[test]
    fn comma_in_a_user_name_is_refused_before_any_change() {
        // IAM takes it, Secrets Manager refuses it in names and tags.
        let r = rejected(&body(
            r#"{"employee_id":"E1","email":"a@b.co","username":"doe,jane"}"#,
        ));
        assert!(r.reason.contains("not one of"), "{}", r.reason);
        assert!(
            rejected(&body(r#"{"employee_id":"E1","email":"doe,jane@b.co"}"#))
                .reason
                .contains("not a valid")
        );
    }

    #[test]
    fn hidden_characters_are_refused_in_every_text_field() {
        for bad in [
            "\\u202Eevil",
            "Ja\\u200Bne",
            "\\u2066x\\u2069",
            "a\\u200Fb",
            "\\uFEFFJane",
            "x\\u2028y",
            "x\\u0007y",
        ] {
            for field in [
                "first_name",
                "last_name",
                "department",
                "manager_name",
                "title",
            ] {
                let b = body(&format!(
                    r#"{{"employee_id":"E1","email":"a@b.co","{field}":"{bad}"}}"#
                ));
                let r = rejected(&b);
                assert!(
                    r.reason.contains("characters") && r.reason.contains(field),
                    "{field}={bad}: {}",
                    r.reason
                );
                assert_eq!(r.employee_id.as_deref(), Some("E1"));
            }
        }
        // Ordinary non-ASCII names pass.
        let ev = parse_body(&body(
            r#"{"employee_id":"E1","email":"a@b.co","first_name":"Zoë","last_name":"O'Brien-Núñez"}"#,
        ))
        .unwrap();
        assert_eq!(ev.employee.first_name.as_deref(), Some("Zoë"));
    }

    #[test]
    fn ambiguous_envelopes_are_refused() {
        let bare = body(JANE);
        let inner: Value = serde_json::from_str(&bare).unwrap();
        let mut with_type = inner.clone();
        with_type["Type"] = "Notification".into();
        with_type["Message"] = "{}".into();
        let mut with_detail = inner.clone();
        with_detail["detail"] = json!({});
        let mut with_detail_type = inner.clone();
        with_detail_type["detail-type"] = "x".into();
        let sns_wrapping_eb = json!({"Type":"Notification","Message":
            json!({"detail-type":"x","detail":inner}).to_string()});
        let sns_and_eb =
            json!({"Type":"Notification","Message":bare,"detail-type":"x","detail":inner});
        let bad_sns = json!({"Type":"SubscriptionConfirmation","Message":bare});
        let eb_string_detail = json!({"detail-type":"x","detail":bare});
        for v in [
            with_type,
            with_detail,
            with_detail_type,
            sns_wrapping_eb,
            sns_and_eb,
            bad_sns,
            eb_string_detail,
        ] {
            let r = rejected(&v.to_string());
            assert!(
                r.reason.contains("ambiguous")
                    || r.reason.contains("envelope")
                    || r.reason.contains("not another envelope"),
                "{v}: {}",
                r.reason
            );
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_every_level_of_every_envelope() {
        let dup_employee = r#"{"event_id":"a","event_type":"employee.joined","occurred_at":"2026-11-22T09:00:00Z","employee":{"employee_id":"E1","employee_id":"E2","email":"a@b.co"}}"#;
        assert!(rejected(dup_employee).reason.contains("duplicate field"));
        let inner = body(JANE);
        let eb_dup = r#"{"detail-type":"x","detail":{"event_id":"a","event_id":"b","event_type":"employee.joined","occurred_at":"2026-11-22T09:00:00Z","employee":{"employee_id":"E1","email":"a@b.co"}}}"#;
        assert!(rejected(eb_dup).reason.contains("duplicate field"));
        let sns_dup_outer = format!(
            r#"{{"Type":"Notification","Message":{},"Message":{}}}"#,
            Value::String(inner.clone()),
            Value::String(inner.clone())
        );
        assert!(rejected(&sns_dup_outer).reason.contains("duplicate field"));
        let dup_inner = dup_employee.to_owned();
        let sns_dup_inner = json!({"Type":"Notification","Message":dup_inner}).to_string();
        assert!(rejected(&sns_dup_inner).reason.contains("duplicate field"));
        let deep = body(r#"{"employee_id":"E1","email":"a@b.co","extra":{"k":1,"k":2}}"#);
        assert!(rejected(&deep).reason.contains("duplicate field"));
    }

    #[test]
    fn the_time_window_refuses_future_and_old_events() {
        let ev = parse_body(&body(JANE)).unwrap();
        let t = ev.occurred_at;
        assert!(check_window(&ev, t, 14).is_ok());
        // Up to 5 minutes of clock skew is tolerated.
        assert!(check_window(&ev, t - time::Duration::minutes(5), 14).is_ok());
        let future = check_window(&ev, t - time::Duration::minutes(6), 14).unwrap_err();
        assert!(future.contains("future"), "{future}");
        assert!(check_window(&ev, t + time::Duration::days(14), 14).is_ok());
        let old = check_window(
            &ev,
            t + time::Duration::days(14) + time::Duration::seconds(1),
            14,
        )
        .unwrap_err();
        assert!(old.contains("MAX_EVENT_AGE_DAYS"), "{old}");
    }

    #[test]
    fn effective_dates_are_read_or_the_event_is_rejected() {
        let ev = parse_body(&body(
            r#"{"employee_id":"E1","email":"a@b.co","start_date":"2026-12-01","end_date":"2027-03-31T18:00:00+02:00"}"#,
        ))
        .unwrap();
        assert_eq!(
            ev.employee.start_date,
            Some(EffectiveDate::Day(time::macros::date!(2026 - 12 - 01)))
        );
        assert_eq!(
            ev.employee.end_date.map(|d| d.as_text()).as_deref(),
            Some("2027-03-31T16:00:00Z")
        );
        for (field, bad) in [
            ("start_date", "2026-02-30"),
            ("start_date", "next monday"),
            ("end_date", "2027-03-31T18:00:00"),
            ("end_date", "31/03/2027"),
        ] {
            let r = rejected(&body(&format!(
                r#"{{"employee_id":"E1","email":"a@b.co","{field}":"{bad}"}}"#
            )));
            assert!(
                r.reason.contains(&format!("employee.{field}")) && r.reason.contains("YYYY-MM-DD"),
                "{bad}: {}",
                r.reason
            );
        }
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let b = r#"{"event_id":"a","event_id":"b","event_type":"employee.joined","occurred_at":"2026-11-22T09:00:00Z","employee":{"employee_id":"E1","email":"a@b.co"}}"#;
        assert!(rejected(b).reason.contains("duplicate field"));
    }
}
