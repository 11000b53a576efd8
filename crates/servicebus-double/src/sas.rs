//! Shared Access Signature checking, as Service Bus does it for every REST call.
//!
//! A token looks like `SharedAccessSignature sr=<resource>&sig=<signature>&se=<expiry>&skn=<key
//! name>` (fields in any order). The signature is `base64(HMAC-SHA256(key, sr + "\n" + se))`
//! where `key` is the UTF-8 text of the shared access key exactly as configured (the real
//! service does not base64-decode it either) and `sr` is taken exactly as it appears in the
//! token, still URL-encoded. The resource itself is not checked: one key grants the namespace.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SCHEME: &str = "SharedAccessSignature ";

/// Why a request's `Authorization` header was refused (answered with 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("missing Authorization header")]
    Missing,
    #[error("malformed SharedAccessSignature: {0}")]
    Malformed(&'static str),
    #[error("unknown key name")]
    UnknownKeyName,
    #[error("token expired")]
    Expired,
    #[error("bad signature")]
    BadSignature,
}

/// The namespace's one shared access rule: its name and its key.
#[derive(Debug, Clone)]
pub struct SasKey {
    key_name: String,
    key: String,
}

impl SasKey {
    pub fn new(key_name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            key_name: key_name.into(),
            key: key.into(),
        }
    }

    /// Checks an `Authorization` header value at `now_unix` (seconds since the epoch).
    pub fn verify(&self, header: Option<&str>, now_unix: i64) -> Result<(), SasError> {
        let header = header.ok_or(SasError::Missing)?;
        let token = header
            .trim()
            .strip_prefix(SCHEME)
            .ok_or(SasError::Malformed(
                "expected the SharedAccessSignature scheme",
            ))?;
        let fields = TokenFields::parse(token)?;
        if fields.skn != self.key_name {
            return Err(SasError::UnknownKeyName);
        }
        let expiry: i64 = fields
            .se
            .parse()
            .map_err(|_| SasError::Malformed("se is not a number of seconds"))?;
        if expiry <= now_unix {
            return Err(SasError::Expired);
        }
        let signature = percent_decode_str(fields.sig)
            .decode_utf8()
            .ok()
            .and_then(|sig| STANDARD.decode(sig.as_bytes()).ok())
            .ok_or(SasError::BadSignature)?;
        self.mac(fields.sr, fields.se)
            .verify_slice(&signature)
            .map_err(|_| SasError::BadSignature)
    }

    fn mac(&self, sr: &str, se: &str) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(self.key.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(sr.as_bytes());
        mac.update(b"\n");
        mac.update(se.as_bytes());
        mac
    }
}

/// The four fields of a token, still as they appear in it (URL-encoded).
struct TokenFields<'a> {
    sr: &'a str,
    sig: &'a str,
    se: &'a str,
    skn: &'a str,
}

impl<'a> TokenFields<'a> {
    fn parse(token: &'a str) -> Result<Self, SasError> {
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for pair in token.trim().split('&') {
            let (name, value) = pair
                .split_once('=')
                .ok_or(SasError::Malformed("a field is not name=value"))?;
            let slot = match name {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(SasError::Malformed("a field appears twice"));
            }
        }
        Ok(Self {
            sr: sr.ok_or(SasError::Malformed("missing sr"))?,
            sig: sig.ok_or(SasError::Malformed("missing sig"))?,
            se: se.ok_or(SasError::Malformed("missing se"))?,
            skn: skn.ok_or(SasError::Malformed("missing skn"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0";

    fn sign(key: &str, sr: &str, se: i64) -> String {
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).unwrap();
        mac.update(format!("{sr}\n{se}").as_bytes());
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        let sig: String =
            percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn=root")
    }

    #[test]
    fn accepts_a_valid_token_with_fields_in_any_order() {
        let key = SasKey::new("root", KEY);
        let token = sign(KEY, "http%3a%2f%2f127.0.0.1%2fq", 1_000);
        assert_eq!(key.verify(Some(&token), 999), Ok(()));
        let fields = token.trim_start_matches(SCHEME);
        let reordered: Vec<&str> = fields.split('&').rev().collect();
        let reordered = format!("{SCHEME}{}", reordered.join("&"));
        assert_eq!(key.verify(Some(&reordered), 999), Ok(()));
    }

    #[test]
    fn refuses_expired_wrong_key_and_tampered_tokens() {
        let key = SasKey::new("root", KEY);
        let token = sign(KEY, "sb%3a%2f%2fx", 1_000);
        assert_eq!(key.verify(Some(&token), 1_000), Err(SasError::Expired));
        assert_eq!(key.verify(None, 0), Err(SasError::Missing));
        assert!(matches!(
            key.verify(Some("Bearer abc"), 0),
            Err(SasError::Malformed(_))
        ));
        let other = SasKey::new("root", "another-key");
        assert_eq!(other.verify(Some(&token), 0), Err(SasError::BadSignature));
        let renamed = SasKey::new("listen", KEY);
        assert_eq!(
            renamed.verify(Some(&token), 0),
            Err(SasError::UnknownKeyName)
        );
        // The signature covers sr as it appears in the token, so re-encoding it breaks it.
        let changed = token.replace("sb%3a", "sb%3A");
        assert_eq!(key.verify(Some(&changed), 0), Err(SasError::BadSignature));
    }
}
