//! Every list in the API pages the same way: `?limit=` (default 50, at most 200) and an
//! opaque `?cursor=`, answered with `{items, next_cursor}`. The cursor is the position of
//! the last item returned, hex-encoded so clients treat it as opaque.

use serde::Serialize;

/// A validated page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const DEFAULT: u32 = 50;
    pub const MAX: u32 = 200;

    /// `None` means the default; anything outside `1..=MAX` is refused.
    pub fn parse(requested: Option<i64>) -> Result<Self, String> {
        match requested {
            None => Ok(Self(Self::DEFAULT)),
            Some(value) if (1..=Self::MAX as i64).contains(&value) => Ok(Self(value as u32)),
            Some(_) => Err(format!("limit must be between 1 and {}", Self::MAX)),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// One more than the limit: fetching it tells whether another page exists.
    pub fn probe(self) -> i64 {
        self.0 as i64 + 1
    }
}

/// An opaque position in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    pub fn from_position(position: &str) -> Self {
        Self(crate::id::to_hex(position.as_bytes()))
    }

    /// The position a client sent back; `None` when it is not a cursor we made.
    pub fn parse_position(opaque: &str) -> Option<String> {
        if opaque.len() > 1024 {
            return None;
        }
        String::from_utf8(crate::id::from_hex(opaque)?).ok()
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// One page of a list, as every list endpoint returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with [`PageLimit::probe`]: the extra row, when
    /// present, is dropped and means there is a next page after the last kept item.
    pub fn from_probe(mut rows: Vec<T>, limit: PageLimit, position_of: impl Fn(&T) -> String) -> Self {
        let has_more = rows.len() > limit.get() as usize;
        rows.truncate(limit.get() as usize);
        let next_cursor = if has_more {
            rows.last().map(|last| Cursor::from_position(&position_of(last)).into_string())
        } else {
            None
        };
        Self { items: rows, next_cursor }
    }

    pub fn map<U>(self, convert: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(convert).collect(), next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_bounds() {
        assert_eq!(PageLimit::parse(None).map(PageLimit::get), Ok(50));
        assert_eq!(PageLimit::parse(Some(200)).map(PageLimit::get), Ok(200));
        assert!(PageLimit::parse(Some(0)).is_err());
        assert!(PageLimit::parse(Some(201)).is_err());
        assert!(PageLimit::parse(Some(-5)).is_err());
    }

    #[test]
    fn a_probe_row_becomes_a_cursor() {
        let limit = PageLimit::parse(Some(2)).expect("valid");
        let page = Page::from_probe(vec!["a", "b", "c"], limit, |s| s.to_string());
        assert_eq!(page.items, vec!["a", "b"]);
        let cursor = page.next_cursor.expect("a next page");
        assert_eq!(Cursor::parse_position(&cursor).as_deref(), Some("b"));
        let last = Page::from_probe(vec!["a"], limit, |s| s.to_string());
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn foreign_cursors_are_refused() {
        assert_eq!(Cursor::parse_position("zz"), None);
        assert_eq!(Cursor::parse_position("ff"), None);
    }
}
