//! Standard Webhooks signatures (https://www.standardwebhooks.com): the signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}`, the key is the base64 part of the `whsec_…`
//! secret, and the `webhook-signature` header is `v1,` + base64(HMAC-SHA256).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the webhook secret is not a valid whsec_ secret")]
pub struct BadSecret;

/// Signs a webhook; returns the `webhook-signature` header value.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let key = secret.strip_prefix("whsec_").ok_or(BadSecret)?;
    let key = STANDARD.decode(key).map_err(|_| BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference libraries.
    #[test]
    fn matches_the_reference_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = sign(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(sign("nope", "id", 1, b""), Err(BadSecret));
    }
}
