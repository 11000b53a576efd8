//! Building the blob store from its configuration — files under a directory, or Azure Blob
//! Storage with a connection string, a key, a SAS token or an identity — and signing
//! short-lived URLs where the credential allows it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use object_store::azure::MicrosoftAzureBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use secrecy::ExposeSecret;

use super::compose::BlockCopier;
use super::{BlobError, BlobStore};
use crate::config::{BlobBackend, BlobConfig};

/// The fields of an Azure Storage connection string (`Key=Value;…`).
fn connection_string_field<'a>(conn: &'a str, key: &str) -> Option<&'a str> {
    conn.split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

impl BlobStore {
    pub fn from_config(cfg: &BlobConfig) -> Result<Self, BlobError> {
        match cfg.backend {
            BlobBackend::Local => Self::local(&cfg.root),
            BlobBackend::Azure => Self::azure(cfg),
        }
    }

    /// Azure Blob Storage through `object_store`: a connection string, or an account with a
    /// key, a SAS token, or (neither) workload / managed identity. The builder starts from
    /// the `AZURE_*` environment that AKS workload identity and managed identities provide
    /// (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`); the
    /// configured values take precedence.
    pub fn azure(cfg: &BlobConfig) -> Result<Self, BlobError> {
        let conn = cfg.azure_connection_string.expose_secret();
        let field = |k| connection_string_field(conn, k).filter(|v| !v.is_empty());
        let account = field("AccountName")
            .unwrap_or(&cfg.azure_account)
            .to_owned();
        let key = field("AccountKey")
            .unwrap_or(cfg.azure_access_key.expose_secret())
            .to_owned();
        let sas = field("SharedAccessSignature")
            .unwrap_or(cfg.azure_sas_token.expose_secret())
            .to_owned();
        let endpoint = field("BlobEndpoint")
            .unwrap_or(&cfg.azure_endpoint)
            .trim_end_matches('/')
            .to_owned();
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_account(&account)
            .with_container_name(&cfg.azure_container);
        if !key.is_empty() {
            b = b.with_access_key(&key);
        }
        if !sas.is_empty() {
            // The token is URL-encoded; object_store encodes the pairs again when it appends them.
            let pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
                    .into_owned()
                    .collect();
            b = b.with_sas_authorization(pairs);
        }
        let describe = if endpoint.is_empty() {
            format!(
                "https://{account}.blob.core.windows.net/{}",
                cfg.azure_container
            )
        } else {
            b = b
                .with_endpoint(endpoint.clone())
                .with_allow_http(endpoint.starts_with("http://"));
            format!("{endpoint}/{}", cfg.azure_container)
        };
        let store = Arc::new(b.build().map_err(|e| BlobError::Setup {
            root: describe.clone(),
            source: Box::new(e),
        })?);
        // A SAS token cannot sign other SAS URLs; a key or an identity can.
        let signer: Option<Arc<dyn Signer>> = if sas.is_empty() {
            Some(store.clone())
        } else {
            None
        };
        let copier = match &signer {
            Some(signer) => {
                let http = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .timeout(Duration::from_secs(600))
                    .build()
                    .map_err(|e| BlobError::Setup {
                        root: describe.clone(),
                        source: Box::new(e),
                    })?;
                Some(Arc::new(BlockCopier {
                    signer: signer.clone(),
                    http,
                    unsupported: AtomicBool::new(false),
                }))
            }
            None => None,
        };
        Ok(Self {
            store,
            local_root: None,
            signer,
            copier,
            describe,
        })
    }

    /// Objects as files under `root`, created if missing.
    pub fn local(root: &std::path::Path) -> Result<Self, BlobError> {
        let setup = |e: Box<dyn std::error::Error + Send + Sync>| BlobError::Setup {
            root: root.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(root).map_err(|e| setup(Box::new(e)))?;
        let root = std::fs::canonicalize(root).map_err(|e| setup(Box::new(e)))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| setup(Box::new(e)))?;
        let describe = root.display().to_string();
        Ok(Self {
            store: Arc::new(store),
            local_root: Some(root),
            signer: None,
            copier: None,
            describe,
        })
    }

    /// A short-lived signed URL reading `path`, when the store can make one.
    pub async fn signed_url(
        &self,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        self.sign(http::Method::GET, path, ttl).await
    }

    /// A short-lived signed URL that lets its holder write (PUT) `path`, when the store can
    /// make one (Azure: a SAS URL for Put Blob). Used for direct uploads.
    pub async fn signed_upload_url(
        &self,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        self.sign(http::Method::PUT, path, ttl).await
    }

    async fn sign(
        &self,
        method: http::Method,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(method, &Path::from(path), ttl)
            .await
            .map_err(|source| BlobError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Some(url.to_string()))
    }
}
