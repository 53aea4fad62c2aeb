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

/// Walk `root` (sorted, so runs are reproducible) and send every file; names that cannot be logs are sent too,
/// so that they are counted as skipped with a reason.
pub fn walk_dir(root: &Path, sel: &Select, tx: &mpsc::Sender<FileRef>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(root).map_err(|e| {
        crate::error::usage(format!("--source-dir {}: {e}", root.display()))
    })?;
    if !meta.is_dir() {
        return Err(crate::error::usage(format!("--source-dir {} is not a directory", root.display())));
    }
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            let ft = match e.file_type() {
                Ok(t) => t,
                Err(_) => continue,
            };
            let path = e.path();
            if ft.is_dir() || (ft.is_symlink() && path.is_dir()) {
                subdirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            if !sel.admits_key(&rel) {
                continue;
            }
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            if tx.blocking_send(FileRef { key: rel, size }).is_err() {
                return Ok(());
            }
        }
        // depth-first, in name order
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// Days from `from` to `to` inclusive.
fn days(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    from.iter_days().take_while(|d| *d <= to).collect()
}

pub struct S3Source {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub prefix: String,
}

impl S3Source {
    async fn common_prefixes(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| crate::aws::explain(e, &format!("listing s3://{}/{prefix}", self.bucket), "s3:ListBucket"))?;
            out.extend(page.common_prefixes().iter().filter_map(|p| p.prefix().map(String::from)));
        }
        Ok(out)
    }

    async fn list_all(&self, prefix: String) -> anyhow::Result<Vec<FileRef>> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| crate::aws::explain(e, &format!("listing s3://{}/{prefix}", self.bucket), "s3:ListBucket"))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push(FileRef { key: k.to_string(), size: o.size().unwrap_or(0).max(0) as u64 });
                }
            }
        }
        Ok(out)
    }

    /// The key prefixes to list: per account (also inside organization folders), per kind, per region, and per
    /// day when a date window is set, so a narrow backfill never lists the whole bucket.
    pub async fn prefixes(&self, sel: &Select) -> anyhow::Result<Vec<String>> {
        let base = self.prefix.clone();
        let mut roots = Vec::new();
        // one account's logs (`…AWSLogs/<acct>/`, `…AWSLogs/o-org/<acct>/`: a reused trail's): that root alone
        let under: Vec<&str> = base.split_once("AWSLogs/").map(|x| x.1.split('/').filter(|p| !p.is_empty()).collect()).unwrap_or_default();
        let account_root = base.ends_with('/')
            && match under.as_slice() {
                [a] => a.chars().all(|c| c.is_ascii_digit()),
                [o, a] => o.starts_with("o-") && a.chars().all(|c| c.is_ascii_digit()),
                _ => false,
            };
        if account_root {
            let acct = under.last().map(|a| a.to_string()).unwrap_or_default();
            if sel.accounts.is_empty() || sel.accounts.contains(&acct) {
                roots.push(base.clone());
            }
        } else if !base.ends_with("AWSLogs/") {
            return Ok(vec![base]);
        }
        let top = if account_root { Vec::new() } else { self.common_prefixes(&base).await? };
        for p in &top {
            let name = p[base.len()..].trim_end_matches('/');
            if name.starts_with("o-") {
                for q in self.common_prefixes(p).await? {
                    let acct = q[p.len()..].trim_end_matches('/').to_string();
                    if sel.accounts.is_empty() || sel.accounts.contains(&acct) {
                        roots.push(q);
                    }
                }
            } else if sel.accounts.is_empty() || sel.accounts.iter().any(|a| a == name) {
                roots.push(p.clone());
            }
        }
        let mut out = Vec::new();
        for root in roots {
            for kind in ["CloudTrail/", "CloudTrail-Insight/"] {
                let kp = format!("{root}{kind}");
                let regions: Vec<String> = if sel.regions.is_empty() {
                    self.common_prefixes(&kp).await?
                } else {
                    sel.regions.iter().map(|r| format!("{kp}{r}/")).collect()
                };
                for rp in regions {
                    match (sel.from, sel.to) {
                        (Some(f), Some(t)) if (t - f).num_days() <= 3660 => {
                            let (f, t) = (f - chrono::Days::new(1), t + chrono::Days::new(1));
                            out.extend(days(f, t).into_iter().map(|d| format!("{rp}{}/", d.format("%Y/%m/%d"))));
                        }
                        _ => out.push(rp),
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// List every selected key, in key order, sending them as they come.
    pub async fn list(&self, sel: &Select, tx: &mpsc::Sender<FileRef>) -> anyhow::Result<()> {
        use futures::StreamExt as _;
        let prefixes = self.prefixes(sel).await?;
        let mut lists = futures::stream::iter(prefixes.into_iter().map(|p| self.list_all(p))).buffered(8);
        while let Some(files) = lists.next().await {
            for f in files? {
                if is_digest(&f.key) || !sel.admits_key(&f.key) {
                    continue;
                }
                if tx.send(f).await.is_err() {
                    return Ok(());
                }
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
