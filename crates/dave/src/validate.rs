//! The rules a request's text and JSON objects must keep before they reach
//! the database, shared by the request types of [`crate::api`].
//!
//! Each request type's `validate` (next to its handlers) applies the
//! contract's rules with these helpers, fills in defaults and returns the
//! value to store, or a [`FieldError`] naming the field. Limits the contract
//! does not give are the Python reference's (`app/schemas.py`) where it has
//! one, or else a generous bound chosen so that client input can never reach
//! the database in a shape it would refuse (a NUL character, a string longer
//! than its column, a tsvector over its limit): client input must never
//! produce a 500.

use serde_json::Value;

use crate::error::ApiError;
pub use crate::json::JsonObject;

/// Largest `context` or `metadata` object, as compact JSON (DESIGN §3).
pub const MAX_JSON_OBJECT_BYTES: usize = 64 * 1024;

/// A request value that breaks a rule: which field, and what the rule is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's name as the client wrote it, e.g. `title` or `tags[2]`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::Validation(error.to_string())
    }
}

/// Postgres text cannot hold NUL; refuse it as input instead of failing later.
fn check_no_nul(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        return Err(FieldError::new(
            field,
            "must not contain the NUL character (\\u0000)",
        ));
    }
    Ok(())
}

/// `value` must be `min..=max` characters (Unicode scalar values) and NUL-free.
pub(crate) fn check_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), FieldError> {
    check_no_nul(field, value)?;
    // Cheap upper bound first: a string of n bytes has at most n characters.
    let count = if value.len() <= max {
        value.chars().count()
    } else {
        value.chars().take(max + 1).count()
    };
    if count < min || count > max {
        let rule = if min == 1 {
            format!("must be 1 to {max} characters")
        } else {
            format!("must be {min} to {max} characters")
        };
        return Err(FieldError::new(field, rule));
    }
    Ok(())
}

/// Trimmed, then [`check_text`].
pub(crate) fn trimmed_text(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {max} characters and not only spaces"),
        ));
    }
    check_text(field, value, 1, max)?;
    Ok(value.to_owned())
}

pub(crate) fn check_list(
    field: &str,
    items: &[String],
    max_items: usize,
    max_chars: usize,
) -> Result<(), FieldError> {
    if items.len() > max_items {
        return Err(FieldError::new(field, format!("at most {max_items} items")));
    }
    for (i, item) in items.iter().enumerate() {
        check_text(&format!("{field}[{i}]"), item, 0, max_chars)?;
    }
    Ok(())
}

/// Counts serialized bytes and stops writing once over the limit.
struct SizeLimit {
    written: usize,
    limit: usize,
}

impl std::io::Write for SizeLimit {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written += buf.len();
        if self.written > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// A `context`/`metadata` object: at most 64 KiB as compact JSON, and no NUL
/// in any key or string (jsonb refuses `\u0000`).
pub fn check_json_object(field: &str, object: &JsonObject) -> Result<(), FieldError> {
    let mut sink = SizeLimit {
        written: 0,
        limit: MAX_JSON_OBJECT_BYTES,
    };
    if serde_json::to_writer(&mut sink, object).is_err() {
        return Err(FieldError::new(
            field,
            format!(
                "must be at most {} KiB as JSON",
                MAX_JSON_OBJECT_BYTES / 1024
            ),
        ));
    }
    if object
        .iter()
        .any(|(k, v)| k.contains('\0') || contains_nul(v))
    {
        return Err(FieldError::new(
            field,
            "must not contain the NUL character (\\u0000)",
        ));
    }
    Ok(())
}

/// Helpers for the rule tests of the request types.
#[cfg(test)]
pub(crate) mod test_support {
    use super::FieldError;

    pub(crate) fn parse<T: serde::de::DeserializeOwned>(
        value: serde_json::Value,
    ) -> Result<T, serde_json::Error> {
        serde_json::from_value(value)
    }

    pub(crate) fn field_of<T>(result: Result<T, FieldError>) -> String {
        match result {
            Ok(_) => panic!("expected a field error"),
            Err(e) => e.field,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_objects_are_limited_to_64_kib() {
        // {"k":"<n x>"} is n + 8 bytes of compact JSON.
        let object = |n: usize| json!({"k": "x".repeat(n)}).as_object().unwrap().clone();
        assert!(check_json_object("context", &object(MAX_JSON_OBJECT_BYTES - 8)).is_ok());
        let error = check_json_object("context", &object(MAX_JSON_OBJECT_BYTES - 7)).unwrap_err();
        assert_eq!(error.field, "context");
        assert!(error.to_string().contains("64 KiB"), "{error}");
    }

    #[test]
    fn json_objects_refuse_nul_anywhere() {
        for value in [
            json!({"a\u{0}": 1}),
            json!({"a": "x\u{0}"}),
            json!({"a": [{"b": ["\u{0}"]}]}),
        ] {
            let object = value.as_object().unwrap();
            assert!(check_json_object("metadata", object).is_err(), "{value}");
        }
        let fine = json!({"a": "\\u0000 is text here", "n": [1, null, true]});
        assert!(check_json_object("metadata", fine.as_object().unwrap()).is_ok());
    }

    #[test]
    fn field_errors_become_422_naming_the_field() {
        use axum::response::IntoResponse;
        let error = ApiError::from(FieldError::new("title", "must be 1 to 200 characters"));
        assert_eq!(error.to_string(), "title: must be 1 to 200 characters");
        assert_eq!(error.into_response().status(), 422);
    }
}
