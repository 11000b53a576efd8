//! Staging files the local backend leaves behind.
//!
//! `object_store`'s local filesystem writes an object to a staging file beside it
//! (`parts/000020.csv#2`) and renames it into place when the write completes. A process
//! killed mid-write, or a write that fails, leaves the staging file: nothing lists it
//! (`object_store` hides names with `#`), so nothing would ever delete it. The sweep removes
//! those not written to for [`STAGING_MAX_AGE`]: a write in progress touches its file
//! continually, so an older one has no writer. (Azure discards uncommitted blocks itself,
//! after a week.)

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{BlobError, BlobStore};

/// A staging file untouched this long has no writer any more.
pub const STAGING_MAX_AGE: Duration = Duration::from_secs(3600);

impl BlobStore {
    /// Removes staging files older than `max_age` under the local backend's root; returns
    /// how many. Does nothing on other backends.
    pub async fn remove_abandoned_staging(&self, max_age: Duration) -> Result<u64, BlobError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(0);
        };
        let setup = |e: std::io::Error| BlobError::Setup {
            root: root.display().to_string(),
            source: Box::new(e),
        };
        let walk_root = root.clone();
        tokio::task::spawn_blocking(move || remove_under(&walk_root, SystemTime::now(), max_age))
            .await
            .map_err(|e| setup(std::io::Error::other(e)))?
            .map_err(setup)
    }
}

/// Removes the abandoned staging files under `dir`. A file or directory that goes away
/// during the walk (renamed into place, removed by another sweeper) is skipped; any other
/// error about one entry is logged and the walk goes on with the next, so one unreadable
/// file does not stop the sweep. Only `dir` itself being unreadable is an error.
fn remove_under(dir: &Path, now: SystemTime, max_age: Duration) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let one = entry.and_then(|entry| remove_if_abandoned(&entry, now, max_age));
        match one {
            Ok(n) => removed += n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "sweeping staging files: skipped an entry"
            ),
        }
    }
    Ok(removed)
}

/// What [`remove_under`] does with one entry: a directory is walked, an old staging file
/// removed; returns how many files went.
fn remove_if_abandoned(
    entry: &std::fs::DirEntry,
    now: SystemTime,
    max_age: Duration,
) -> std::io::Result<u64> {
    let kind = entry.file_type()?;
    if kind.is_dir() {
        return remove_under(&entry.path(), now, max_age);
    }
    if !kind.is_file() || !entry.file_name().to_string_lossy().contains('#') {
        return Ok(0);
    }
    let modified = entry.metadata()?.modified()?;
    if now.duration_since(modified).unwrap_or_default() < max_age {
        return Ok(0);
    }
    std::fs::remove_file(entry.path())?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn old_staging_files_go_and_everything_else_stays() {
        let root = std::env::temp_dir().join(format!("offload-staging-{}", uuid::Uuid::new_v4()));
        let parts = root.join("exports/j/parts");
        std::fs::create_dir_all(&parts).unwrap();
        let write = |name: &str, age: Duration| {
            let path = parts.join(name);
            std::fs::write(&path, b"").unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(SystemTime::now() - age).unwrap();
        };
        let hour = Duration::from_secs(3600);
        write("000020.csv#2", hour * 2);
        write("000021.csv#1", Duration::ZERO);
        write("000019.csv", hour * 2);
        let blobs = BlobStore::local(&root).unwrap();
        assert_eq!(
            blobs
                .remove_abandoned_staging(STAGING_MAX_AGE)
                .await
                .unwrap(),
            1
        );
        let mut left: Vec<String> = std::fs::read_dir(&parts)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["000019.csv", "000021.csv#1"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
