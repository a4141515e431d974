//! Object storage (SPEC §9): `--input`, `--out` and `--parts` given as `s3://bucket/prefix`, through
//! the `object_store` crate, configured by the standard variables (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`,
//! `AWS_CONDITIONAL_PUT=etag`). The engine itself works on local folders: what it reads is fetched
//! into a local folder first, what it publishes is uploaded after. There is no rename on object
//! storage, so a publication uploads its files under a fresh prefix and then creates one marker
//! with create-if-absent (`If-None-Match: *`): of concurrent creates of one marker exactly one wins.
//! Files move in parts of [`CHUNK`] bytes, so memory does not grow with a file's size.

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bytes moved per request of a large file (S3's multipart parts must be ≥ 5 MiB but the last).
const CHUNK: usize = 16 << 20;

/// Whether a path argument names object storage.
pub fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// What went wrong with object storage, in words naming the object.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A prefix in a bucket, and the runtime its requests run on.
pub struct Remote {
    store: AmazonS3,
    root: String,
    url: String,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// `s3://bucket/prefix`, with the credentials and endpoint of the environment.
    pub fn open(url: &Path) -> Result<Remote, StoreError> {
        let url = url
            .to_str()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let rest = url.strip_prefix("s3://").unwrap_or_default();
        let (bucket, root) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError(format!("{url}: no bucket (s3://bucket/prefix)")));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| StoreError(format!("{url}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("{url}: {e}")))?;
        Ok(Remote {
            store,
            root: root.to_string(),
            url,
            runtime,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key of `rel` under the prefix.
    fn key(&self, rel: &str) -> Key {
        let joined = [self.root.as_str(), rel]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        Key::from(joined)
    }

    fn error(&self, rel: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError(format!("{}/{rel}: {e}", self.url))
    }

    /// The names directly under `rel` (objects and folders), sorted.
    pub fn names(&self, rel: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let key = self.key(rel);
        let listed = self
            .runtime
            .block_on(self.store.list_with_delimiter(Some(&key)))
            .map_err(|e| self.error(rel, e))?;
        let name = |p: &Key| p.filename().unwrap_or_default().to_string();
        let mut files: Vec<String> = listed.objects.iter().map(|o| name(&o.location)).collect();
        let mut folders: Vec<String> = listed.common_prefixes.iter().map(name).collect();
        files.sort();
        folders.sort();
        Ok((files, folders))
    }

    /// An object's bytes, or none when there is no such object.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(rel);
        let got = self.runtime.block_on(async {
            match self.store.get(&key).await {
                Ok(got) => got.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map(|b| b.map(|b| b.to_vec()))
            .map_err(|e| self.error(rel, e))
    }

    /// Creates `rel` with `bytes` if it does not exist: false when it does (another writer won).
    pub fn create(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let key = self.key(rel);
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .runtime
            .block_on(self.store.put_opts(&key, PutPayload::from(bytes), options))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error(
                rel,
                format!("{e} (create-if-absent needs AWS_CONDITIONAL_PUT=etag)"),
            )),
        }
    }

    /// Every object under `rel`, written under `to` at its relative path. Returns the count.
    pub fn fetch_dir(&self, rel: &str, to: &Path) -> Result<usize, StoreError> {
        let (files, folders) = self.names(rel)?;
        std::fs::create_dir_all(to).map_err(|e| self.error(rel, e))?;
        let mut count = 0;
        for file in files {
            self.fetch_file(&join(rel, &file), &to.join(&file))?;
            count += 1;
        }
        for folder in folders {
            count += self.fetch_dir(&join(rel, &folder), &to.join(&folder))?;
        }
        Ok(count)
    }

    fn fetch_file(&self, rel: &str, to: &Path) -> Result<(), StoreError> {
        let key = self.key(rel);
        let err = |e: &dyn std::fmt::Display| self.error(rel, e);
        let mut out = std::fs::File::create(to).map_err(|e| err(&e))?;
        let size = self
            .runtime
            .block_on(self.store.head(&key))
            .map_err(|e| err(&e))?
            .size;
        let mut at = 0u64;
        while at < size {
            let end = (at + CHUNK as u64).min(size);
            let bytes = self
                .runtime
                .block_on(self.store.get_range(&key, at..end))
                .map_err(|e| err(&e))?;
            out.write_all(&bytes).map_err(|e| err(&e))?;
            at = end;
        }
        out.sync_all().map_err(|e| err(&e))
    }

    /// Every file under `from`, uploaded under `rel` at its relative path.
    pub fn push_dir(&self, from: &Path, rel: &str) -> Result<usize, StoreError> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(from)
            .map_err(|e| self.error(rel, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        let mut count = 0;
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                count += self.push_dir(&path, &join(rel, &name))?;
            } else {
                self.push_file(&path, &join(rel, &name))?;
                count += 1;
            }
        }
        Ok(count)
    }

    fn push_file(&self, from: &Path, rel: &str) -> Result<(), StoreError> {
        let key = self.key(rel);
        let err = |e: &dyn std::fmt::Display| self.error(rel, e);
        let mut file = std::fs::File::open(from).map_err(|e| err(&e))?;
        let mut chunk = read_chunk(&mut file).map_err(|e| err(&e))?;
        if chunk.len() < CHUNK {
            return self
                .runtime
                .block_on(self.store.put(&key, PutPayload::from(chunk)))
                .map(|_| ())
                .map_err(|e| err(&e));
        }
        self.runtime
            .block_on(async {
                let mut upload = self.store.put_multipart(&key).await?;
                while !chunk.is_empty() {
                    upload.put_part(PutPayload::from(chunk)).await?;
                    chunk = read_chunk(&mut file).map_err(|e| object_store::Error::Generic {
                        store: "local file",
                        source: Box::new(e),
                    })?;
                }
                upload.complete().await.map(|_| ())
            })
            .map_err(|e| err(&e))
    }
}

fn read_chunk(file: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut chunk = Vec::with_capacity(CHUNK);
    Read::by_ref(file)
        .take(CHUNK as u64)
        .read_to_end(&mut chunk)?;
    Ok(chunk)
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// The published cycles' commit markers (SPEC §9): `OUT/<cycle>/_commits/<n>` holds the prefix
/// (under `OUT/<cycle>/`) of publication n; readers follow the highest n.
pub mod publication {
    use super::{Remote, StoreError, join};
    use std::path::Path;

    fn commits(cycle: &str) -> String {
        join(cycle, "_commits")
    }

    /// The highest marker's number and the prefix it names.
    pub fn current(remote: &Remote, cycle: &str) -> Result<Option<(u64, String)>, StoreError> {
        let (files, _) = remote.names(&commits(cycle))?;
        let Some(n) = files.iter().filter_map(|f| f.parse::<u64>().ok()).max() else {
            return Ok(None);
        };
        let marker = join(&commits(cycle), &n.to_string());
        let prefix = remote
            .get(&marker)?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .ok_or_else(|| remote.error(&marker, "listed, then gone"))?;
        Ok(Some((n, prefix)))
    }

    /// Publishes the local folder `staged` as cycle `cycle`: its files under the prefix `name`
    /// (fresh per run), then the next marker, created if absent (a lost race takes the next
    /// number). Publishing the same `name` again finds it current and does nothing.
    pub fn publish(
        remote: &Remote,
        cycle: &str,
        staged: &Path,
        name: &str,
    ) -> Result<u64, StoreError> {
        let mut next = match current(remote, cycle)? {
            Some((n, prefix)) if prefix == name => return Ok(n),
            Some((n, _)) => n + 1,
            None => 1,
        };
        remote.push_dir(staged, &join(cycle, name))?;
        loop {
            let marker = join(&commits(cycle), &next.to_string());
            if remote.create(&marker, name.as_bytes().to_vec())? {
                return Ok(next);
            }
            next += 1;
        }
    }

    /// The cycle's current publication fetched into `to/<cycle>/`, or an error saying there is
    /// none.
    pub fn fetch(remote: &Remote, cycle: &str, to: &Path) -> Result<(), StoreError> {
        let (_, prefix) = current(remote, cycle)?.ok_or_else(|| {
            StoreError(format!(
                "{}/{cycle}: no publication (no marker under _commits/): run the cycle",
                remote.url()
            ))
        })?;
        remote.fetch_dir(&join(cycle, &prefix), &to.join(cycle))?;
        Ok(())
    }
}

/// `--input s3://…`: the bundle's files fetched into a fresh folder under `local` (the spill
/// folder, or the system's temporary folder), removed when the guard is dropped.
pub fn fetch_input(
    input: &Path,
    local: Option<&Path>,
) -> Result<(PathBuf, Option<tempfile::TempDir>), StoreError> {
    if !is_remote(input) {
        return Ok((input.to_path_buf(), None));
    }
    let remote = Remote::open(input)?;
    let base = local.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let dir = tempfile::Builder::new()
        .prefix(".incentives-input-")
        .tempdir_in(&base)
        .map_err(|e| StoreError(format!("{}: {e}", base.display())))?;
    if remote.fetch_dir("", dir.path())? == 0 {
        return Err(StoreError(format!(
            "{}: no objects under this prefix (the cycle's exports go directly under it)",
            remote.url()
        )));
    }
    Ok((dir.path().to_path_buf(), Some(dir)))
}

/// `--out s3://…` for `explain`, `report`, `query`: the cycle's current publication (the highest
/// marker's) fetched into a fresh local output folder, removed when the guard is dropped.
pub fn fetch_published(
    out: &Path,
    cycle: crate::calendar::Cycle,
) -> Result<(PathBuf, Option<tempfile::TempDir>), StoreError> {
    if !is_remote(out) {
        return Ok((out.to_path_buf(), None));
    }
    let remote = Remote::open(out)?;
    let dir = tempfile::Builder::new()
        .prefix(".incentives-published-")
        .tempdir()
        .map_err(|e| StoreError(e.to_string()))?;
    publication::fetch(&remote, &cycle.to_string(), dir.path())?;
    Ok((dir.path().to_path_buf(), Some(dir)))
}

/// The file in a local output folder that says it stages for object storage (its URL).
const REMOTE_OF: &str = ".remote-out";

/// `--out s3://…` for `run` and `merge`: the local folder outputs are staged in before their
/// upload (`STATE/remote-out/<digest of the URL>`, kept: a publication that failed after the
/// commit is finished from it by the next run), marked with the URL it publishes to.
pub fn staging_root(state: &Path, out: &Path) -> Result<PathBuf, StoreError> {
    use sha2::Digest;
    let url = out.to_string_lossy();
    let url = url.trim_end_matches('/');
    let digest = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    let root = state.join("remote-out").join(&digest[..16]);
    let err = |e: std::io::Error| StoreError(format!("{}: {e}", root.display()));
    std::fs::create_dir_all(&root).map_err(err)?;
    std::fs::write(root.join(REMOTE_OF), format!("{url}\n")).map_err(err)?;
    Ok(root)
}

/// The object storage a local output folder stages for, if it does.
pub fn remote_of(out_root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(out_root.join(REMOTE_OF)).ok()?;
    Some(PathBuf::from(text.trim()))
}

/// The object storage a staged folder goes to, and its prefix there (its name, unhidden).
fn staged_for(out_root: &Path, staged: &Path) -> Result<(Remote, String), StoreError> {
    let url = remote_of(out_root)
        .ok_or_else(|| StoreError(format!("{}: not a staging root", out_root.display())))?;
    let name = staged
        .file_name()
        .map(|n| n.to_string_lossy().trim_start_matches('.').to_string())
        .unwrap_or_default();
    Ok((Remote::open(&url)?, name))
}

/// Publishes the staged folder of cycle `cycle` to the object storage `out_root` stages for
/// (the caller removes it once the state records the publication). Returns where it went.
pub fn publish_staged(
    out_root: &Path,
    cycle: crate::calendar::Cycle,
    staged: &Path,
) -> Result<String, StoreError> {
    let (remote, name) = staged_for(out_root, staged)?;
    let n = publication::publish(&remote, &cycle.to_string(), staged, &name)?;
    Ok(format!("{}/{cycle}/{name} (_commits/{n})", remote.url()))
}

/// Whether a staged publication to object storage is done (the current marker names it).
pub fn is_published(
    out_root: &Path,
    cycle: crate::calendar::Cycle,
    staged: &Path,
) -> Result<bool, StoreError> {
    let (remote, name) = staged_for(out_root, staged)?;
    Ok(publication::current(&remote, &cycle.to_string())?.is_some_and(|(_, p)| p == name))
}

/// A month's steps with `--parts s3://…` (SPEC §9): each step reads a local copy of what it
/// needs and publishes its folder as `PARTS/<step>/<attempt>/` followed by the marker
/// `PARTS/<step>.done` (naming the attempt), created if absent: the first attempt to finish wins
/// and readers follow the marker, so a late or duplicate attempt changes nothing.
pub mod steps {
    use super::{Remote, StoreError, join};
    use std::path::Path;

    fn marker(step: &str) -> String {
        format!("{step}.done")
    }

    /// The attempt that published `step`, if one did.
    pub fn done(remote: &Remote, step: &str) -> Result<Option<String>, StoreError> {
        Ok(remote
            .get(&marker(step))?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
    }

    /// Publishes the local folder `folder` as `step`'s attempt `attempt`; false when another
    /// attempt had published it first.
    pub fn publish(
        remote: &Remote,
        step: &str,
        folder: &Path,
        attempt: &str,
    ) -> Result<bool, StoreError> {
        remote.push_dir(folder, &join(step, attempt))?;
        remote.create(&marker(step), attempt.as_bytes().to_vec())
    }

    /// What `step` published under `sub` ("" for all of it), fetched into `to`; nothing when
    /// the step has not published (the step that needs it says it is missing).
    pub fn fetch(remote: &Remote, step: &str, sub: &str, to: &Path) -> Result<(), StoreError> {
        let Some(attempt) = done(remote, step)? else {
            return Ok(());
        };
        let from = join(&join(step, &attempt), sub);
        if sub.ends_with(".json") {
            if let Some(bytes) = remote.get(&from)? {
                let err = |e: std::io::Error| StoreError(format!("{}: {e}", to.display()));
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(err)?;
                }
                std::fs::write(to, bytes).map_err(err)?;
            }
            return Ok(());
        }
        remote.fetch_dir(&from, to).map(|_| ())
    }
}
