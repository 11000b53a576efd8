//! The enqueuer's own tests: schedules fire exactly once per tick, with several enqueuers
//! at once, under the missed-tick rule, and the jobs they make run.
#![allow(clippy::unwrap_used)]

mod schedules;
