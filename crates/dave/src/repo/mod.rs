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
use pgkit::repo::{col, FromRow, Json, Row};
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

/// The most bytes of row content a page carries before it ends early.
///
/// A message can hold about 1 MiB (32,000 characters of content, 100
/// resources and 100 suggestions of 2,000 characters, 64 KiB of metadata),
/// so 100 of them would be ~100 MiB of rows and as much again as JSON: three
/// such requests exceed a 512 MiB instance. A page therefore ends at
/// whichever comes first, `limit` rows or this many bytes (the row that
/// crosses the budget is included, so every page makes progress), and its
/// `next_cursor` lets the client carry on. The budget is applied in SQL, on
/// the rows' sizes, so rows beyond it are never sent by the server.
pub const PAGE_BYTES: i64 = 1024 * 1024;

/// The shape of a byte-budgeted list statement: the page's query (at most
/// `limit + 1` rows, each with a `size`) inside a running sum, keeping the
/// rows that start before the budget, and counting the rows before the cut
/// (`page_rows`) so a cut is told from the end:
///
/// ```sql
/// SELECT cols, page_rows FROM (
///     SELECT *, sum(size) OVER (ORDER BY k ROWS UNBOUNDED PRECEDING) - size AS before,
///            count(*) OVER () AS page_rows
///     FROM (SELECT cols, <size> AS size FROM t WHERE ... ORDER BY k LIMIT $n) sized
/// ) budgeted WHERE before < $budget ORDER BY k
/// ```
///
/// The sum needs only the sizes of at most `limit + 1` rows; the rows past
/// the budget are never sent whole.
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
    /// The page from the rows of a byte-budgeted query (see [`PAGE_BYTES`]) run with
    /// `fetch_size(limit)`; `page_rows` is its column (the same on every row).
    pub fn from_rows(mut items: Vec<T>, page_rows: Option<i64>, limit: i64) -> Page<T> {
        let fetched = usize::try_from(page_rows.unwrap_or(0)).unwrap_or(0);
        let cut_by_bytes = fetched > items.len();
        let more = split_page(&mut items, limit) || cut_by_bytes;
        Page { items, more }
    }
}

/// A row of a byte-budgeted query: the item and `page_rows`.
pub struct Budgeted<T> {
    pub item: T,
    pub page_rows: i64,
}

impl<T: FromRow> FromRow for Budgeted<T> {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Budgeted {
            item: T::from_row(row)?,
            page_rows: col(row, "page_rows")?,
        })
    }
}

/// [`Page::from_rows`] for [`Budgeted`] rows.
pub fn page<T>(rows: Vec<Budgeted<T>>, limit: i64) -> Page<T> {
    let page_rows = rows.first().map(|r| r.page_rows);
    Page::from_rows(rows.into_iter().map(|r| r.item).collect(), page_rows, limit)
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
        let full = Page::from_rows(vec![1, 2, 3], Some(3), 2);
        assert_eq!((full.items, full.more), (vec![1, 2], true));
        let last = Page::from_rows(vec![1, 2], Some(2), 2);
        assert_eq!((last.items, last.more), (vec![1, 2], false));
        let cut = Page::from_rows(vec![1], Some(3), 2);
        assert_eq!((cut.items, cut.more), (vec![1], true));
        let empty = Page::<i32>::from_rows(vec![], None, 2);
        assert!(!empty.more);
    }
}
