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
//!
//! Each module owns the types of its table: the rows it returns (with their
//! JSON and OpenAPI shape, which [`crate::api`] answers with as they are) and
//! the inputs it writes, which the API's request types `validate()` into.
//! Nothing here uses [`crate::api`]: the arrows go api ──▶ repo only.

pub mod api_keys;
pub mod conversations;
pub mod knowledge;
pub mod messages;
pub mod prompts;

use chrono::{DateTime, Utc};
use pgkit::error::DbError;
use pgkit::repo::{col, Json, Row, Within};
use uuid::Uuid;

use crate::json::StoredJson;

/// The position a page ended at: the last row's sort timestamp and id. A
/// list statement's next page starts strictly after it; the API hands it to
/// clients as a signed cursor (`crate::cursor::CursorCodec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// A `jsonb` column holding an object (context, metadata).
fn json_object(row: &Row, name: &str) -> Result<StoredJson, DbError> {
    col::<Json<Box<serde_json::value::RawValue>>>(row, name).map(|Json(raw)| raw.into())
}

/// The most bytes of rows a page carries before it ends early.
///
/// A message can hold about 1 MiB (32,000 characters of content, 100
/// resources and 100 suggestions of 2,000 characters, 64 KiB of metadata),
/// so 100 of them would be ~100 MiB of rows and as much again as JSON: three
/// such requests exceed a 512 MiB instance. A page therefore ends at
/// whichever comes first, `limit` rows or this many bytes (the row that
/// crosses the budget is included, so every page makes progress), and its
/// `next_cursor` lets the client carry on.
///
/// The budget is kept as the rows arrive ([`pgkit::repo::Within`]): the
/// list statements stay the plain keyset `ORDER BY ... LIMIT` that the
/// index serves, and the rows past the budget are read off the connection
/// and dropped, never held. (Until issue 13 it was a running sum in SQL;
/// its two window functions over the wide rows made PostgreSQL take 1.7
/// times as long over every page, for pages that almost never reach it.)
/// The knowledge search keeps its sum in SQL: see [`knowledge`].
pub const PAGE_BYTES: usize = 1024 * 1024;

/// One page of rows: asks for `limit + 1` so the extra row tells whether
/// there is a next page without a second query.
pub fn fetch_size(limit: i64) -> i64 {
    limit + 1
}

/// A page of a list, cut at `limit` rows or [`PAGE_BYTES`].
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Whether rows follow (the look-ahead row was there, or the byte
    /// budget ended the page early).
    pub more: bool,
}

impl<T> Page<T> {
    /// The page from the rows of a statement run with `fetch_size(limit)`
    /// and kept within [`PAGE_BYTES`].
    pub fn from_rows(rows: Within<T>, limit: i64) -> Page<T> {
        let Within {
            rows: mut items,
            cut,
        } = rows;
        let more = split_page(&mut items, limit) || cut;
        Page { items, more }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_has_more_after_the_look_ahead_row_or_a_byte_cut() {
        let within = |rows: Vec<i32>, cut| Within { rows, cut };
        let full = Page::from_rows(within(vec![1, 2, 3], false), 2);
        assert_eq!((full.items, full.more), (vec![1, 2], true));
        let last = Page::from_rows(within(vec![1, 2], false), 2);
        assert_eq!((last.items, last.more), (vec![1, 2], false));
        let cut = Page::from_rows(within(vec![1], true), 2);
        assert_eq!((cut.items, cut.more), (vec![1], true));
        let empty = Page::from_rows(within(vec![], false), 2);
        assert!(!empty.more);
    }
}
