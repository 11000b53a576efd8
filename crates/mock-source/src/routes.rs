//! The routes of the mock source and the state they share.
//!
//! | route | answers |
//! |---|---|
//! | `GET /records` | one page of the filtered records (see [`list_records`]) |
//! | `GET /records/max-id` | `{"max_id": N}`, for id-range partitioning |
//! | `GET /stats` | the [`Stats`] counters |
//! | `POST /stats/reset` | `204`; zeroes the counters |
//!
//! The two data routes pass through [`misbehave`](crate::simulate::misbehave); the stats
//! routes do not.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::LINK;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use chrono::SecondsFormat;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::json;

use crate::clock::Clock;
use crate::cursor::Cursor;
use crate::dataset::Record;
use crate::error::ApiError;
use crate::query::{ListQuery, Paging};
use crate::selection::{Filter, Selection};
use crate::stats::{Counters, Stats};
use crate::{MockSourceOptions, simulate};

/// What every request handler shares; also held by the [`MockSource`](crate::MockSource)
/// handle, which reads and resets the counters.
#[derive(Debug)]
pub(crate) struct AppState {
    /// The dataset and misbehaviour settings, fixed for the source's life.
    pub opts: MockSourceOptions,
    /// `http://127.0.0.1:PORT`, for the absolute URLs of `Link` headers.
    pub base_url: String,
    pub counters: Counters,
    /// How many requests have arrived over the concurrency limit, ever. Admitted requests
    /// compare it before and after their service time to learn whether they were served
    /// during an overload (and so must pay the overload penalty).
    pub overloads: AtomicU64,
    /// Draws the injected failures; seeded from the options so runs are reproducible.
    pub rng: Mutex<StdRng>,
    /// Times the latency and the overload penalty.
    pub clock: Clock,
}

impl AppState {
    pub(crate) fn new(opts: MockSourceOptions, base_url: String) -> std::io::Result<Self> {
        Ok(Self {
            rng: Mutex::new(StdRng::seed_from_u64(opts.seed)),
            opts,
            base_url,
            counters: Counters::default(),
            overloads: AtomicU64::new(0),
            clock: Clock::start()?,
        })
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/records", get(list_records))
        .route("/records/max-id", get(max_id))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            simulate::misbehave,
        ))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .with_state(state)
}

async fn max_id(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({ "max_id": state.opts.records }))
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<Stats> {
    Json(state.counters.snapshot())
}

async fn reset_stats(State(state): State<Arc<AppState>>) -> StatusCode {
    state.counters.reset();
    StatusCode::NO_CONTENT
}

/// A page of records, shaped by the request's pagination style.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum PageBody {
    Offset {
        records: Vec<Record>,
        total: u64,
    },
    Numbered {
        records: Vec<Record>,
        page: u64,
        total_pages: u64,
    },
    Cursor {
        records: Vec<Record>,
        next_cursor: Option<String>,
    },
    /// The first page of a request that named no style: every style's fields.
    First {
        records: Vec<Record>,
        total: u64,
        page: u64,
        total_pages: u64,
        next_cursor: Option<String>,
    },
}

/// `GET /records`: the records matching the filters, in id order, one page at a time.
///
/// Page sizes (`limit`, `per_page`) default to and are capped at `page_size_max`. Pages past
/// the end are empty, not errors. Cursor pages (and the style-less first page) point to the
/// next page with `next_cursor` and a `Link: <...>; rel="next"` header, both absent on the
/// last page; the link repeats the filters.
async fn list_records(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(raw.as_deref().unwrap_or_default())?;
    let selection = Selection::new(state.opts.records, &query.filter);
    let max = u64::from(state.opts.page_size_max);
    let size = |requested: Option<u64>| requested.map_or(max, |n| n.min(max));
    let fetch = |ids: &mut dyn Iterator<Item = u64>, size: u64| -> Vec<Record> {
        ids.take(usize::try_from(size).unwrap_or(usize::MAX))
            .map(|id| Record::generate(&state.opts, id))
            .collect()
    };
    // The cursor after a page ending at `last`, if anything follows it.
    let next_cursor = |records: &[Record]| {
        let last = records.last()?.id;
        selection.ids_from(last.checked_add(1)?).next()?;
        Some(Cursor { last_id: last })
    };

    let (body, next) = match query.paging {
        Paging::Offset { offset, limit } => {
            let records = fetch(&mut selection.ids_from_offset(offset), size(limit));
            let total = selection.count();
            (PageBody::Offset { records, total }, None)
        }
        Paging::Page { page, per_page } => {
            let per_page = size(per_page);
            let offset = (page - 1).saturating_mul(per_page);
            let records = fetch(&mut selection.ids_from_offset(offset), per_page);
            let total_pages = selection.count().div_ceil(per_page);
            let body = PageBody::Numbered {
                records,
                page,
                total_pages,
            };
            (body, None)
        }
        Paging::Cursor { after, limit } => {
            let start = after.map_or(0, |cursor| cursor.last_id.saturating_add(1));
            let records = fetch(&mut selection.ids_from(start), size(limit));
            let next = next_cursor(&records);
            let body = PageBody::Cursor {
                records,
                next_cursor: next.map(Cursor::encode),
            };
            (body, next.map(|cursor| (cursor, size(limit))))
        }
        Paging::First { limit } => {
            let records = fetch(&mut selection.ids_from(0), size(limit));
            let next = next_cursor(&records);
            let body = PageBody::First {
                records,
                total: selection.count(),
                page: 1,
                total_pages: selection.count().div_ceil(size(limit)),
                next_cursor: next.map(Cursor::encode),
            };
            (body, next.map(|cursor| (cursor, size(limit))))
        }
    };

    state.counters.served(body.records_len());
    let mut response = Json(body).into_response();
    if let Some((cursor, limit)) = next {
        let link = format!(
            "<{}>; rel=\"next\"",
            next_url(&state.base_url, &query.filter, cursor, limit)
        );
        if let Ok(value) = link.parse() {
            response.headers_mut().insert(LINK, value);
        }
    }
    Ok(response)
}

impl PageBody {
    fn records_len(&self) -> u64 {
        let (Self::Offset { records, .. }
        | Self::Numbered { records, .. }
        | Self::Cursor { records, .. }
        | Self::First { records, .. }) = self;
        records.len() as u64
    }
}

/// The absolute URL of the cursor page after `cursor`, with the same filters and page size.
fn next_url(base_url: &str, filter: &Filter, cursor: Cursor, limit: u64) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let ids = [("from_id", filter.from_id), ("to_id", filter.to_id)];
    for (name, id) in ids {
        if let Some(id) = id {
            query.append_pair(name, &id.to_string());
        }
    }
    let times = [
        ("modified_since", filter.modified_since),
        ("modified_before", filter.modified_before),
    ];
    for (name, time) in times {
        if let Some(time) = time {
            query.append_pair(name, &time.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }
    query.append_pair("cursor", &cursor.encode());
    query.append_pair("limit", &limit.to_string());
    format!("{base_url}/records?{}", query.finish())
}
