//! Where log files come from: a local directory tree, or an S3 bucket listed by per-day key prefixes.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::NaiveDate;
use tokio::sync::mpsc;

/// One log file to load.
#[derive(Debug, Clone)]
pub struct FileRef {
    /// S3 key, or the path relative to the source directory (with `/`).
    pub key: String,
    pub size: u64,
}

/// Narrowing of the key space.
#[derive(Debug, Clone, Default)]
pub struct Select {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// What a CloudTrail key says about itself:
/// `[...]AWSLogs/[o-org/]<account>/CloudTrail[-Insight|-Digest]/<region>/YYYY/MM/DD/<file>`.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyInfo<'a> {
    pub account: &'a str,
    pub kind: &'a str,
    pub region: &'a str,
    pub date: Option<NaiveDate>,
}

pub fn key_info(key: &str) -> Option<KeyInfo<'_>> {
    let at = key.find("AWSLogs/")?;
    let mut parts = key[at + "AWSLogs/".len()..].split('/');
    let mut account = parts.next()?;
    if account.starts_with("o-") {
        account = parts.next()?;
    }
    let kind = parts.next()?;
    if !kind.starts_with("CloudTrail") {
        return None;
    }
    let region = parts.next()?;
    let (y, m, d) = (parts.next(), parts.next(), parts.next());
    let date = match (y, m, d) {
        (Some(y), Some(m), Some(d)) => NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?),
        _ => None,
    };
    Some(KeyInfo { account, kind, region, date })
}

impl Select {
    /// Does the key's own path admit it? Keys outside the CloudTrail layout are admitted (their records are
    /// still filtered on eventTime).
    pub fn admits_key(&self, key: &str) -> bool {
        let Some(k) = key_info(key) else { return true };
        (self.accounts.is_empty() || self.accounts.iter().any(|a| a == k.account))
            && (self.regions.is_empty() || self.regions.iter().any(|r| r == k.region))
            && match k.date {
                // CloudTrail files are named by the delivery window's start; events near midnight can sit in
                // the previous day's folder, so the window is widened by one day on each side for keys.
                Some(d) => self.from.is_none_or(|f| d >= f - chrono::Days::new(1)) && self.to.is_none_or(|t| d <= t + chrono::Days::new(1)),
                None => true,
            }
    }
}

pub fn is_digest(key: &str) -> bool {
    key.contains("CloudTrail-Digest/") || key.contains("_CloudTrail-Digest_")
}

/// A file name that may hold CloudTrail JSON.
pub fn looks_like_log(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with(".json.gz") || k.ends_with(".json") || k.ends_with(".gz")
}

/// What a lister sends: a file to load, or word that every file under a directory has been sent (so that the
/// directory can collapse to one checkpoint marker once its files are loaded).
#[derive(Debug)]
pub enum Listed {
    File(FileRef),
    /// A directory (ending with `/`, or `""` for a whole local tree): nothing more will come from under it.
    Sealed(String),
}

