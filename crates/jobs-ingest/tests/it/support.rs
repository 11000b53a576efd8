//! Test databases come from `jobs_core::testing`.
pub use jobs_core::testing::TestDb;
