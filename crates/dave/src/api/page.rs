//! Paging of the lists: the `?limit=&cursor=` query ([`PageQuery`], the
//! limit's bounds), and the turn from a client's cursor to a position and
//! from a page to its `next_cursor` (`decode_cursor`, `page_cursor`). The
//! cursors themselves are signed and checked by [`CursorCodec`]
//! ([`crate::cursor`], re-exported here), which [`AppState`] holds.

use serde::Deserialize;
use utoipa::IntoParams;

pub use crate::cursor::{CursorCodec, CursorError, Listing};
use crate::error::ApiError;
pub use crate::repo::Cursor;
use crate::repo::Page;
use crate::state::AppState;
use crate::validate::FieldError;

/// `limit` bounds and default (DESIGN §3).
pub const MIN_LIMIT: i64 = 1;
pub const MAX_LIMIT: i64 = 100;
pub const DEFAULT_LIMIT: i64 = 50;

/// `?limit=&cursor=` of the paginated lists. Unknown query parameters are
/// ignored (proxies and caches add their own); only bodies are strict.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 50); a page holds fewer when its
    /// items reach 1 MiB, with a `next_cursor` to carry on.
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; omit (or leave empty) for the
    /// first page. Signed by the service: a cursor it did not issue answers 422.
    #[param(pattern = "^([A-Za-z0-9_-]{55})?$")]
    pub cursor: Option<String>,
}

/// `limit` checked against 1..=100, default 50.
pub fn page_limit(limit: Option<i64>) -> Result<i64, FieldError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (MIN_LIMIT..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(FieldError::new(
            "limit",
            format!("must be {MIN_LIMIT} to {MAX_LIMIT}"),
        )),
    }
}

impl PageQuery {
    /// The page size to use.
    pub fn limit(&self) -> Result<i64, FieldError> {
        page_limit(self.limit)
    }
}

/// The position a client's `cursor` names, checked against its listing; an
/// absent or empty cursor is the first page.
pub(crate) fn decode_cursor(
    state: &AppState,
    listing: Listing,
    text: Option<&str>,
) -> Result<Option<Cursor>, ApiError> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => Ok(Some(state.cursors.decode(listing, text)?)),
    }
}

/// The cursor of the page's last row when more rows follow.
pub(crate) fn page_cursor<T>(
    state: &AppState,
    listing: Listing,
    page: &Page<T>,
    position: impl Fn(&T) -> Cursor,
) -> Option<String> {
    if !page.more {
        return None;
    }
    let last = page.items.last()?;
    Some(state.cursors.encode(listing, position(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds() {
        assert_eq!(page_limit(None), Ok(50));
        assert_eq!(page_limit(Some(1)), Ok(1));
        assert_eq!(page_limit(Some(100)), Ok(100));
        for bad in [0, 101, -1, i64::MAX] {
            assert_eq!(
                crate::validate::test_support::field_of(page_limit(Some(bad))),
                "limit",
                "{bad}"
            );
        }
        let error = page_limit(Some(0)).unwrap_err();
        assert_eq!(error.to_string(), "limit: must be 1 to 100");
    }
}