/// Is everything under this directory already loaded (from the checkpoint)? Such directories are not listed.
pub type DoneDirs = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Walk `root` depth-first in name order (runs are reproducible) and send every file, then seal each directory
/// after its subtree. Names that cannot be logs are sent too, so that they are counted as skipped with a reason.
///
/// Symbolic links (as ripgrep and fd treat them): a link whose target is inside `root` is not followed, since
/// the walk reaches the target under its own name (so no file is counted twice); a link that leads out of `root`
/// is skipped unless `follow_links`. Every directory is entered once, by (device, inode): a loop through `..`
/// links or bind mounts ends there. With `follow_links`, every file is counted once by (device, inode).
pub fn walk_dir(root: &Path, sel: &Select, done: &DoneDirs, follow_links: bool, tx: &mpsc::Sender<Listed>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(root).map_err(|e| crate::error::usage(format!("--source-dir {}: {e}", root.display())))?;
    if !meta.is_dir() {
        return Err(crate::error::usage(format!("--source-dir {} is not a directory", root.display())));
    }
    let canon_root = std::fs::canonicalize(root).with_context(|| format!("resolving --source-dir {}", root.display()))?;
    enum Step {
        Enter(PathBuf),
        Leave(String),
    }
    let rel_of = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/");
    let mut dirs_seen: std::collections::HashSet<FileId> = std::collections::HashSet::new();
    let mut files_seen: std::collections::HashSet<FileId> = std::collections::HashSet::new();
    let (mut inside_links, mut outside_links, mut loops) = (0u64, 0u64, 0u64);
    let mut stack = vec![Step::Enter(root.to_path_buf())];
    while let Some(step) = stack.pop() {
        let dir = match step {
            Step::Leave(rel) => {
                if tx.blocking_send(Listed::Sealed(rel)).is_err() {
                    return Ok(());
                }
                continue;
            }
            Step::Enter(dir) => dir,
        };
        let rel_dir = match rel_of(&dir) {
            r if r.is_empty() => r,
            r => r + "/",
        };
        if done(&rel_dir) {
            continue;
        }
        let id = std::fs::metadata(&dir).ok().and_then(|m| file_id(&m));
        if let Some(id) = id {
            if !dirs_seen.insert(id) {
                loops += 1;
                continue;
            }
        }
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            let Ok(ft) = e.file_type() else { continue };
            let path = e.path();
            let mut linked = false;
            let is_dir = if ft.is_symlink() {
                // where does it lead? (a dangling link has no target: skipped below as "not a file")
                let Ok(target) = std::fs::canonicalize(&path) else { continue };
                if target.starts_with(&canon_root) {
                    inside_links += 1;
                    continue;
                }
                if !follow_links {
                    outside_links += 1;
                    continue;
                }
                linked = true;
                target.is_dir()
            } else {
                ft.is_dir()
            };
            if is_dir {
                subdirs.push(path);
                continue;
            }
            let rel = rel_of(&path);
            if !sel.admits_key(&rel) {
                continue;
            }
            let m = std::fs::metadata(&path).ok();
            // following links, one file can be reached by several paths (a file link, a directory link, its own
            // name): each is read once
            if follow_links || linked {
                if let Some(id) = m.as_ref().and_then(file_id) {
                    if !files_seen.insert(id) {
                        continue;
                    }
                }
            }
            let size = m.map(|m| m.len()).unwrap_or(0);
            if tx.blocking_send(Listed::File(FileRef { key: rel, size })).is_err() {
                return Ok(());
            }
        }
        stack.push(Step::Leave(rel_dir));
        stack.extend(subdirs.into_iter().rev().map(Step::Enter));
    }
    if outside_links > 0 {
        tracing::warn!(
            "--source-dir {}: skipped {outside_links} symbolic link(s) leading out of it; pass --follow-symlinks to read them",
            root.display()
        );
    }
    if inside_links > 0 {
        tracing::info!("--source-dir {}: {inside_links} symbolic link(s) inside it not followed (their targets are read under their own names)", root.display());
    }
    if loops > 0 {
        tracing::warn!("--source-dir {}: {loops} directory loop(s) or repeated directories entered once only", root.display());
    }
    Ok(())
}

/// A file's identity: (device, inode).
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt as _;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<FileId> {
    None
}

/// Key prefixes listed at once (discovery levels and day listings).
pub const LIST_CONCURRENCY: usize = 32;

pub struct S3Source {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub prefix: String,
    /// ListObjectsV2 requests made.
    pub list_requests: std::sync::atomic::AtomicU64,
}

/// A `YYYY`, `MM` or `DD` path component.
fn number(component: &str, digits: usize) -> Option<u32> {
    (component.len() == digits && component.bytes().all(|b| b.is_ascii_digit())).then(|| component.parse().ok()).flatten()
}

impl S3Source {
    pub fn new(client: aws_sdk_s3::Client, bucket: String, prefix: String) -> S3Source {
        S3Source { client, bucket, prefix, list_requests: Default::default() }
    }

