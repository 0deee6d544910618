//! The JSON log line (`--log-format json`): one object per line, with a run's event as a
//! nested object, so a log pipeline queries `.fields.event.kind` or
//! `.fields.event.weights.primary` without parsing a string inside the line.
//!
//! The fields, stable (README, "Structured logs"):
//!
//! | path | what |
//! |---|---|
//! | `timestamp` | RFC 3339, UTC, microseconds |
//! | `level` | `ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE` |
//! | `target` | the module that logged (`cutover::console` for run events) |
//! | `fields.message` | the line a person reads |
//! | `fields.service`, `fields.run_id` | the run's service and id (every run event) |
//! | `fields.event` | the run event: `kind` (e.g. `weight_confirmed`, `rollback_started`, `finished`), `at` (RFC 3339), and the event's own fields (`weights.primary`, `outcome.phase`, ...) |
//!
//! Any other field of a log call appears under `fields` as a string, number or boolean.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The name of the field that carries a run event as JSON text; it is written nested.
pub const EVENT_FIELD: &str = "event";

/// The `tracing-subscriber` event format of JSON logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, field: &Field, text: String) {
        let value = if field.name() == EVENT_FIELD {
            // Our own serialization of an event: nested, never a string to parse again.
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        } else {
            Value::String(text)
        };
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let line = serde_json::json!({
            "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            "level": meta.level().as_str(),
            "target": meta.target(),
            "fields": Value::Object(fields.0),
        });
        writeln!(writer, "{line}")
    }
}

/// A run event as the JSON object of `fields.event`: its serialization, with the kind
/// under `kind` (the serialization's tag is `event`, which would read `.event.event`) and
/// `at` as RFC 3339 text.
pub fn event_json(e: &cutover_core::run::Event) -> String {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        if let Some(kind) = obj.remove("event") {
            obj.insert("kind".into(), kind);
        }
        obj.insert(
            "at".into(),
            humantime::format_rfc3339_millis(e.at).to_string().into(),
        );
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::Weights;
    use cutover_core::run::{Event, EventKind};

    #[test]
    fn an_event_is_a_nested_object_with_its_kind() {
        let e = Event {
            at: std::time::UNIX_EPOCH,
            kind: EventKind::WeightConfirmed {
                weights: Weights::ALL_DR,
                stage: None,
            },
        };
        let v: Value = serde_json::from_str(&event_json(&e)).unwrap();
        assert_eq!(v["kind"], "weight_confirmed");
        assert_eq!(v["weights"]["primary"], 0);
        assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
    }
}
