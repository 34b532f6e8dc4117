//! The compact form the worker's session and room objects exchange the relay's messages in
//! ([`RelayRequest`], [`RelayReply`], [`FeedCall`], [`FeedReply`]): no client ever sees it.
//!
//! Why not their JSON (the serde derives stay, for tests and debugging): serde's derived
//! deserializers are large (every struct reads both a map and a sequence, every enum its variant
//! names), and the relay's types added about 25 KB of them to the Worker's wasm. This form is
//! read and written by one small [`Reader`] and [`put_num`]/[`put_str`]:
//!
//! - a number (u64, and bool as 0/1) is its decimal digits followed by `,`;
//! - a text is its length in bytes as a number, then its bytes;
//! - an option is 0, or 1 and the value; a list is its length, then its items;
//! - an enum is its variant's number (in declaration order), then its fields; a struct is its
//!   fields in declaration order.
//!
//! Reading never panics: anything out of shape (a length past the end or off a character's
//! boundary, a number that overflows, bytes left over) is `None`.

use super::{
    FeedCall, FeedMessage, FeedPage, FeedReply, RelayIdentity, RelayOp, RelayReply, RelayRequest, RelayResult, WireAnswer, WireExtra,
};
use crate::compact::CompactJson;
use crate::token::Rights;

fn put_num(out: &mut String, n: u64) {
    use core::fmt::Write;
    let _ = write!(out, "{n},");
}

fn put_str(out: &mut String, s: &str) {
    put_num(out, s.len() as u64);
    out.push_str(s);
}

fn put_bool(out: &mut String, b: bool) {
    put_num(out, u64::from(b));
}

/// Reads the compact form from the start of a text.
struct Reader<'a> {
    rest: &'a str,
}

impl<'a> Reader<'a> {
    fn num(&mut self) -> Option<u64> {
        let end = self.rest.find(',')?;
        let digits = &self.rest[..end];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = digits.parse().ok()?;
        self.rest = &self.rest[end + 1..];
        Some(n)
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.num()?).ok()?;
        let s = self.rest.get(..len)?;
        self.rest = self.rest.get(len..)?;
        Some(s)
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    fn bool(&mut self) -> Option<bool> {
        match self.num()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// A list's items, read by `item`; its length is checked against what is left, so a wrong
    /// length cannot reserve much.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let n = usize::try_from(self.num()?).ok()?;
        // Every item takes at least two bytes ("0,").
        if n > self.rest.len() / 2 {
            return None;
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(item(self)?);
        }
        Some(items)
    }

    /// The whole text read, or nothing.
    fn end<T>(self, value: Option<T>) -> Option<T> {
        if self.rest.is_empty() {
            value
        } else {
            None
        }
    }
}

fn put_page(out: &mut String, page: &FeedPage) {
    let FeedPage { epoch, end, messages } = page;
    put_str(out, epoch);
    match end {
        Some(end) => {
            put_num(out, 1);
            put_num(out, *end);
        }
        None => put_num(out, 0),
    }
    put_num(out, messages.len() as u64);
    for FeedMessage { seq, from, text } in messages {
        put_num(out, *seq);
        put_str(out, from);
        put_str(out, text);
    }
}

fn take_page(r: &mut Reader<'_>) -> Option<FeedPage> {
    let epoch = r.string()?;
    let end = if r.bool()? { Some(r.num()?) } else { None };
    let messages = r.list(|r| Some(FeedMessage { seq: r.num()?, from: r.string()?, text: r.string()? }))?;
    Some(FeedPage { epoch, end, messages })
}

impl RelayRequest {
    /// The request in the compact form (module docs).
    pub fn encode(&self) -> String {
        let RelayRequest { session, ops } = self;
        let mut out = String::new();
        put_str(&mut out, session);
        put_num(&mut out, ops.len() as u64);
        for op in ops {
            match op {
                RelayOp::Open { device, identity } => {
                    let RelayIdentity { cid, user, meta, echo, rights, expires } = identity;
                    // The input right is not carried: a session's rooms take no terminal input
                    // (a terminal's viewers connect to its room; docs/PROTOCOL.md, *input*).
                    let Rights { subscribe, publish, presence, input: _ } = rights;
                    put_num(&mut out, 0);
                    put_num(&mut out, *device);
                    put_str(&mut out, cid);
                    put_str(&mut out, user);
                    match meta {
                        Some(meta) => {
                            put_num(&mut out, 1);
                            put_str(&mut out, meta.get());
                        }
                        None => put_num(&mut out, 0),
                    }
                    put_bool(&mut out, *echo);
                    put_bool(&mut out, *subscribe);
                    put_bool(&mut out, *publish);
                    put_bool(&mut out, *presence);
                    put_num(&mut out, *expires);
                }
                RelayOp::Text { device, text } => {
                    put_num(&mut out, 1);
                    put_num(&mut out, *device);
                    put_str(&mut out, text);
                }
                RelayOp::Close { device } => {
                    put_num(&mut out, 2);
                    put_num(&mut out, *device);
                }
                RelayOp::Read { epoch, after, limit } => {
                    put_num(&mut out, 3);
                    put_str(&mut out, epoch);
                    put_num(&mut out, *after);
                    put_num(&mut out, *limit as u64);
                }
                RelayOp::Watch { on } => {
                    put_num(&mut out, 4);
                    put_bool(&mut out, *on);
                }
            }
        }
        out
    }