    fn counted(&self) {
        self.list_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn common_prefixes(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).delimiter("/").into_paginator().send();
        while let Some(page) = pages.next().await {
            self.counted();
            let page = page.map_err(|e| crate::aws::explain(e, &format!("listing s3://{}/{prefix}", self.bucket), "s3:ListBucket"))?;
            out.extend(page.common_prefixes().iter().filter_map(|p| p.prefix().map(String::from)));
        }
        Ok(out)
    }

    /// The sub-prefixes of many prefixes, listed in parallel; `(parent, child)` pairs in key order.
    async fn children(&self, parents: Vec<String>) -> anyhow::Result<Vec<(String, String)>> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let lists: Vec<(String, Vec<String>)> = futures::stream::iter(parents.into_iter().map(|p| async move {
            let c = self.common_prefixes(&p).await?;
            Ok::<_, anyhow::Error>((p, c))
        }))
        .buffer_unordered(LIST_CONCURRENCY)
        .try_collect()
        .await?;
        let mut out: Vec<(String, String)> = lists.into_iter().flat_map(|(p, cs)| cs.into_iter().map(move |c| (p.clone(), c))).collect();
        out.sort();
        Ok(out)
    }

    async fn list_all(&self, prefix: String) -> anyhow::Result<Vec<FileRef>> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            self.counted();
            let page = page.map_err(|e| crate::aws::explain(e, &format!("listing s3://{}/{prefix}", self.bucket), "s3:ListBucket"))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push(FileRef { key: k.to_string(), size: o.size().unwrap_or(0).max(0) as u64 });
                }
            }
        }
        Ok(out)
    }

    /// The account roots under the prefix (`AWSLogs/<acct>/`, and `AWSLogs/<o-org>/<acct>/` of organization
    /// trails), narrowed by `--accounts`. `None`: the prefix is not a CloudTrail layout, list it as it is.
    async fn roots(&self, sel: &Select) -> anyhow::Result<Option<Vec<String>>> {
        let base = self.prefix.clone();
        // one account's logs (`…AWSLogs/<acct>/`, `…AWSLogs/o-org/<acct>/`: a reused trail's): that root alone
        let under: Vec<&str> = base.split_once("AWSLogs/").map(|x| x.1.split('/').filter(|p| !p.is_empty()).collect()).unwrap_or_default();
        let digits = |a: &str| a.chars().all(|c| c.is_ascii_digit());
        let account_root = base.ends_with('/')
            && match under.as_slice() {
                [a] => digits(a),
                [o, a] => o.starts_with("o-") && digits(a),
                _ => false,
            };
        let wanted = |acct: &str| sel.accounts.is_empty() || sel.accounts.iter().any(|a| a == acct);
        if account_root {
            let acct = under.last().copied().unwrap_or_default();
            return Ok(Some(if wanted(acct) { vec![base] } else { Vec::new() }));
        }
        if !base.ends_with("AWSLogs/") {
            return Ok(None);
        }
        let top = self.common_prefixes(&base).await?;
        // the child's own name (S3 returns prefixes under the one asked for; anything else is taken whole)
        let child = |parent: &str, p: &str| -> String { p.strip_prefix(parent).unwrap_or(p).trim_end_matches('/').to_string() };
        let (orgs, accts): (Vec<String>, Vec<String>) = top.into_iter().partition(|p| child(&base, p).starts_with("o-"));
        let mut roots: Vec<String> = accts.into_iter().filter(|p| wanted(&child(&base, p))).collect();
        for (org, acct) in self.children(orgs).await? {
            if wanted(&child(&org, &acct)) {
                roots.push(acct);
            }
        }
        roots.sort();
        Ok(Some(roots))
    }

    /// The day prefixes under one account root (`<root>CloudTrail[-Insight]/<region>/YYYY/MM/DD/`), discovered
    /// level by level with delimiter listings in parallel, pruned by `--regions`, `--from`/`--to` and by what the
    /// checkpoint says is done. A child that is not a date is kept as a unit of its own, listed whole.
    async fn units(&self, root: String, sel: &Select, done: &DoneDirs) -> anyhow::Result<Vec<String>> {
        if done(&root) {
            return Ok(Vec::new());
        }
        // CloudTrail files are named by the delivery window's start; events near midnight can sit in the
        // previous day's folder, so the window is widened by one day on each side for keys.
        let from = sel.from.map(|f| f - chrono::Days::new(1));
        let to = sel.to.map(|t| t + chrono::Days::new(1));
        let ym = |d: NaiveDate| (chrono::Datelike::year(&d) as u32, chrono::Datelike::month(&d));
        let kinds: Vec<String> = ["CloudTrail-Insight/", "CloudTrail/"].iter().map(|k| format!("{root}{k}")).filter(|k| !done(k)).collect();
        let regions: Vec<String> = if sel.regions.is_empty() {
            self.children(kinds).await?.into_iter().map(|(_, r)| r).collect()
        } else {
            kinds.iter().flat_map(|k| sel.regions.iter().map(move |r| format!("{k}{r}/"))).collect()
        };
        let regions: Vec<String> = regions.into_iter().filter(|r| !done(r)).collect();
        let mut units = Vec::new();
        let mut years = Vec::new();
        for (_, y) in self.children(regions).await? {
            let name = y.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
            match number(name, 4) {
                Some(n) if from.is_some_and(|f| n < ym(f).0) || to.is_some_and(|t| n > ym(t).0) => {}
                Some(_) if done(&y) => {}
                Some(_) => years.push(y),
                None => units.push(y),
            }
        }
        let mut months = Vec::new();
        for (y, m) in self.children(years).await? {
            let yn = number(y.trim_end_matches('/').rsplit('/').next().unwrap_or_default(), 4).unwrap_or(0);
            match number(m.strip_prefix(y.as_str()).unwrap_or(&m).trim_end_matches('/'), 2) {
                Some(mn) if from.is_some_and(|f| (yn, mn) < ym(f)) || to.is_some_and(|t| (yn, mn) > ym(t)) => {}
                Some(_) if done(&m) => {}
                Some(_) => months.push(m),
                None => units.push(m),
            }
        }
        for (_, d) in self.children(months).await? {
            let parts: Vec<&str> = d.trim_end_matches('/').rsplit('/').take(3).collect();
            let date = match parts.as_slice() {
                [d, m, y] => number(y, 4).zip(number(m, 2)).zip(number(d, 2)).and_then(|((y, m), d)| NaiveDate::from_ymd_opt(y as i32, m, d)),
                _ => None,
            };
            match date {
                Some(day) if from.is_some_and(|f| day < f) || to.is_some_and(|t| day > t) => {}
                Some(_) if done(&d) => {}
                _ => units.push(d),
            }
        }
        units.sort();
        Ok(units)
    }

    /// List every selected key and send them in key order while later prefixes are still being listed; seal
    /// each listed prefix, and each directory above it (up to the source prefix) once the listing has moved past.
    pub async fn list(&self, sel: &Select, done: &DoneDirs, tx: &mpsc::Sender<Listed>) -> anyhow::Result<()> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let base = self.prefix.clone();
        if base.ends_with('/') && done(&base) {
            return Ok(());
        }
        let Some(roots) = self.roots(sel).await? else {
            // not a CloudTrail layout: one listing of the whole prefix, handed on page by page (loading starts
            // with the first page, and memory does not grow with the number of keys)
            let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&base).into_paginator().send();
            while let Some(page) = pages.next().await {
                self.counted();
                let page = page.map_err(|e| crate::aws::explain(e, &format!("listing s3://{}/{base}", self.bucket), "s3:ListBucket"))?;
                for o in page.contents() {
                    let Some(k) = o.key() else { continue };
                    if is_digest(k) || !sel.admits_key(k) {
                        continue;
                    }
                    let f = FileRef { key: k.to_string(), size: o.size().unwrap_or(0).max(0) as u64 };
                    if tx.send(Listed::File(f)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if base.ends_with('/') {
                let _ = tx.send(Listed::Sealed(base)).await;
            }
            return Ok(());
        };
        // roots are discovered two at a time ahead of the listing; days are listed LIST_CONCURRENCY at a time,
        // and handed on in key order
        let mut listed = futures::stream::iter(roots.into_iter().map(|r| self.units(r, sel, done)))
            .buffered(2)
            .map_ok(|units| futures::stream::iter(units.into_iter().map(Ok::<_, anyhow::Error>)))
            .try_flatten()
            .map_ok(|unit| async move {
                let files = self.list_all(unit.clone()).await?;
                Ok::<_, anyhow::Error>((unit, files))
            })
            .try_buffered(LIST_CONCURRENCY);
        // directories between the source prefix and a unit, outermost first (the unit itself excluded)
        let above = |unit: &str| -> Vec<String> {
            super::checkpoint::ancestors(unit).filter(|d| d.len() > base.len() && d.starts_with(base.as_str())).map(String::from).collect()
        };
        // the directories entered and not yet left, outermost first; the source prefix is left last
        let mut open: Vec<String> = vec![base.clone()];
        while let Some((unit, files)) = listed.try_next().await? {
            // leaving directories the new unit is not under: they are complete
            while let Some(d) = open.last() {
                if unit.starts_with(d.as_str()) {
                    break;
                }
                let d = open.pop().expect("just seen");
                if tx.send(Listed::Sealed(d)).await.is_err() {
                    return Ok(());
                }
            }
            for d in above(&unit) {
                if !open.contains(&d) {
                    open.push(d);
                }
            }
            for f in files {
                if is_digest(&f.key) || !sel.admits_key(&f.key) {
                    continue;
                }
                if tx.send(Listed::File(f)).await.is_err() {
                    return Ok(());
                }
            }
            if unit.ends_with('/') && tx.send(Listed::Sealed(unit)).await.is_err() {
                return Ok(());
            }
        }
        while let Some(d) = open.pop() {
            if tx.send(Listed::Sealed(d)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<bytes::Bytes> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| crate::aws::explain(e, &format!("reading s3://{}/{key}", self.bucket), "s3:GetObject"))?;
        let body = out.body.collect().await.with_context(|| format!("reading s3://{}/{key}", self.bucket))?;
        Ok(body.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k = key_info("AWSLogs/111122223333/CloudTrail/us-east-1/2022/08/18/x.json.gz").unwrap();
        assert_eq!((k.account, k.kind, k.region), ("111122223333", "CloudTrail", "us-east-1"));
        assert_eq!(k.date, NaiveDate::from_ymd_opt(2022, 8, 18));
        let k = key_info("pre/AWSLogs/o-abc123/222/CloudTrail-Insight/eu-west-1/2024/01/02/y.json.gz").unwrap();
        assert_eq!((k.account, k.kind, k.region), ("222", "CloudTrail-Insight", "eu-west-1"));
        assert!(key_info("random/file.json").is_none());
        let sel = Select {
            accounts: vec!["111".into()],
            regions: vec![],
            from: NaiveDate::from_ymd_opt(2022, 8, 18),
            to: NaiveDate::from_ymd_opt(2022, 8, 18),
        };
        assert!(sel.admits_key("AWSLogs/111/CloudTrail/us-east-1/2022/08/18/a.json.gz"));
        assert!(sel.admits_key("AWSLogs/111/CloudTrail/us-east-1/2022/08/19/a.json.gz"));
        assert!(!sel.admits_key("AWSLogs/111/CloudTrail/us-east-1/2022/08/21/a.json.gz"));
        assert!(!sel.admits_key("AWSLogs/222/CloudTrail/us-east-1/2022/08/18/a.json.gz"));
        assert!(is_digest("AWSLogs/1/CloudTrail-Digest/us-east-1/2020/01/01/x.json.gz"));
    }
}
