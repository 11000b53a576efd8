//! Schedules through the `offload schedule` commands against a running stack. The API's
//! contract is tested in `jobs-api`, firing in `jobs-enqueuer`.

mod cli;
