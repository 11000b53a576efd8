//! A mock slow, paginated source API: what Offload's ingest jobs are tested and benchmarked
//! against, and a dev tool (`mock-source` binary) for trying them by hand.
//!
//! It serves a deterministic dataset ([`record`]) computed on the fly, filtered by id range
//! and `updated_at` window, in three pagination styles (offset, page number, cursor), and
//! misbehaves as configured in [`MockSourceOptions`]: latency, random `500`s, a concurrency
//! limit answering `429` and slowing down, bearer-token auth. [`Stats`] count what it saw.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mock_source::{MockSource, MockSourceOptions};
//!
//! let source = MockSource::start(MockSourceOptions {
//!     records: 1_000,
//!     concurrency_limit: Some(8),
//!     ..Default::default()
//! })
//! .await?;
//! let url = format!("{}/records?from_id=1&to_id=500&limit=50", source.base_url());
//! // ... fetch `url` page by page, then:
//! println!("{:?}", source.stats());
//! # Ok(())
//! # }
//! ```
//!
//! | route | answers |
//! |---|---|
//! | `GET /records/max-id` | `{"max_id": N}` |
//! | `GET /records?from_id&to_id&modified_since&modified_before` + `offset&limit` | `{"records", "total"}` |
//! | ... + `page&per_page` (pages from 1) | `{"records", "page", "total_pages"}` |
//! | ... + `cursor&limit` | `{"records", "next_cursor"}` + `Link: <next>; rel="next"` |
//! | ... with no pagination parameter (or only `limit`) | the first page, with all of the above |
//! | `GET /stats`, `POST /stats/reset` | [`Stats`]; `204` |

mod clock;
mod cursor;
mod dataset;
mod error;
mod options;
mod query;
mod routes;
mod selection;
mod server;
mod simulate;
mod stats;

pub use dataset::{BASE_TIME_UNIX, Record, base_time, record, updated_at};
pub use options::{MAX_RECORDS, MockSourceOptions, OptionsError};
pub use server::MockSource;
pub use stats::Stats;
