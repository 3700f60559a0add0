//! Standard Webhooks verification (<https://www.standardwebhooks.com/>), by hand, so
//! that the sample shows every step a receiver must take.
//!
//! A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature` (space-separated `v1,<base64>` entries, more than one while the
//! sender rotates keys). The signed content is `{id}.{timestamp}.{body}`, the MAC is
//! HMAC-SHA256 under the base64-decoded part of the secret after `whsec_`. The receiver
//! compares in constant time (`Mac::verify_slice`), refuses a timestamp more than
//! [`TOLERANCE_SECONDS`] away from its clock (so a captured delivery cannot be replayed
//! later), and remembers the ids it processed (so a redelivery is not processed twice).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a delivery's timestamp may be from this server's clock, either way: the
/// specification's recommended five minutes.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;
/// The shortest key accepted: Plaza's are 24 to 64 random bytes; anything shorter than
/// 128 bits would be guessable.
const SECRET_BYTES_MIN: usize = 16;
/// Longer keys are hashed by HMAC anyway; this only bounds what a typo can paste in.
const SECRET_BYTES_MAX: usize = 128;
/// More entries than this in one header is not a key rotation but an attempt to make the
/// receiver compute many MACs.
const SIGNATURES_MAX: usize = 8;

/// The key under which deliveries are signed, from `whsec_<base64>`.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key, not even into a log line by accident.
        formatter.write_str("WebhookSecret(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a webhook secret starts with whsec_")]
    MissingPrefix,
    #[error("the part after whsec_ is not base64")]
    NotBase64,
    #[error("the key is {bytes} bytes; it must be {SECRET_BYTES_MIN} to {SECRET_BYTES_MAX}")]
    BadLength { bytes: usize },
}

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.trim().strip_prefix("whsec_").ok_or(SecretError::MissingPrefix)?;
        let key = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&key.len()) {
            return Err(SecretError::BadLength { bytes: key.len() });
        }
        Ok(Self { key })
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes a key of any length")
    }
}

/// Why a delivery was refused; every variant is answered 401 and nothing is recorded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookRefused {
    #[error("the {0} header is missing or not text")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than five minutes from now")]
    OutsideTolerance,
    #[error("no v1 signature matches")]
    NoMatchingSignature,
}

/// The three headers of a delivery, as received.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Checks a delivery; on success returns its `webhook-id`, the key to deduplicate by.
pub fn verify<'a>(
    secret: &WebhookSecret,
    headers: Headers<'a>,
    body: &[u8],
    now_unix_seconds: i64,
) -> Result<&'a str, WebhookRefused> {
    let id = headers.id.filter(|id| !id.is_empty()).ok_or(WebhookRefused::MissingHeader("webhook-id"))?;
    let timestamp_text = headers.timestamp.ok_or(WebhookRefused::MissingHeader("webhook-timestamp"))?;
    let signatures = headers.signature.ok_or(WebhookRefused::MissingHeader("webhook-signature"))?;
    let timestamp: i64 = timestamp_text.trim().parse().map_err(|_| WebhookRefused::BadTimestamp)?;
    if (now_unix_seconds - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(WebhookRefused::OutsideTolerance);
    }
    let mut signed = secret.mac();
    signed.update(id.as_bytes());
    signed.update(b".");
    signed.update(timestamp_text.as_bytes());
    signed.update(b".");
    signed.update(body);
    for entry in signatures.split(' ').filter(|entry| !entry.is_empty()).take(SIGNATURES_MAX) {
        // Other versions (`v1a`, asymmetric) are skipped: this receiver only has the key.
        let Some(encoded) = entry.strip_prefix("v1,") else { continue };
        let Ok(candidate) = base64::engine::general_purpose::STANDARD.decode(encoded) else { continue };
        // `verify_slice` compares in constant time, so timing tells a forger nothing
        // about how many leading bytes were right.
        if signed.clone().verify_slice(&candidate).is_ok() {
            return Ok(id);
        }
    }
    Err(WebhookRefused::NoMatchingSignature)
}

