//! Repositories: every SQL statement dave runs, as short named `const`s next
//! to the code that binds its parameters and reads its rows.
//!
//! Authorization lives here, in the statements themselves: every query on
//! user data carries the caller's user id (`WHERE id = $1 AND user_id = $2`),
//! so another user's row is simply not found, exactly like a missing one, and
//! no handler can forget the check. The hot paths are one statement each
//! (one round trip, no `BEGIN`): posting a message moves its conversation's
//! `updated_at` and checks ownership in the same statement, and listing a
//! conversation's messages checks ownership in the same statement as well.
//! Only a new prompt version needs a transaction (it must lock the prompt
//! before it reads the highest version number).
//!
//! Functions return [`pgkit::error::DbError`]; "no such row" is `None` (or
//! `false`), which the handler turns into its 404.

pub mod api_keys;
pub mod conversations;
pub mod knowledge;
pub mod messages;
pub mod prompts;

use pgkit::error::DbError;
use pgkit::repo::{col, Json, Row};

use crate::models::StoredJson;

/// A `jsonb` column holding an object (context, metadata).
fn json_object(row: &Row, name: &str) -> Result<StoredJson, DbError> {
    col::<Json<Box<serde_json::value::RawValue>>>(row, name).map(|Json(raw)| raw.into())
}

/// One page of rows: asks for `limit + 1` so the extra row tells whether
/// there is a next page without a second query.
pub fn fetch_size(limit: i64) -> i64 {
    limit + 1
}

/// Cuts the look-ahead row off; `true` when there was one (a next page).
pub fn split_page<T>(rows: &mut Vec<T>, limit: i64) -> bool {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        true
    } else {
        false
    }
}
