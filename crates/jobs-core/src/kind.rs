//! Stable kind strings for jobs and work items.
//!
//! Kinds are stored in Postgres and carried in messages, so they are part of the wire format:
//! they are plain strings chosen once (`"export"`, `"export.chunk"`), never Rust type names,
//! and renaming a Rust type never changes them.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid kind {0:?}: expected 1-64 characters of a-z, 0-9, '.', '-' and '_', starting with a letter"
)]
pub struct InvalidKind(pub String);

fn validate(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

macro_rules! kind_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Cow<'static, str>);

        impl $name {
            /// A kind known at compile time. The literal is not checked here (this is a
            /// `const fn`); registering a kind with the SDK (`JobTypes::register`,
            /// `Registry::register`) parses it, so a bad literal stops the start-up.
            pub const fn from_static(s: &'static str) -> Self {
                Self(Cow::Borrowed(s))
            }

            pub fn parse(s: &str) -> Result<Self, InvalidKind> {
                if validate(s) { Ok(Self(Cow::Owned(s.to_owned()))) } else { Err(InvalidKind(s.to_owned())) }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

kind_type!(
    /// The kind of a job as a user submits it: `export`, `import`, `ingest`, or a kind a team
    /// registers itself.
    JobKind
);
kind_type!(
    /// The kind of one work item, used to dispatch it to its processor: `export.chunk`, ….
    WorkKind
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_kinds_parse_back() {
        for k in [
            JobKind::from_static("export"),
            JobKind::from_static("acme.report"),
        ] {
            assert_eq!(JobKind::parse(k.as_str()).unwrap(), k);
        }
    }

    #[test]
    fn kinds_reject_rust_like_names() {
        for bad in ["", "Export", "export::Chunk", "1export", "ex port"] {
            assert!(WorkKind::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            WorkKind::parse("export.chunk").unwrap().as_str(),
            "export.chunk"
        );
        let err = serde_json::from_str::<WorkKind>("\"Bad\"").unwrap_err();
        assert!(err.to_string().contains("invalid kind"), "{err}");
    }
}
