//! The notifier's own tests: webhooks signed per Standard Webhooks (checked by the test
//! kit's own implementation), retried with the receiver's `Retry-After`, recorded.
#![allow(clippy::unwrap_used)]

mod webhooks;
