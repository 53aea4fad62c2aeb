//! Resume state: which files are fully loaded. Versioned JSON, written temp → fsync → rename, so a crash at any
//! moment leaves either the old or the new checkpoint. A file is added only after every one of its documents
//! was acknowledged by OpenSearch (or quarantined).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// What the checkpoint is about: source and sink. A checkpoint for another source is not used.
    pub source: String,
    /// Completed files, grouped by directory (key prefix up to the last `/`).
    pub done: BTreeMap<String, BTreeSet<String>>,
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    dirty: bool,
}

fn split(key: &str) -> (&str, &str) {
    match key.rfind('/') {
        Some(i) => (&key[..=i], &key[i + 1..]),
        None => ("", key),
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

impl Checkpoint {
    /// Load the checkpoint at `path` for `source`, or start empty (`restart`, none yet, other source).
    pub fn open(path: &Path, source: &str, restart: bool) -> anyhow::Result<Checkpoint> {
        let fresh = Checkpoint { version: VERSION, source: source.into(), path: path.into(), ..Default::default() };
        let tmp = tmp_path(path);
        if restart {
            let _ = std::fs::remove_file(&tmp);
            return Ok(fresh);
        }
        let read = |p: &Path| -> Option<Checkpoint> {
            let text = std::fs::read(p).ok()?;
            serde_json::from_slice::<Checkpoint>(&text).ok()
        };
        let found = match read(path) {
            Some(c) => Some(c),
            None => {
                // A crash between writing the temp file and renaming it: the temp file is complete if it parses.
                let c = read(&tmp);
                if c.is_some() {
                    tracing::info!("recovered checkpoint from {}", tmp.display());
                }
                c
            }
        };
        let _ = std::fs::remove_file(&tmp);
        match found {
            Some(c) if c.version == VERSION && c.source == source => Ok(Checkpoint { path: path.into(), dirty: false, ..c }),
            Some(c) if c.version != VERSION => anyhow::bail!(
                "checkpoint {} has version {} (this trailsetup writes {VERSION}); pass --restart to start over",
                path.display(),
                c.version
            ),
            Some(c) => {
                tracing::warn!("checkpoint {} is for {:?}, not {source:?}: starting over", path.display(), c.source);
                Ok(fresh)
            }
            None if path.exists() => anyhow::bail!("checkpoint {} is unreadable; pass --restart to start over", path.display()),
            None => Ok(fresh),
        }
    }

    pub fn is_done(&self, key: &str) -> bool {
        let (d, f) = split(key);
        self.done.get(d).is_some_and(|s| s.contains(f))
    }

    pub fn mark(&mut self, key: &str) {
        let (d, f) = split(key);
        self.dirty |= self.done.entry(d.to_string()).or_default().insert(f.to_string());
    }

    pub fn len(&self) -> usize {
        self.done.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write atomically if anything changed.
    pub fn save(&mut self) -> anyhow::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = tmp_path(&self.path);
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing checkpoint {}", tmp.display()))?;
        serde_json::to_writer(std::io::BufWriter::new(&mut f), self)?;
        f.flush()?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("renaming checkpoint to {}", self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp.json");
        let mut c = Checkpoint::open(&p, "src", false).unwrap();
        assert!(c.is_empty());
        c.mark("a/b/c.json.gz");
        c.mark("top.json");
        c.save().unwrap();
        let c2 = Checkpoint::open(&p, "src", false).unwrap();
        assert!(c2.is_done("a/b/c.json.gz") && c2.is_done("top.json") && !c2.is_done("a/b/d.json.gz"));
        // other source: ignored; restart: ignored
        assert!(Checkpoint::open(&p, "other", false).unwrap().is_empty());
        assert!(Checkpoint::open(&p, "src", true).unwrap().is_empty());
        // crash between temp write and rename
        std::fs::rename(&p, tmp_path(&p)).unwrap();
        let c3 = Checkpoint::open(&p, "src", false).unwrap();
        assert_eq!(c3.len(), 2);
        assert!(!tmp_path(&p).exists());
        // garbage is an error that names --restart
        std::fs::write(&p, b"{not json").unwrap();
        let e = Checkpoint::open(&p, "src", false).unwrap_err();
        assert!(e.to_string().contains("--restart"));
    }
}
