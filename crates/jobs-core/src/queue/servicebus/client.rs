//! Service Bus over HTTPS: the connection string, SAS tokens, and the signed HTTP client
//! every REST call goes through.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

use crate::queue::QueueError;

/// How long a SAS token this client makes stays valid; a new one is made when less than
/// [`TOKEN_REFRESH`] is left.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
const TOKEN_REFRESH: Duration = Duration::from_secs(300);

/// The parts of a Service Bus connection string this transport uses:
/// `Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…`.
/// `UseDevelopmentEmulator=true` (as Microsoft's emulator and the in-repo double write it)
/// switches the endpoint to plain HTTP.
#[derive(Clone, Debug)]
pub struct ConnectionString {
    /// The REST base URL (`https://<namespace>.servicebus.windows.net/`), ending in `/`.
    pub endpoint: Url,
    pub key_name: String,
    pub key: SecretString,
    /// `UseDevelopmentEmulator=true`: a local stand-in, not a namespace.
    pub emulator: bool,
}

impl ConnectionString {
    /// Parses a connection string; errors name the missing or malformed part, never the key.
    pub fn parse(s: &str) -> Result<Self, QueueError> {
        let bad =
            |problem: &str| QueueError::Config(format!("Service Bus connection string: {problem}"));
        let (mut endpoint, mut key_name, mut key, mut emulator) = (None, None, None, false);
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| bad("expected `Name=value` pairs separated by `;`"))?;
            match name.to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.to_owned()),
                "sharedaccesskeyname" => key_name = Some(value.to_owned()),
                "sharedaccesskey" => key = Some(value.to_owned()),
                "usedevelopmentemulator" => emulator = value.eq_ignore_ascii_case("true"),
                // EntityPath and others: this transport addresses queues by name.
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or_else(|| bad("`Endpoint` is missing"))?;
        let given = Url::parse(&endpoint).map_err(|_| bad("`Endpoint` is not a URL"))?;
        let scheme = match given.scheme() {
            "sb" | "https" if !emulator => "https",
            "sb" | "http" | "https" => "http",
            _ => return Err(bad("`Endpoint` must be an sb:// or https:// URL")),
        };
        let host = given
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("`Endpoint` has no host"))?;
        let port = given.port().map(|p| format!(":{p}")).unwrap_or_default();
        // `sb` is not a special scheme to `url`, so the URL is rebuilt rather than changed.
        let url = Url::parse(&format!("{scheme}://{host}{port}/"))
            .map_err(|_| bad("`Endpoint` has an invalid host"))?;
        Ok(Self {
            endpoint: url,
            key_name: key_name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("`SharedAccessKeyName` is missing"))?,
            key: SecretString::from(
                key.filter(|k| !k.is_empty())
                    .ok_or_else(|| bad("`SharedAccessKey` is missing"))?,
            ),
            emulator,
        })
    }
}

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

    #[test]
    fn connection_strings_parse_and_name_what_is_missing() {
        let cs = ConnectionString::parse(
            "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=abc=;EntityPath=q",
        )
        .unwrap();
        assert_eq!(cs.endpoint.as_str(), "https://ns1.servicebus.windows.net/");
        assert_eq!(cs.key_name, "Root");
        assert_eq!(cs.key.expose_secret(), "abc=");

        let local = ConnectionString::parse(
            "Endpoint=sb://127.0.0.1:5300;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true",
        )
        .unwrap();
        assert_eq!(local.endpoint.as_str(), "http://127.0.0.1:5300/");

        for (s, needle) in [
            ("SharedAccessKeyName=k;SharedAccessKey=s", "Endpoint"),
            ("Endpoint=sb://x/;SharedAccessKey=s", "SharedAccessKeyName"),
            ("Endpoint=sb://x/;SharedAccessKeyName=k", "SharedAccessKey"),
            (
                "Endpoint=ftp://x/;SharedAccessKeyName=k;SharedAccessKey=s",
                "sb://",
            ),
            ("garbage", "Name=value"),
        ] {
            let err = ConnectionString::parse(s).unwrap_err().to_string();
            assert!(err.contains(needle), "{s}: {err}");
        }
        let err = ConnectionString::parse(
            "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=topsecret;Bad",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("topsecret"), "{err}");
    }

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