    /// Reads [`RelayRequest::encode`]'s text; `None` for anything else.
    pub fn decode(text: &str) -> Option<RelayRequest> {
        let mut r = Reader { rest: text };
        let request = (|| {
            let session = r.string()?;
            let ops = r.list(|r| {
                Some(match r.num()? {
                    0 => {
                        let device = r.num()?;
                        let cid = r.string()?;
                        let user = r.string()?;
                        let meta = if r.bool()? { Some(CompactJson::parse_owned(r.string()?).ok()?) } else { None };
                        let echo = r.bool()?;
                        let rights = Rights { subscribe: r.bool()?, publish: r.bool()?, presence: r.bool()?, input: false };
                        let identity = RelayIdentity { cid, user, meta, echo, rights, expires: r.num()? };
                        RelayOp::Open { device, identity }
                    }
                    1 => RelayOp::Text { device: r.num()?, text: r.string()? },
                    2 => RelayOp::Close { device: r.num()? },
                    3 => RelayOp::Read { epoch: r.string()?, after: r.num()?, limit: usize::try_from(r.num()?).ok()? },
                    4 => RelayOp::Watch { on: r.bool()? },
                    _ => return None,
                })
            })?;
            Some(RelayRequest { session, ops })
        })();
        r.end(request)
    }
}

impl RelayReply {
    /// The reply in the compact form (module docs).
    pub fn encode(&self) -> String {
        let RelayReply { results } = self;
        let mut out = String::new();
        put_num(&mut out, results.len() as u64);
        for result in results {
            match result {
                RelayResult::Done => put_num(&mut out, 0),
                RelayResult::Refused { code, reason } => {
                    put_num(&mut out, 1);
                    put_num(&mut out, u64::from(*code));
                    put_str(&mut out, reason);
                }
                RelayResult::Unknown => put_num(&mut out, 2),
                RelayResult::Page(page) => {
                    put_num(&mut out, 3);
                    put_page(&mut out, page);
                }
            }
        }
        out
    }

    /// Reads [`RelayReply::encode`]'s text; `None` for anything else.
    pub fn decode(text: &str) -> Option<RelayReply> {
        let mut r = Reader { rest: text };
        let results = r.list(|r| {
            Some(match r.num()? {
                0 => RelayResult::Done,
                1 => RelayResult::Refused { code: u16::try_from(r.num()?).ok()?, reason: r.string()? },
                2 => RelayResult::Unknown,
                3 => RelayResult::Page(take_page(r)?),
                _ => return None,
            })
        });
        r.end(results.map(|results| RelayReply { results }))
    }
}

impl FeedCall {
    /// The call in the compact form (module docs).
    pub fn encode(&self) -> String {
        let FeedCall { room, page, extras, watch } = self;
        let mut out = String::new();
        put_str(&mut out, room);
        put_bool(&mut out, *watch);
        put_page(&mut out, page);
        put_num(&mut out, extras.len() as u64);
        for WireExtra { n, to, text } in extras {
            put_num(&mut out, *n);
            put_num(&mut out, *to);
            put_str(&mut out, text);
        }
        out
    }

    /// Reads [`FeedCall::encode`]'s text; `None` for anything else.
    pub fn decode(text: &str) -> Option<FeedCall> {
        let mut r = Reader { rest: text };
        let call = (|| {
            let room = r.string()?;
            let watch = r.bool()?;
            let page = take_page(&mut r)?;
            let extras = r.list(|r| Some(WireExtra { n: r.num()?, to: r.num()?, text: r.string()? }))?;
            Some(FeedCall { room, page, extras, watch })
        })();
        r.end(call)
    }
}

impl FeedReply {
    /// The reply in the compact form (module docs).
    pub fn encode(&self) -> String {
        let FeedReply { answer, devices } = self;
        let mut out = String::new();
        match answer {
            Some(WireAnswer { epoch, seq, extras }) => {
                put_num(&mut out, 1);
                put_str(&mut out, epoch);
                put_num(&mut out, *seq);
                put_num(&mut out, *extras);
            }
            None => put_num(&mut out, 0),
        }
        put_num(&mut out, devices.len() as u64);
        for device in devices {
            put_num(&mut out, *device);
        }
        out
    }

    /// Reads [`FeedReply::encode`]'s text; `None` for anything else.
    pub fn decode(text: &str) -> Option<FeedReply> {
        let mut r = Reader { rest: text };
        let reply = (|| {
            let answer = if r.bool()? { Some(WireAnswer { epoch: r.string()?, seq: r.num()?, extras: r.num()? }) } else { None };
            let devices = r.list(Reader::num)?;
            Some(FeedReply { answer, devices })
        })();
        r.end(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z0-9,:]{0,12}", any::<String>()]
    }

