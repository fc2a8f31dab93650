//! The building blocks of the OpenAPI schemas for the request fields whose
//! rules utoipa's attributes cannot state (each field's schema is next to its
//! request type, in the resource's module): "no NUL anywhere" (PostgreSQL text and jsonb refuse
//! `\u0000`), "not only whitespace" (the trimmed fields), limits on the
//! items of a list, and NUL-free JSON objects at any depth. The document
//! must declare every rule the service enforces (DESIGN §3), or clients and
//! fuzzers (Schemathesis, docs/testing.md) send schema-valid requests that
//! the service refuses with 422.
//!
//! The patterns are written so that ECMA-262, Python `re` and Rust agree on
//! them: the whitespace class is spelled out as exactly what `str::trim`
//! removes (Unicode `White_Space`), since `\s` means something else in each.

use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;

/// Any text without the NUL character.
pub const NO_NUL: &str = r"^[^\u0000]*$";

/// Text without NUL that is not only whitespace: at least one character
/// that `str::trim` keeps.
pub const NOT_BLANK: &str = concat!(
    r"^[^\u0000]*",
    r"[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    r"[^\u0000]*$"
);

/// The component names of the JSON object and value schemas.
pub const JSON_OBJECT: &str = "JsonObject";
pub const JSON_VALUE: &str = "JsonValue";

/// A string of `min..=max` characters matching `pattern`; `null` too when
/// `nullable` (a field where `null` means absent).
pub(crate) fn text(
    min: usize,
    max: usize,
    pattern: &str,
    nullable: bool,
    description: &str,
) -> Schema {
    let schema_type = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

/// An array of at most `max_items` values of `item`.
pub(crate) fn list(max_items: usize, item: Schema, description: &str) -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(item))
        .max_items(Some(max_items))
        .description(Some(description))
        .into()
}

/// A `context`/`metadata` field that must be an object when present.
pub fn json_object() -> RefOr<Schema> {
    Ref::from_schema_name(JSON_OBJECT).into()
}

/// A `context`/`metadata` field where `null` means absent.
pub fn json_object_or_null() -> Schema {
    OneOfBuilder::new()
        .item(Ref::from_schema_name(JSON_OBJECT))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// The components [`json_object`] refers to: an object, at most 64 KiB as
/// compact JSON (not expressible here), whose keys and strings at every
/// depth are free of NUL (jsonb refuses `\u0000`).
pub fn json_components() -> Vec<(String, RefOr<Schema>)> {
    let object: Schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NO_NUL)),
        ))
        .additional_properties(Some(Ref::from_schema_name(JSON_VALUE)))
        .description(Some(
            "A JSON object of at most 64 KiB as compact JSON; no key or string at any depth \
             contains NUL (\\u0000)",
        ))
        .into();
    let value: Schema = AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([
            Type::Null,
            Type::Boolean,
            Type::Number,
        ])))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NO_NUL)),
        )
        .item(ArrayBuilder::new().items(Ref::from_schema_name(JSON_VALUE)))
        .item(Ref::from_schema_name(JSON_OBJECT))
        .description(Some("Any JSON value without NUL in its strings and keys"))
        .into();
    vec![
        (JSON_OBJECT.to_owned(), object.into()),
        (JSON_VALUE.to_owned(), value.into()),
    ]
}

#[cfg(test)]
mod tests {
    /// The characters of a regex class body as written in [`super::NOT_BLANK`]:
    /// `\t`, `\r`, `\uXXXX`, literal characters, and `a-b` ranges of those.
    fn class_chars(body: &str) -> Vec<char> {
        let mut singles = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (c, after) = if let Some(after) = rest.strip_prefix(r"\u") {
                let code = u32::from_str_radix(&after[..4], 16).unwrap();
                (char::from_u32(code).unwrap(), &after[4..])
            } else if let Some(after) = rest.strip_prefix(r"\t") {
                ('\t', after)
            } else if let Some(after) = rest.strip_prefix(r"\r") {
                ('\r', after)
            } else {
                let c = rest.chars().next().unwrap();
                (c, &rest[c.len_utf8()..])
            };
            singles.push(c);
            rest = after;
            if let Some(after) = rest.strip_prefix('-') {
                rest = after;
                singles.push('-');
            }
        }
        let mut chars = Vec::new();
        let mut i = 0;
        while i < singles.len() {
            if singles.get(i + 1) == Some(&'-') {
                chars.extend(singles[i]..=singles[i + 2]);
                i += 3;
            } else {
                chars.push(singles[i]);
                i += 1;
            }
        }
        chars
    }

    /// The class between the NUL-free runs must refuse exactly NUL and the
    /// characters `str::trim` removes, or the schema and the service
    /// disagree about "not only whitespace".
    #[test]
    fn the_not_blank_class_is_nul_and_what_trim_removes() {
        let start = super::NOT_BLANK.find("]*[^").unwrap() + 4;
        let end = start + super::NOT_BLANK[start..].find(']').unwrap();
        let mut refused = class_chars(&super::NOT_BLANK[start..end]);
        refused.sort();
        let mut expected: Vec<char> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| *c == '\0' || c.is_whitespace())
            .collect();
        expected.sort();
        assert_eq!(refused, expected);
    }
}
