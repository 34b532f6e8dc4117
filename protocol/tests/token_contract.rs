//! The token contract (`tests/golden/tokens.json`): what the edge refuses in a token, and with
//! which text. Each case gives `roomcast/server`'s `mintToken` options; this test writes the
//! claims exactly as `mintToken` does (`{"sub","exp","iat"[,"rooms"][,"meta"]}`, `exp` = `iat` +
//! `ttlSeconds`), signs them, and holds the edge's verdict to the table: its verification
//! (`api::admission::verify`, the 401's message) and then, for the patterns it grants, the room
//! name rules the edge routes by (`token::validate_pattern`, `/dev/token`'s "room pattern: …").
//! `sdk/test/server.test.mjs` holds `mintToken` to the same table, so a rule or a message cannot
//! change on one side only.
#![cfg(feature = "server")]

use roomcast_protocol::api::admission::{self, AuthConfig};
use roomcast_protocol::token;
use serde_json::Value;

fn table() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/tokens.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("tests/golden/tokens.json")).expect("the table is JSON")
}

/// The payload `mintToken` signs for these options.
fn payload(options: &Value, now_ms: u64) -> String {
    let iat = now_ms / 1000;
    let ttl = options.get("ttlSeconds").map_or(3600, |t| t.as_u64().expect("ttlSeconds"));
    let mut text = format!(r#"{{"sub":{},"exp":{},"iat":{iat}"#, options["user"], iat + ttl);
    for claim in ["rooms", "meta"] {
        if let Some(value) = options.get(claim) {
            text.push_str(&format!(r#","{claim}":{value}"#));
        }
    }
    text.push('}');
    text
}

/// The edge's verdict: `None` when it accepts the token and every pattern it grants can name a
/// room, else its message.
fn verdict(t: &str, secret: &str, now_ms: u64) -> Option<String> {
    let config = AuthConfig { secret, ..AuthConfig::default() };
    let claims = match admission::verify(&config, t, now_ms) {
        Ok(claims) => claims,
        Err(refusal) => return Some(refusal.message.into_owned()),
    };
    claims.rooms.keys().find_map(|p| token::validate_pattern(p).err().map(|e| format!("room pattern: {e}")))
}

#[test]
fn the_edge_refuses_exactly_the_tables_tokens_with_its_text() {
    let table = table();
    let (secret, now) = (table["secret"].as_str().expect("secret"), table["now"].as_u64().expect("now"));
    let cases = table["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30, "the table lost its cases");
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let text = payload(&case["options"], now);
        let t = token::sign(text.as_bytes(), secret.as_bytes()).expect("signed");
        match (case["refused"].as_str(), verdict(&t, secret, now)) {
            (None, None) => {}
            (Some(expected), Some(got)) => assert!(got.starts_with(expected), "{name}: the edge says {got:?}, the table {expected:?}"),
            (expected, got) => panic!("{name}: the table says {expected:?}, the edge {got:?} ({} bytes)", t.len()),
        }
    }
}

/// The boundary cases are where the table says: a token of exactly 4,096 bytes, and of 4,097.
#[test]
fn the_size_cases_sit_on_the_limit() {
    let table = table();
    let (secret, now) = (table["secret"].as_str().unwrap(), table["now"].as_u64().unwrap());
    let sizes: Vec<(String, usize)> = table["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("a token of"))
        .map(|c| {
            (c["name"].as_str().unwrap().to_owned(), token::sign(payload(&c["options"], now).as_bytes(), secret.as_bytes()).unwrap().len())
        })
        .collect();
    assert_eq!(
        sizes,
        [
            ("a token of exactly 4096 bytes".to_owned(), token::MAX_TOKEN_BYTES),
            ("a token of 4097 bytes".to_owned(), token::MAX_TOKEN_BYTES + 1)
        ]
    );
}
