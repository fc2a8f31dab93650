//! The JSON values that cross between the API and the database: an object
//! as a client sends it ([`JsonObject`]), a `jsonb` object passed through as
//! its stored text ([`StoredJson`]), and timestamps as RFC 3339 with a
//! numeric offset and microseconds ([`rfc3339`]). The repositories' input and
//! row types are made of these, and the handlers of [`crate::api`] validate
//! into those inputs and answer with those rows as they are; the module sits
//! below both layers and uses neither, so each format has one home and
//! [`crate::repo`] never reaches up into the API for it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// A JSON object (context, metadata) as a client sends it.
pub type JsonObject = serde_json::Map<String, Value>;

/// A JSON object as the database returns it, passed to the response as its
/// text: no tree is built on the way out (listing pages carry two per row).
/// The text is JSON-equivalent to what was stored, in jsonb's own key order
/// and spacing.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct StoredJson(Box<RawValue>);

impl StoredJson {
    /// The JSON text as stored.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses it, for callers that need the values (tests, tools).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }
}

impl From<Box<RawValue>> for StoredJson {
    fn from(raw: Box<RawValue>) -> StoredJson {
        StoredJson(raw)
    }
}

impl From<&JsonObject> for StoredJson {
    fn from(object: &JsonObject) -> StoredJson {
        let text = serde_json::to_string(object).unwrap_or_else(|_| "{}".to_owned());
        StoredJson(RawValue::from_string(text).expect("serde_json wrote valid JSON"))
    }
}

/// Equal when they hold the same JSON, whatever the spacing and key order.
impl PartialEq for StoredJson {
    fn eq(&self, other: &StoredJson) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

/// Serializes a timestamp as RFC 3339 with a numeric offset and microseconds.
pub fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, false))
}
