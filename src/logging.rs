//! JSON lines for CloudWatch: one object per event, with the fields at the top level.
//! A string field named `json` holding an object is merged in as it is, so the audit
//! line can carry real lists and nulls and the EMF document its `_aws` block.

use std::fmt;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub struct JsonLines;

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "json" {
            if let Value::String(s) = &value {
                if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(s) {
                    self.0.extend(obj);
                    return;
                }
            }
        }
        self.0.insert(field.name().to_owned(), value);
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut map = Map::new();
        let now = time::OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        map.insert("timestamp".into(), Value::String(now));
        map.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        map.insert(
            "target".into(),
            Value::String(event.metadata().target().to_owned()),
        );
        event.record(&mut Fields(&mut map));
        writeln!(w, "{}", Value::Object(map))
    }
}

/// The filter: `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else INFO. The
/// SDK's own chatter stays at WARN unless asked for.
pub fn filter() -> EnvFilter {
    let base = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_ascii_lowercase()))
        .unwrap_or_else(|_| "info".into());
    EnvFilter::try_new(format!(
        "aws_smithy_runtime=warn,aws_config=warn,hyper=warn,{base}"
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A subscriber writing JSON lines to `writer` (stdout in the function).
pub fn subscriber<W>(writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .event_format(JsonLines)
        .with_writer(writer)
        .with_env_filter(filter())
        .finish()
}

pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stdout));
}
