//! Integration tests of the export kind: result assembly on local files and on Azure Blob
//! Storage (Azurite), and exports through the whole pipeline compared byte for byte with
//! Postgres's own COPY.
#![allow(clippy::unwrap_used)]

mod blob_azure;
mod pipeline;
