//! The history query (`GET /rooms/:room/history?since=N&limit=M&before=N`), checked at the edge and
//! forwarded to the room in a form the edge writes itself.

use super::query;
use super::refusal::Refusal;
use serde::{Deserialize, Serialize};

/// Which page of history a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Page {
    /// The oldest messages with a seq above this one.
    After(u64),
    /// The newest messages with a seq below this one.
    Before(u64),
    /// The newest messages.
    Latest,
}

/// A history read as the room gets it: the page and how many messages at most (the room clamps
/// `limit` to `HISTORY_PAGE_MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRead {
    pub page: Page,
    pub limit: u64,
}

/// The page size when the query gives no `limit`.
pub const DEFAULT_LIMIT: u64 = 100;

/// A history request's numbers, each a whole number of at most [`query::MAX_WHOLE`] (2^53 - 1). Past
/// that a value is not exact on the client, and past 2^63 - 1 it wrapped negative in the room's
/// SQLite query (a `since` of 2^63 read the whole history).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    pub since: Option<u64>,
    pub limit: Option<u64>,
    pub before: Option<u64>,
}

impl HistoryQuery {
    /// Parses the raw query; every occurrence of a known key must be valid (the last one counts).
    /// Other keys are ignored, as before.
    pub fn parse(raw: &str) -> Result<HistoryQuery, Refusal> {
        let mut q = HistoryQuery::default();
        for (key, value) in query::pairs(raw) {
            match key.as_ref() {
                "since" => q.since = Some(query::whole("since", &value)?),
                "limit" => q.limit = Some(query::whole("limit", &value)?),
                "before" => q.before = Some(query::whole("before", &value)?),
                _ => {}
            }
        }
        Ok(q)
    }

    /// The query the edge sends to the room: only what it checked, each key once.
    /// The read the query asks for: `since` (default 0) or `before`, not both.
    pub fn read(&self) -> Result<HistoryRead, Refusal> {
        let page = match (self.since, self.before) {
            (Some(_), Some(_)) => return Err(Refusal::bad_request("give since or before, not both")),
            (_, Some(before)) => Page::Before(before),
            (since, None) => Page::After(since.unwrap_or(0)),
        };
        Ok(HistoryRead { page, limit: self.limit.unwrap_or(DEFAULT_LIMIT) })
    }

    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        for (key, value) in [("since", self.since), ("limit", self.limit), ("before", self.before)] {
            if let Some(v) = value {
                parts.push(format!("{key}={v}"));
            }
        }
        parts.join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::super::query::MAX_WHOLE;
    use super::super::refusal::documented;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_rewrites() {
        let q = HistoryQuery::parse("since=5&limit=10&x=y").unwrap();
        assert_eq!(q, HistoryQuery { since: Some(5), limit: Some(10), before: None });
        assert_eq!(q.to_query(), "since=5&limit=10");
        assert_eq!(HistoryQuery::parse("before=9&since=1&since=2").unwrap().to_query(), "since=2&before=9");
        assert_eq!(HistoryQuery::parse("").unwrap().to_query(), "");
    }

    #[test]
    fn numbers_at_or_above_2_pow_53_are_refused() {
        for q in [
            "since=9223372036854775808",
            "since=9007199254740992",
            "limit=9007199254740992",
            "before=18446744073709551615",
            "since=-1",
            "since=1.5",
            "since=",
            "limit=abc",
            "since=1&since=9223372036854775808",
        ] {
            let r = HistoryQuery::parse(q).unwrap_err();
            assert_eq!((r.status(), r.kind.code().as_str()), (400, "bad_request"), "{q}");
        }
        assert_eq!(HistoryQuery::parse("since=9007199254740991").unwrap().since, Some(MAX_WHOLE));
    }

    #[test]
    fn since_or_before_not_both() {
        let read = |q: &str| HistoryQuery::parse(q).unwrap().read();
        assert_eq!(read("").unwrap(), HistoryRead { page: Page::After(0), limit: DEFAULT_LIMIT });
        assert_eq!(read("since=4&limit=2").unwrap(), HistoryRead { page: Page::After(4), limit: 2 });
        assert_eq!(read("before=9").unwrap(), HistoryRead { page: Page::Before(9), limit: DEFAULT_LIMIT });
        // The room refused this after being woken; the edge now answers it (docs/PROTOCOL.md).
        let r = read("since=1&before=9").unwrap_err();
        assert_eq!(r.status(), 400);
        assert!(documented::is_documented(&r));
    }

    proptest! {
        #[test]
        fn arbitrary_history_queries(raw in "[a-z=&0-9%+.-]{0,50}") {
            match HistoryQuery::parse(&raw) {
                Ok(q) => {
                    for v in [q.since, q.limit, q.before].into_iter().flatten() {
                        prop_assert!(v <= MAX_WHOLE);
                    }
                    prop_assert_eq!(HistoryQuery::parse(&q.to_query()).unwrap(), q);
                }
                Err(r) => prop_assert!(documented::is_documented(&r)),
            }
        }
    }
}
