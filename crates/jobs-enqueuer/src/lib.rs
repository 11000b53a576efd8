//! The enqueuer: turns a submitted job into work items (fan-out) and fires schedules.
//!
//! Not built yet: it arrives with the export issue. It will record plans with
//! `jobs_core::store::JobStore::record_plan` and send items through a
//! `jobs_core::queue::Transport`.
