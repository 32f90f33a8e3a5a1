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

/// The filter: `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else INFO.
pub fn filter() -> EnvFilter {
    let base = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_ascii_lowercase()))
        .unwrap_or_else(|_| "info".into());
    EnvFilter::try_new(format!(
        "aws_smithy_runtime=warn,aws_config=warn,hyper=warn,{base}"
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Crates that can log request and response bodies (with passwords, secret keys
/// and secret values) at DEBUG or TRACE. They are held at WARN in code, whatever
/// `RUST_LOG` says: the environment can lower what is logged, never open this.
const CAPPED: [&str; 10] = [
    "aws_smithy",
    "aws_sdk",
    "aws_config",
    "aws_sigv4",
    "aws_runtime",
    "aws_credential_types",
    "hyper",
    "h2",
    "rustls",
    "reqwest",
];

pub fn capped(meta: &tracing::Metadata<'_>) -> bool {
    let t = meta.target();
    let sdk = CAPPED.iter().any(|c| t.starts_with(c));
    !sdk || *meta.level() <= tracing::Level::WARN
}

/// A subscriber writing JSON lines to `writer` (stdout in the function).
pub fn subscriber<W>(writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let layer = tracing_subscriber::fmt::layer()
        .event_format(JsonLines)
        .with_writer(writer)
        .with_filter(filter())
        .with_filter(tracing_subscriber::filter::filter_fn(capped));
    tracing_subscriber::registry().with(layer)
}

pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stdout));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_targets_are_capped_at_warn_whatever_rust_log_says() {
        // RUST_LOG=trace must not open the SDK's wire logging.
        std::env::set_var("RUST_LOG", "trace");
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let b2 = buf.clone();
        let sub = subscriber(move || Sink(b2.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::debug!(target: "aws_smithy_runtime::client::http", body = "SECRET-BODY", "wire");
            tracing::trace!(target: "aws_sdk_secretsmanager::operation", "SECRET-TRACE");
            tracing::debug!(target: "hyper::proto", "SECRET-HYPER");
            tracing::debug!(target: "hr_iam_provisioner::service", "own-debug");
            tracing::warn!(target: "aws_smithy_runtime", "sdk-warn");
        });
        std::env::remove_var("RUST_LOG");
        let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(!out.contains("SECRET"), "{out}");
        assert!(
            out.contains("own-debug") && out.contains("sdk-warn"),
            "{out}"
        );
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
