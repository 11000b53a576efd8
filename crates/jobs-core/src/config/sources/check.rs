//! Checking a source's configuration: every key validated with the full dotted key named
//! in errors, and the credential its `auth_secret` refers to read once, at start-up.

use secrecy::SecretString;

use super::{SourceConfig, SourceProblem};

impl SourceConfig {
    /// Reads the credential a source's `auth_secret` refers to: `env:NAME` reads the
    /// environment variable, `file:/path` the file (one trailing newline dropped, as
    /// Kubernetes and Docker secret files usually end with one). Empty: no credential.
    /// Errors name the variable or file, never the value.
    pub fn resolve_secret(&mut self, name: &str) -> Result<(), SourceProblem> {
        let key = format!("sources.{name}.auth_secret");
        let reference = self.auth_secret.trim();
        if reference.is_empty() {
            self.secret = None;
            return Ok(());
        }
        let value = if let Some(var) = reference.strip_prefix("env:") {
            std::env::var(var).map_err(|_| SourceProblem {
                key: key.clone(),
                problem: format!("refers to environment variable {var}, which is not set"),
            })?
        } else if let Some(path) = reference.strip_prefix("file:") {
            let mut text = std::fs::read_to_string(path).map_err(|e| SourceProblem {
                key: key.clone(),
                problem: format!("refers to file {path}, which cannot be read: {e}"),
            })?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        } else {
            return Err(SourceProblem {
                key,
                problem: "must be `env:NAME` or `file:/path` (the secret itself never goes \
                          in the configuration)"
                    .into(),
            });
        };
        if value.is_empty() || value.contains(['\r', '\n']) {
            return Err(SourceProblem {
                key,
                problem: "refers to an empty value or one with line breaks".into(),
            });
        }
        self.secret = Some(SecretString::from(value));
        Ok(())
    }

    /// Checks every key of source `name`.
    pub fn validate(&self, name: &str) -> Result<(), SourceProblem> {
        let bad = |key: &str, problem: &str| {
            Err(SourceProblem {
                key: format!("sources.{name}.{key}"),
                problem: problem.to_owned(),
            })
        };
        let name_ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return bad(
                "",
                "the name must be 1-64 characters of a-z, 0-9, '_' and '-'",
            );
        }
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if u.query().is_some() || u.fragment().is_some() {
                    return bad("base_url", "must not have a query or a fragment");
                }
            }
            _ => return bad("base_url", "must be an http:// or https:// URL"),
        }
        for (key, path) in [
            ("records_path", &self.records_path),
            ("max_id_path", &self.max_id_path),
        ] {
            if !path.starts_with('/') || path.contains(['?', '#']) {
                return bad(key, "must be a path starting with '/', without a query");
            }
        }
        for (key, pointer) in [
            ("records_pointer", &self.records_pointer),
            ("max_id_pointer", &self.max_id_pointer),
            ("next_cursor_pointer", &self.next_cursor_pointer),
        ] {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return bad(key, "must be a JSON pointer (empty, or starting with '/')");
            }
        }
        for (key, param) in [
            ("from_id_param", &self.from_id_param),
            ("to_id_param", &self.to_id_param),
            ("since_param", &self.since_param),
            ("before_param", &self.before_param),
            ("offset_param", &self.offset_param),
            ("limit_param", &self.limit_param),
            ("page_param", &self.page_param),
            ("per_page_param", &self.per_page_param),
            ("cursor_param", &self.cursor_param),
        ] {
            let ok = (1..=64).contains(&param.len())
                && param
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b));
            if !ok {
                return bad(key, "must be 1-64 characters of letters, digits, '_-.[]'");
            }
        }
        if http::HeaderName::from_bytes(self.auth_header.as_bytes()).is_err() {
            return bad("auth_header", "must be a valid HTTP header name");
        }
        if self.auth_scheme.contains(char::is_whitespace) {
            return bad("auth_scheme", "must be one word (such as Bearer) or empty");
        }
        if !(1..=1_000_000_000_000).contains(&self.partition_size) {
            return bad("partition_size", "must be between 1 and 10^12");
        }
        if !(1..=366 * 86_400).contains(&self.window_secs) {
            return bad("window_secs", "must be between 1 and 31622400 (366 days)");
        }
        if !(1..=100_000).contains(&self.max_partitions) {
            return bad("max_partitions", "must be between 1 and 100000");
        }
        if !(1..=10_000).contains(&self.page_size) {
            return bad("page_size", "must be between 1 and 10000");
        }
        if !(1..=300).contains(&self.connect_timeout_secs) {
            return bad("connect_timeout_secs", "must be between 1 and 300");
        }
        if !(1..=3600).contains(&self.request_timeout_secs) {
            return bad("request_timeout_secs", "must be between 1 and 3600");
        }
        if !(1..=100).contains(&self.max_attempts) {
            return bad("max_attempts", "must be between 1 and 100");
        }
        if self.retry_base_ms == 0 || self.retry_cap_secs == 0 {
            return bad("retry_base_ms", "retry base and cap must be positive");
        }
        if !(1..=1024).contains(&self.max_concurrency) {
            return bad("max_concurrency", "must be between 1 and 1024");
        }
        Ok(())
    }
}
