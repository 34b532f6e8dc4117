//! Standard Webhooks signing (<https://www.standardwebhooks.com/>): the signature is
//! `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")), so a receiver in
//! any language verifies with the standard's libraries.

use crate::b64;
use crate::config::webhook::SigningKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The `webhook-signature` header for one message.
pub fn signature(key: &SigningKey, id: &str, timestamp_secs: u64, body: &str) -> String {
    // HMAC takes a key of any length; the fallback only keeps a panic path out of the wasm build.
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(key.bytes()) else { return String::new() };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", b64::encode(&mac.finalize().into_bytes(), b64::Form::Standard))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the standard's reference libraries ("sign function works").
    #[test]
    fn standard_webhooks_test_vector() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn any_change_changes_the_signature() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = signature(&key, "a", 1, "{}");
        assert_ne!(base, signature(&key, "b", 1, "{}"));
        assert_ne!(base, signature(&key, "a", 2, "{}"));
        assert_ne!(base, signature(&key, "a", 1, "{ }"));
        let other = SigningKey::parse("whsec_AAAA").unwrap();
        assert_ne!(base, signature(&other, "a", 1, "{}"));
    }
}
