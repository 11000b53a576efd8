//! Integration tests of the queue transports and consume loops against real Postgres and
//! the in-repo Service Bus double. Panicking on failure is the point here.
#![allow(clippy::unwrap_used)]

mod consume;
mod queue_contract;
mod queue_postgres;
mod queue_servicebus;
mod support;
