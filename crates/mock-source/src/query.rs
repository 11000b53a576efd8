//! Parsing the query string of `GET /records` into a typed request, or a `400` naming the
//! parameter at fault.
//!
//! The parser is strict on purpose: the source exists to test ingest clients, so an unknown
//! or repeated parameter (usually a client bug) is an error rather than silently ignored.

use chrono::{DateTime, Utc};

use crate::cursor::Cursor;
use crate::selection::Filter;

/// A parsed `GET /records` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListQuery {
    pub filter: Filter,
    pub paging: Paging,
}

/// The pagination style of a request, with its position and requested page size (before
/// the source caps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paging {
    /// No style-specific parameter (at most `limit`): the first page of every style, so a
    /// client of any style can start without knowing how to ask for "page one".
    First { limit: Option<u64> },
    /// `offset` (+ `limit`).
    Offset { offset: u64, limit: Option<u64> },
    /// `page` and/or `per_page`; pages count from 1.
    Page { page: u64, per_page: Option<u64> },
    /// `cursor` (+ `limit`); an empty cursor is the first page.
    Cursor {
        after: Option<Cursor>,
        limit: Option<u64>,
    },
}

/// Why a query string was refused; each answers `400` naming `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    #[error("unknown parameter `{0}`")]
    Unknown(String),
    #[error("parameter `{0}` is given more than once")]
    Repeated(&'static str),
    #[error("`{field}` must be a non-negative integer, got `{value}`")]
    NotANumber { field: &'static str, value: String },
    #[error("`{0}` must be at least 1")]
    Zero(&'static str),
    #[error("`{field}` must be an RFC 3339 date-time, got `{value}`")]
    NotADate { field: &'static str, value: String },
    #[error("`cursor` is not a cursor this source issued")]
    BadCursor,
    #[error(
        "pagination styles cannot be mixed: got {}; use offset+limit, page+per_page or cursor+limit",
        .0.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
    )]
    MixedStyles(Vec<&'static str>),
}

impl QueryError {
    /// The parameter(s) at fault, comma-separated.
    pub(crate) fn field(&self) -> String {
        match self {
            Self::Unknown(name) => name.clone(),
            Self::Repeated(field)
            | Self::NotANumber { field, .. }
            | Self::Zero(field)
            | Self::NotADate { field, .. } => (*field).to_owned(),
            Self::BadCursor => "cursor".to_owned(),
            Self::MixedStyles(fields) => fields.join(","),
        }
    }
}

const FROM_ID: &str = "from_id";
const TO_ID: &str = "to_id";
const MODIFIED_SINCE: &str = "modified_since";
const MODIFIED_BEFORE: &str = "modified_before";
const OFFSET: &str = "offset";
const LIMIT: &str = "limit";
const PAGE: &str = "page";
const PER_PAGE: &str = "per_page";
const CURSOR: &str = "cursor";

/// Pagination parameters, each with the styles it belongs to (a bit set of the three
/// styles: offset, page, cursor). `limit` is shared by offset and cursor paging.
const PAGING_PARAMS: [(&str, u8); 5] = [
    (OFFSET, OFFSET_STYLE),
    (LIMIT, OFFSET_STYLE | CURSOR_STYLE),
    (PAGE, PAGE_STYLE),
    (PER_PAGE, PAGE_STYLE),
    (CURSOR, CURSOR_STYLE),
];
const OFFSET_STYLE: u8 = 1;
const PAGE_STYLE: u8 = 2;
const CURSOR_STYLE: u8 = 4;
const FILTER_PARAMS: [&str; 4] = [FROM_ID, TO_ID, MODIFIED_SINCE, MODIFIED_BEFORE];

/// The parameters of one query string, by name, each given at most once.
#[derive(Debug, Default)]
struct Params(Vec<(&'static str, String)>);

impl Params {
    fn parse(raw: &str) -> Result<Self, QueryError> {
        let mut params = Self::default();
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let known = FILTER_PARAMS
                .into_iter()
                .chain(PAGING_PARAMS.map(|(name, _)| name))
                .find(|known| *known == name)
                .ok_or_else(|| QueryError::Unknown(name.into_owned()))?;
            if params.get(known).is_some() {
                return Err(QueryError::Repeated(known));
            }
            params.0.push((known, value.into_owned()));
        }
        Ok(params)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| value.as_str())
    }

    fn number(&self, field: &'static str) -> Result<Option<u64>, QueryError> {
        self.get(field)
            .map(|value| {
                // `u64::from_str` accepts a leading '+'; plain digits only.
                value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse().ok())
                    .flatten()
                    .ok_or_else(|| QueryError::NotANumber {
                        field,
                        value: value.to_owned(),
                    })
            })
            .transpose()
    }

    fn positive(&self, field: &'static str) -> Result<Option<u64>, QueryError> {
        match self.number(field)? {
            Some(0) => Err(QueryError::Zero(field)),
            other => Ok(other),
        }
    }

    fn date(&self, field: &'static str) -> Result<Option<DateTime<Utc>>, QueryError> {
        self.get(field)
            .map(|value| {
                DateTime::parse_from_rfc3339(value)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| QueryError::NotADate {
                        field,
                        value: value.to_owned(),
                    })
            })
            .transpose()
    }
}

