//! The notifier: delivers signed webhooks when jobs finish.
//!
//! Not built yet: it arrives with the export issue.
