//! The worker: receives work items under a peek-lock, dispatches them by kind, records
//! completions, and fans in.
//!
//! Not built yet: it arrives with the export issue.