/// The `webhook-signature` value for a delivery: what Plaza sends; the tests sign with it.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example (its reference libraries test
    /// against it), checked with Python's `standardwebhooks` 1.1.0 `Webhook.sign`.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// A Plaza-shaped delivery signed by Python's `standardwebhooks` 1.1.0 under a 32-byte
    /// key (0, 1, …, 31), like the secrets Plaza issues.
    const PLAZA_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const PLAZA_ID: &str = "wh_01JEXAMPLE";
    const PLAZA_TIMESTAMP: i64 = 1_796_284_800;
    const PLAZA_BODY: &str = r#"{"type":"payment.succeeded","timestamp":"2026-12-03T08:00:00Z","data":{"order_id":"po_1","out_trade_no":"cof_1","amount":350,"currency":"USD"}}"#;
    const PLAZA_SIGNATURE: &str = "v1,CffzjTw8y8aBRkJqZ9pGmxkT9x2cDN/hESkK2Z3YvSE=";

    fn headers<'a>(id: &'a str, timestamp: &'a str, signature: &'a str) -> Headers<'a> {
        Headers { id: Some(id), timestamp: Some(timestamp), signature: Some(signature) }
    }

    fn secret(text: &str) -> WebhookSecret {
        WebhookSecret::parse(text).expect("a valid test secret")
    }

    #[test]
    fn the_specifications_example_verifies_and_signs_the_same() {
        let secret = secret(SPEC_SECRET);
        let timestamp = SPEC_TIMESTAMP.to_string();
        let verified =
            verify(&secret, headers(SPEC_ID, &timestamp, SPEC_SIGNATURE), SPEC_BODY.as_bytes(), SPEC_TIMESTAMP);
        assert_eq!(verified, Ok(SPEC_ID));
        assert_eq!(sign(&secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes()), SPEC_SIGNATURE);
    }

    #[test]
    fn a_delivery_signed_by_the_python_library_verifies() {
        let secret = secret(PLAZA_SECRET);
        let timestamp = PLAZA_TIMESTAMP.to_string();
        let now = PLAZA_TIMESTAMP + 30;
        let verified = verify(&secret, headers(PLAZA_ID, &timestamp, PLAZA_SIGNATURE), PLAZA_BODY.as_bytes(), now);
        assert_eq!(verified, Ok(PLAZA_ID));
    }

    #[test]
    fn one_changed_byte_of_body_id_timestamp_or_key_is_refused() {
        let secret_ok = secret(PLAZA_SECRET);
        let timestamp = PLAZA_TIMESTAMP.to_string();
        let now = PLAZA_TIMESTAMP;
        let tampered_body = PLAZA_BODY.replace("350", "035");
        assert_eq!(
            verify(&secret_ok, headers(PLAZA_ID, &timestamp, PLAZA_SIGNATURE), tampered_body.as_bytes(), now),
            Err(WebhookRefused::NoMatchingSignature)
        );
        assert_eq!(
            verify(&secret_ok, headers("wh_01JEXAMPLF", &timestamp, PLAZA_SIGNATURE), PLAZA_BODY.as_bytes(), now),
            Err(WebhookRefused::NoMatchingSignature)
        );
        let later = (PLAZA_TIMESTAMP + 1).to_string();
        assert_eq!(
            verify(&secret_ok, headers(PLAZA_ID, &later, PLAZA_SIGNATURE), PLAZA_BODY.as_bytes(), now),
            Err(WebhookRefused::NoMatchingSignature)
        );
        let other_key = secret(SPEC_SECRET);
        assert_eq!(
            verify(&other_key, headers(PLAZA_ID, &timestamp, PLAZA_SIGNATURE), PLAZA_BODY.as_bytes(), now),
            Err(WebhookRefused::NoMatchingSignature)
        );
    }

    #[test]
    fn a_rotation_header_with_a_stale_entry_first_still_verifies() {
        let secret = secret(PLAZA_SECRET);
        let timestamp = PLAZA_TIMESTAMP.to_string();
        let both = format!("v1,{} v1a,xyz {PLAZA_SIGNATURE}", "A".repeat(44));
        let verified = verify(&secret, headers(PLAZA_ID, &timestamp, &both), PLAZA_BODY.as_bytes(), PLAZA_TIMESTAMP);
        assert_eq!(verified, Ok(PLAZA_ID));
    }

    #[test]
    fn a_timestamp_more_than_five_minutes_away_is_refused_either_way() {
        let secret = secret(PLAZA_SECRET);
        let timestamp = PLAZA_TIMESTAMP.to_string();
        let body = PLAZA_BODY.as_bytes();
        for now in [PLAZA_TIMESTAMP + TOLERANCE_SECONDS + 1, PLAZA_TIMESTAMP - TOLERANCE_SECONDS - 1] {
            assert_eq!(
                verify(&secret, headers(PLAZA_ID, &timestamp, PLAZA_SIGNATURE), body, now),
                Err(WebhookRefused::OutsideTolerance)
            );
        }
        let edge = PLAZA_TIMESTAMP + TOLERANCE_SECONDS;
        assert!(verify(&secret, headers(PLAZA_ID, &timestamp, PLAZA_SIGNATURE), body, edge).is_ok());
        assert_eq!(
            verify(&secret, headers(PLAZA_ID, "soon", PLAZA_SIGNATURE), body, PLAZA_TIMESTAMP),
            Err(WebhookRefused::BadTimestamp)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let secret = secret(PLAZA_SECRET);
        let missing = Headers { id: Some(PLAZA_ID), timestamp: None, signature: Some(PLAZA_SIGNATURE) };
        assert_eq!(
            verify(&secret, missing, PLAZA_BODY.as_bytes(), PLAZA_TIMESTAMP),
            Err(WebhookRefused::MissingHeader("webhook-timestamp"))
        );
    }

    #[test]
    fn secrets_need_the_prefix_base64_and_a_sensible_length() {
        assert_eq!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").err(), Some(SecretError::MissingPrefix));
        assert_eq!(WebhookSecret::parse("whsec_***").err(), Some(SecretError::NotBase64));
        assert_eq!(WebhookSecret::parse("whsec_AAEC").err(), Some(SecretError::BadLength { bytes: 3 }));
        assert!(format!("{:?}", secret(PLAZA_SECRET)).contains(".."));
    }
}