impl ListQuery {
    /// Parses a raw (still percent-encoded) query string.
    pub(crate) fn parse(raw: &str) -> Result<Self, QueryError> {
        let params = Params::parse(raw)?;
        let filter = Filter {
            from_id: params.number(FROM_ID)?,
            to_id: params.number(TO_ID)?,
            modified_since: params.date(MODIFIED_SINCE)?,
            modified_before: params.date(MODIFIED_BEFORE)?,
        };
        Ok(Self {
            filter,
            paging: paging(&params)?,
        })
    }
}

/// The one style every given pagination parameter agrees on.
fn paging(params: &Params) -> Result<Paging, QueryError> {
    let given: Vec<(&'static str, u8)> = PAGING_PARAMS
        .into_iter()
        .filter(|(name, _)| params.get(name).is_some())
        .collect();
    let styles = given.iter().fold(
        OFFSET_STYLE | PAGE_STYLE | CURSOR_STYLE,
        |styles, (_, of)| styles & of,
    );
    if styles == 0 {
        return Err(QueryError::MixedStyles(
            given.into_iter().map(|(name, _)| name).collect(),
        ));
    }
    let limit = params.positive(LIMIT)?;
    Ok(match styles {
        OFFSET_STYLE => Paging::Offset {
            offset: params.number(OFFSET)?.unwrap_or(0),
            limit,
        },
        PAGE_STYLE => Paging::Page {
            page: params.positive(PAGE)?.unwrap_or(1),
            per_page: params.positive(PER_PAGE)?,
        },
        CURSOR_STYLE => Paging::Cursor {
            after: match params.get(CURSOR) {
                None | Some("") => None,
                Some(text) => Some(Cursor::decode(text).ok_or(QueryError::BadCursor)?),
            },
            limit,
        },
        // Nothing, or only `limit`: no style is implied yet.
        _ => Paging::First { limit },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paging_of(raw: &str) -> Result<Paging, QueryError> {
        ListQuery::parse(raw).map(|query| query.paging)
    }

    #[test]
    fn parses_filters() {
        let query =
            ListQuery::parse("from_id=5&to_id=9&modified_since=2026-01-01T00:00:00Z&modified_before=2026-01-02T02:00:00%2B02:00")
                .unwrap();
        assert_eq!(query.filter.from_id, Some(5));
        assert_eq!(query.filter.to_id, Some(9));
        assert_eq!(
            query.filter.modified_since.map(|t| t.to_rfc3339()),
            Some("2026-01-01T00:00:00+00:00".to_owned())
        );
        assert_eq!(
            query.filter.modified_before.map(|t| t.to_rfc3339()),
            Some("2026-01-02T00:00:00+00:00".to_owned())
        );
    }

    #[test]
    fn recognises_each_style() {
        assert_eq!(paging_of(""), Ok(Paging::First { limit: None }));
        assert_eq!(paging_of("limit=5"), Ok(Paging::First { limit: Some(5) }));
        assert_eq!(
            paging_of("offset=10&limit=5"),
            Ok(Paging::Offset {
                offset: 10,
                limit: Some(5)
            })
        );
        assert_eq!(
            paging_of("per_page=5"),
            Ok(Paging::Page {
                page: 1,
                per_page: Some(5)
            })
        );
        assert_eq!(
            paging_of("page=3"),
            Ok(Paging::Page {
                page: 3,
                per_page: None
            })
        );
        let cursor = Cursor { last_id: 41 };
        assert_eq!(
            paging_of(&format!("cursor={}&limit=2", cursor.encode())),
            Ok(Paging::Cursor {
                after: Some(cursor),
                limit: Some(2)
            })
        );
        assert_eq!(
            paging_of("cursor="),
            Ok(Paging::Cursor {
                after: None,
                limit: None
            })
        );
    }

    #[test]
    fn refuses_mixed_styles_naming_the_parameters() {
        let err = paging_of("offset=0&cursor=abc").unwrap_err();
        assert_eq!(err, QueryError::MixedStyles(vec!["offset", "cursor"]));
        assert_eq!(err.field(), "offset,cursor");
        assert!(err.to_string().contains("`offset`, `cursor`"), "{err}");
        assert_eq!(
            paging_of("page=1&limit=10"),
            Err(QueryError::MixedStyles(vec!["limit", "page"]))
        );
        assert_eq!(
            paging_of("per_page=1&offset=10"),
            Err(QueryError::MixedStyles(vec!["offset", "per_page"]))
        );
    }

    #[test]
    fn refuses_bad_values_naming_the_parameter() {
        let field_of = |raw: &str| ListQuery::parse(raw).unwrap_err().field();
        assert_eq!(field_of("from_id=-1"), "from_id");
        assert_eq!(field_of("to_id=+3"), "to_id");
        assert_eq!(field_of("offset=1e3"), "offset");
        assert_eq!(field_of("limit=0"), "limit");
        assert_eq!(field_of("page=0"), "page");
        assert_eq!(field_of("per_page=x"), "per_page");
        assert_eq!(field_of("modified_since=yesterday"), "modified_since");
        // An unencoded '+' decodes to a space: the client must percent-encode offsets.
        assert_eq!(
            field_of("modified_before=2026-01-01T00:00:00+01:00"),
            "modified_before"
        );
        assert_eq!(field_of("cursor=bm9wZQ"), "cursor");
        assert_eq!(field_of("sort=id"), "sort");
        assert_eq!(field_of("limit=1&limit=2"), "limit");
    }
}
