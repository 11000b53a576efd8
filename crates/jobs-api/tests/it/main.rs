//! The API's own tests: its contract, checked without the other services.

mod openapi;
