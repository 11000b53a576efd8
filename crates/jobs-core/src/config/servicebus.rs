//! The Service Bus connection string: parsed with the rest of the configuration, so that a
//! malformed one is refused at start naming its missing part (never its key).

use secrecy::SecretString;
use url::Url;

/// What is wrong with a connection string (never its key).
#[derive(Debug, thiserror::Error)]
#[error("Service Bus connection string: {0}")]
pub struct ConnectionStringError(pub String);

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
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let bad = |problem: &str| ConnectionStringError(problem.to_owned());
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

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

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
}
