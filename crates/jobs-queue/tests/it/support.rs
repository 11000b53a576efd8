//! Test databases come from `jobs_core::testing`; their transport from `jobs_queue::testing`.
pub use jobs_core::testing::TestDb;
pub use jobs_queue::testing::TestDbExt;
