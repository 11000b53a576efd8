//! Service Bus over HTTPS: the connection string, SAS tokens, and the signed HTTP client
//! every REST call goes through.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub use jobs_core::config::servicebus::ConnectionString;

use crate::QueueError;

/// How long a SAS token this client makes stays valid; a new one is made when less than
/// [`TOKEN_REFRESH`] is left.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
const TOKEN_REFRESH: Duration = Duration::from_secs(300);

/// Makes `Authorization` values: a Shared Access Signature for the whole namespace, cached
/// until shortly before it expires. Its `Debug` shows neither the key nor the token.
pub struct SasSigner {
    resource: String,
    key_name: String,
    key: SecretString,
    cached: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for SasSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasSigner")
            .field("resource", &self.resource)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl SasSigner {
    pub fn new(cs: &ConnectionString) -> Self {
        Self {
            resource: cs.endpoint.as_str().to_owned(),
            key_name: cs.key_name.clone(),
            key: cs.key.clone(),
            cached: Mutex::new(None),
        }
    }

    /// The current token, making a new one when the cached one is close to expiry.
    pub fn authorization(&self) -> String {
        let now = Utc::now().timestamp();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, expiry)) = cached.as_ref()
            && *expiry - now > TOKEN_REFRESH.as_secs() as i64
        {
            return token.clone();
        }
        let expiry = now + TOKEN_TTL.as_secs() as i64;
        let token = sas_token(&self.resource, &self.key_name, &self.key, expiry);
        *cached = Some((token.clone(), expiry));
        token
    }
}

/// `SharedAccessSignature sr=…&sig=…&se=…&skn=…`: HMAC-SHA256, keyed with the key's text
/// as given, over the URL-encoded resource, a newline and the expiry in Unix seconds.
pub fn sas_token(resource: &str, key_name: &str, key: &SecretString, expiry: i64) -> String {
    let sr: String = url::form_urlencoded::byte_serialize(resource.as_bytes()).collect();
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{sr}\n{expiry}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    let skn: String = url::form_urlencoded::byte_serialize(key_name.as_bytes()).collect();
    format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={skn}")
}

/// An HTTP error answer, kept for the caller to map to a [`QueueError`].
pub struct Failure {
    pub status: reqwest::StatusCode,
    pub body: String,
}

impl Failure {
    /// The error for an answer no operation expects.
    pub fn unexpected(self, what: &str) -> QueueError {
        let body: String = self.body.chars().take(300).collect();
        QueueError::Broker(format!("{what}: HTTP {}: {body}", self.status))
    }

    pub async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Self { status, body }
    }
}

/// Turns a transport-level failure (connection refused, timeout) into a queue error.
pub fn unreachable_broker(what: &str, e: &reqwest::Error) -> QueueError {
    // reqwest's Display names the URL, which holds no secret (SAS goes in a header).
    QueueError::Broker(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature as Microsoft documents it, checked against an independent computation
    /// (`printf 'https%3A%2F%2Fns.servicebus.windows.net%2F\n1700000000' | openssl dgst
    /// -sha256 -hmac key -binary | base64`).
    #[test]
    fn sas_tokens_sign_the_encoded_resource_and_expiry() {
        let token = sas_token(
            "https://ns.servicebus.windows.net/",
            "RootManageSharedAccessKey",
            &SecretString::from("key"),
            1_700_000_000,
        );
        assert_eq!(
            token,
            "SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2F\
             &sig=4udX%2FTZg%2BSncjKHJxvgKvSFiZrbEBJjxWVfwyUrE720%3D\
             &se=1700000000&skn=RootManageSharedAccessKey"
        );
    }
}
