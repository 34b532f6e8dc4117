//! `POST /rooms/:room/messages`: the body, parsed and checked against the room's limits at the
//! edge, so a bad batch is refused without waking the room. The room gets the batch in this
//! form ([`super::call::RoomCall::Publish`]) and only decides what needs its state: bans, rates,
//! idempotency, storage.

use super::refusal::{Refusal, RefusalKind};
use crate::compact::CompactJson;
use crate::config::RoomConfig;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One message of an HTTP publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishItem {
    pub data: CompactJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A publish body that passed every check the edge can make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishBatch {
    pub items: Vec<PublishItem>,
    /// The body was one object (answered with one result), not an array.
    pub single: bool,
}

const SHAPE: &str = "body must be {\"data\": …, \"id\"?: string} or an array of them";

impl PublishBatch {
    /// Parses a body (one `{"data", "id"?}` object, or an array of them) and checks it against
    /// the room's limits: count, ids, each message's size, the batch's size. Items must be
    /// objects: serde would otherwise read an array such as `[1,"id"]` positionally.
    pub fn parse(body: &str, config: &RoomConfig) -> Result<PublishBatch, Refusal> {
        if body.len() > config.max_publish_body() {
            return Err(Refusal::new(RefusalKind::TooLarge, "request body is larger than a batch may be"));
        }
        let item = |raw: &RawValue| -> Result<PublishItem, Refusal> {
            if !raw.get().starts_with('{') {
                return Err(Refusal::bad_request(format!("{SHAPE}: every message must be an object")));
            }
            serde_json::from_str::<PublishItem>(raw.get()).map_err(|e| Refusal::bad_request(format!("{SHAPE}: {e}")))
        };
        let value: &RawValue = serde_json::from_str(body).map_err(|e| Refusal::bad_request(format!("{SHAPE}: {e}")))?;
        let (items, single) = if value.get().starts_with('[') {
            let raws: Vec<&RawValue> = serde_json::from_str(value.get()).map_err(|e| Refusal::bad_request(format!("{SHAPE}: {e}")))?;
            (raws.into_iter().map(item).collect::<Result<Vec<_>, _>>()?, false)
        } else {
            (vec![item(value)?], true)
        };
        let batch = PublishBatch { items, single };
        batch.check(config)?;
        Ok(batch)
    }

    /// The room's limits on a batch, checked as a whole before anything is stored.
    fn check(&self, config: &RoomConfig) -> Result<(), Refusal> {
        if self.items.is_empty() {
            return Err(Refusal::bad_request("a batch must hold at least one message"));
        }
        if self.items.len() > config.publish_batch_max {
            return Err(Refusal::bad_request(format!("a batch holds at most {} messages", config.publish_batch_max)));
        }
        for (i, item) in self.items.iter().enumerate() {
            if item.id.as_ref().is_some_and(|id| id.is_empty() || id.len() > config.message_id_max) {
                return Err(Refusal::bad_request(format!("message {i}: id must be a non-empty string within the id length limit")));
            }
            if item.data.get().len() > config.max_frame_bytes {
                return Err(Refusal::new(RefusalKind::TooLarge, format!("message {i}: data is larger than the frame limit")));
            }
        }
        if self.bytes() > config.publish_batch_max_bytes {
            let max = config.publish_batch_max_bytes;
            return Err(Refusal::new(
                RefusalKind::TooLarge,
                format!("the batch's data is larger than PUBLISH_BATCH_MAX_BYTES ({max} bytes)"),
            ));
        }
        Ok(())
    }

    /// The bytes of data in the batch (what the publish rate's byte budget counts).
    pub fn bytes(&self) -> usize {
        self.items.iter().map(|i| i.data.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::refusal::documented;
    use super::*;
    use proptest::prelude::*;

    fn config() -> RoomConfig {
        RoomConfig::default()
    }

    #[test]
    fn one_object_or_an_array_of_them() {
        let one = PublishBatch::parse(r#"{"data":{"a":[1, 2]},"id":"x"}"#, &config()).unwrap();
        assert!(one.single);
        assert_eq!(one.items[0].data.get(), r#"{"a":[1,2]}"#);
        assert_eq!(one.items[0].id.as_deref(), Some("x"));
        let many = PublishBatch::parse(r#"[{"data":1},{"data":null,"id":"n"}]"#, &config()).unwrap();
        assert!(!many.single);
        assert_eq!(many.items.len(), 2);
        assert_eq!(many.items[1].data.get(), "null");
    }

    #[test]
    fn bad_bodies_are_refused_with_documented_answers() {
        let c = RoomConfig { publish_batch_max: 2, max_frame_bytes: 10, publish_batch_max_bytes: 15, ..config() };
        for (body, status) in [
            ("", 400),
            ("null", 400),
            ("[]", 400),
            (r#"[[1,"id"]]"#, 400),
            (r#"{"id":"x"}"#, 400),
            (r#"{"data":1,"id":""}"#, 400),
            (r#"{"data":1,"id":5}"#, 400),
            (r#"[{"data":1},{"data":2},{"data":3}]"#, 400),
            (r#"{"data":"0123456789"}"#, 413),
            (r#"[{"data":"012345"},{"data":"0123456"}]"#, 413),
        ] {
            let r = PublishBatch::parse(body, &c).unwrap_err();
            assert_eq!(r.status(), status, "{body}: {}", r.message);
            assert!(documented::is_documented(&r));
        }
        let id_max = "i".repeat(config().message_id_max + 1);
        assert_eq!(PublishBatch::parse(&format!(r#"{{"data":1,"id":"{id_max}"}}"#), &config()).unwrap_err().status(), 400);
    }

    proptest! {
        /// Whatever the body, the answer is a batch within the limits or a documented refusal,
        /// and a batch travels to the room and back unchanged.
        #[test]
        fn arbitrary_bodies(body in r#"[\[\]{}"a-z:,0-9 ]{0,60}"#) {
            match PublishBatch::parse(&body, &config()) {
                Ok(batch) => {
                    prop_assert!(!batch.items.is_empty());
                    let wire = serde_json::to_string(&batch).unwrap();
                    prop_assert_eq!(serde_json::from_str::<PublishBatch>(&wire).unwrap(), batch);
                }
                Err(r) => prop_assert!(documented::is_documented(&r)),
            }
        }
    }
}
