//! Integration tests of the export kind: result assembly on local files and on Azure Blob
//! Storage (Azurite).
#![allow(clippy::unwrap_used)]

mod blob_azure;