    fn page() -> impl Strategy<Value = FeedPage> {
        (text(), proptest::option::of(any::<u64>()), proptest::collection::vec((any::<u64>(), text(), text()), 0..4)).prop_map(
            |(epoch, end, messages)| FeedPage {
                epoch,
                end,
                messages: messages.into_iter().map(|(seq, from, text)| FeedMessage { seq, from, text }).collect(),
            },
        )
    }

    fn op() -> impl Strategy<Value = RelayOp> {
        let meta = prop_oneof![Just(None), Just(Some(r#"{"a":[1,"x"]}"#)), Just(Some("null")), Just(Some("\"é\""))];
        prop_oneof![
            (any::<u64>(), text(), text(), meta, any::<[bool; 4]>(), any::<u64>()).prop_map(|(device, cid, user, meta, b, expires)| {
                let meta = meta.map(|m| CompactJson::parse(m).unwrap());
                let rights = Rights { subscribe: b[1], publish: b[2], presence: b[3], input: false };
                RelayOp::Open { device, identity: RelayIdentity { cid, user, meta, echo: b[0], rights, expires } }
            }),
            (any::<u64>(), text()).prop_map(|(device, text)| RelayOp::Text { device, text }),
            any::<u64>().prop_map(|device| RelayOp::Close { device }),
            (text(), any::<u64>(), any::<usize>()).prop_map(|(epoch, after, limit)| RelayOp::Read { epoch, after, limit }),
            any::<bool>().prop_map(|on| RelayOp::Watch { on }),
        ]
    }

    fn result() -> impl Strategy<Value = RelayResult> {
        prop_oneof![
            Just(RelayResult::Done),
            (any::<u16>(), text()).prop_map(|(code, reason)| RelayResult::Refused { code, reason }),
            Just(RelayResult::Unknown),
            page().prop_map(RelayResult::Page),
        ]
    }

    /// Every strict prefix, and the text with a byte more, is refused (never a panic).
    fn refuses_cut_and_extended<T>(wire: &str, decode: impl Fn(&str) -> Option<T>) {
        for cut in 0..wire.len() {
            if let Some(prefix) = wire.get(..cut) {
                assert!(decode(prefix).is_none(), "prefix {prefix:?} of {wire:?} read");
            }
        }
        assert!(decode(&format!("{wire}0")).is_none());
    }

    proptest! {
        #[test]
        fn requests_round_trip(session in text(), ops in proptest::collection::vec(op(), 0..4)) {
            let request = RelayRequest { session, ops };
            let wire = request.encode();
            prop_assert_eq!(RelayRequest::decode(&wire), Some(request));
            refuses_cut_and_extended(&wire, RelayRequest::decode);
        }

        #[test]
        fn replies_round_trip(results in proptest::collection::vec(result(), 0..4)) {
            let reply = RelayReply { results };
            let wire = reply.encode();
            prop_assert_eq!(RelayReply::decode(&wire), Some(reply));
            refuses_cut_and_extended(&wire, RelayReply::decode);
        }

        #[test]
        fn feed_calls_round_trip(room in text(), page in page(), extras in proptest::collection::vec((any::<u64>(), any::<u64>(), text()), 0..4), watch in any::<bool>()) {
            let extras = extras.into_iter().map(|(n, to, text)| WireExtra { n, to, text }).collect();
            let call = FeedCall { room, page, extras, watch };
            let wire = call.encode();
            prop_assert_eq!(FeedCall::decode(&wire), Some(call));
            refuses_cut_and_extended(&wire, FeedCall::decode);
        }

        #[test]
        fn feed_replies_round_trip(answer in proptest::option::of((text(), any::<u64>(), any::<u64>())), devices in proptest::collection::vec(any::<u64>(), 0..5)) {
            let answer = answer.map(|(epoch, seq, extras)| WireAnswer { epoch, seq, extras });
            let reply = FeedReply { answer, devices };
            let wire = reply.encode();
            prop_assert_eq!(FeedReply::decode(&wire), Some(reply));
            refuses_cut_and_extended(&wire, FeedReply::decode);
        }

        #[test]
        fn any_text_is_read_or_refused(text in any::<String>()) {
            let _ = (RelayRequest::decode(&text), RelayReply::decode(&text), FeedCall::decode(&text), FeedReply::decode(&text));
        }
    }

    #[test]
    fn out_of_shape_texts_are_refused() {
        assert_eq!(FeedReply::decode("0,0,"), Some(FeedReply { answer: None, devices: vec![] }));
        for bad in ["", "0,", "2,0,", "0,1,", "0,1,x,", "0,18446744073709551616,", "0,-1,", "0,+1,", "1,9,ab,1,1,0,"] {
            assert_eq!(FeedReply::decode(bad), None, "{bad:?}");
        }
        // A length that ends inside a character.
        assert_eq!(RelayRequest::decode("1,é0,"), None);
        // A code past u16, a meta that is not JSON, an unknown variant.
        assert_eq!(RelayReply::decode("1,1,70000,0,"), None);
        assert_eq!(RelayRequest::decode("0,1,0,1,1,a1,b1,3,{x}1,1,1,1,5,"), None);
        assert_eq!(RelayRequest::decode("0,1,4,"), None);
    }
}
