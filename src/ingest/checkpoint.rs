//! Resume state, proportional to the frontier of the work rather than to its history.
//!
//! On disk, an append-only journal: a JSON header line, then one line per fact, `F <key>` (this file is fully
//! loaded) or `D <dir>` (everything the listing admitted under this directory is loaded), the name a JSON string.
//! A directory collapses to its `D` marker as soon as the lister has sealed it (sent all of its files) and every
//! one of them settled; markers of its sub-directories and its per-file entries are then dropped from memory, and
//! from disk at the next compaction (temp → fsync → rename). Lines are appended as facts happen and the journal
//! is flushed and fsynced once a second; a torn last line after a crash is ignored, so kill -9 at any moment
//! resumes exactly (what was not yet journaled is loaded again and counted as duplicates, never lost).
//!
//! A file is marked only after every one of its documents was acknowledged by OpenSearch (or quarantined).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

const VERSION: u32 = 2;
/// Compact once the journal is this large and at least `COMPACT_RATIO` times the live state.
const COMPACT_MIN_BYTES: u64 = 1 << 20;
const COMPACT_RATIO: u64 = 4;

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    source: String,
}

/// The version-1 format (one JSON document rewritten whole), read to migrate.
#[derive(Deserialize)]
struct V1 {
    version: u32,
    source: String,
    done: BTreeMap<String, BTreeSet<String>>,
}

pub struct Checkpoint {
    source: String,
    path: PathBuf,
    /// Collapsed directories (each ends with `/`, or is `""` for the whole source); none is inside another.
    done_dirs: BTreeSet<String>,
    /// Files loaded one by one in directories not yet collapsed: directory → file names.
    done_files: BTreeMap<String, BTreeSet<String>>,
    files: usize,
    /// Bytes the live state takes as journal lines (what a compaction writes).
    live_bytes: u64,
    journal: Option<BufWriter<File>>,
    journal_bytes: u64,
    written: u64,
    dirty: bool,
    /// Not persisted (`--dump-bulk`): marks are kept in memory only.
    ephemeral: bool,
    /// Held for the life of the checkpoint: two runs appending to one journal would lose each other's lines.
    _lock: Option<File>,
}

/// `a/b/c.json.gz` → (`a/b/`, `c.json.gz`).
pub fn split(key: &str) -> (&str, &str) {
    match key.rfind('/') {
        Some(i) => (&key[..=i], &key[i + 1..]),
        None => ("", key),
    }
}

/// The directories holding `path`, outermost first: `""`, `a/`, `a/b/` for `a/b/c` (and for `a/b/c/`, itself
/// excluded).
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::once("").chain(path.char_indices().filter(|&(i, c)| c == '/' && i + 1 < path.len()).map(move |(i, _)| &path[..=i]))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

/// An exclusive lock on `<path>.lock`, or an error saying another run holds it.
fn lock(path: &Path) -> anyhow::Result<File> {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    let f = crate::fsutil::open_rw(Path::new(&p))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(crate::error::usage(format!(
            "checkpoint {} is in use by another trailsetup run; wait for it, or pass --checkpoint FILE to keep a separate one",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::Error::from(e).context(format!("locking {}", PathBuf::from(&p).display()))),
    }
}

fn line(kind: char, name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 4);
    s.push(kind);
    s.push(' ');
    s.push_str(&serde_json::to_string(name).expect("a string serializes"));
    s.push('\n');
    s
}

fn line_len(name: &str) -> u64 {
    name.len() as u64 + 5
}

impl Checkpoint {
    /// Load the checkpoint at `path` for `source`, or start empty (`restart`, none yet, other source).
    /// `ephemeral`: never touch the disk.
    pub fn open(path: &Path, source: &str, restart: bool) -> anyhow::Result<Checkpoint> {
        Self::load(path, source, restart, false)
    }

    /// What `open` would load, read without taking the lock or writing anything (a dry run beside a run in
    /// progress): marks made afterwards stay in memory. `restart`, a missing checkpoint, or one for another
    /// source read as empty.
    pub fn peek(path: &Path, source: &str, restart: bool) -> anyhow::Result<Checkpoint> {
        Self::load(path, source, restart, true)
    }

    /// An empty checkpoint for `source` at `path`, holding no lock and touching nothing.
    fn empty(path: &Path, source: &str, ephemeral: bool) -> Checkpoint {
        Checkpoint {
            source: source.into(),
            path: path.into(),
            done_dirs: BTreeSet::new(),
            done_files: BTreeMap::new(),
            files: 0,
            live_bytes: 0,
            journal: None,
            journal_bytes: 0,
            written: 0,
            dirty: false,
            ephemeral,
            _lock: None,
        }
    }

    fn load(path: &Path, source: &str, restart: bool, read_only: bool) -> anyhow::Result<Checkpoint> {
        // read-only: compact() and append() never touch the disk
        let mut c = Self::empty(path, source, read_only);
        if !read_only {
            c._lock = Some(lock(path)?);
        }
        let tmp = tmp_path(path);
        // a dry run only reads: what it says of another source's checkpoint is what a real run would do
        let over = if read_only { "a real run would start over" } else { "starting over" };
        let remove = |p: &Path| {
            if !read_only {
                let _ = std::fs::remove_file(p);
            }
        };
        if restart {
            remove(&tmp);
            remove(path);
            return Ok(c);
        }
        // Only "not found" means "no progress yet": any other read error (permissions, I/O) stops the run, so a
        // checkpoint that exists is never silently reset.
        let read = |p: &Path| match std::fs::read(p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::from(e)
                .context(format!("reading checkpoint {} (fix its permissions, or pass --restart to start over)", p.display()))),
        };
        let (found, from_tmp) = match read(path)? {
            Some(b) => (Some(b), false),
            // Version 1 could crash between writing its temp file and renaming it: a complete temp file is kept.
            None => match read(&tmp)? {
                Some(b) => (Some(b), true),
                None => (None, false),
            },
        };
        let Some(bytes) = found else { return Ok(c) };
        if bytes.first() == Some(&b'{') && !bytes.contains(&b'\n') || bytes.starts_with(b"{\"version\":1") {
            let Ok(v1) = serde_json::from_slice::<V1>(&bytes) else {
                if from_tmp {
                    remove(&tmp);
                    return Ok(c);
                }
                anyhow::bail!("checkpoint {} is unreadable; pass --restart to start over", path.display());
            };
            remove(&tmp);
            if v1.version != 1 {
                anyhow::bail!("checkpoint {} has version {}; pass --restart to start over", path.display(), v1.version);
            }
            if v1.source != source {
                tracing::warn!("checkpoint {} is for {:?}, not {source:?}: {over}", path.display(), v1.source);
                remove(path);
                return Ok(c);
            }
            for (d, names) in v1.done {
                for n in names {
                    c.insert_file(&format!("{d}{n}"));
                }
            }
            c.compact()?;
            tracing::info!("checkpoint {} migrated to the journal format", path.display());
            return Ok(c);
        }
        remove(&tmp);
        let mut lines = bytes.split_inclusive(|&b| b == b'\n');
        let header: Option<Header> = lines.next().and_then(|l| serde_json::from_slice(l).ok());
        let Some(header) = header else {
            anyhow::bail!("checkpoint {} is unreadable; pass --restart to start over", path.display());
        };
        if header.version != VERSION {
            anyhow::bail!(
                "checkpoint {} has version {} (this trailsetup writes {VERSION}); pass --restart to start over",
                path.display(),
                header.version
            );
        }
        if header.source != source {
            tracing::warn!("checkpoint {} is for {:?}, not {source:?}: {over}", path.display(), header.source);
            remove(path);
            return Ok(c);
        }
        let mut valid = 0usize;
        for l in lines {
            let torn = !l.ends_with(b"\n");
            let parsed = (l.len() > 2 && l[1] == b' ')
                .then(|| serde_json::from_slice::<String>(l[2..].strip_suffix(b"\n").unwrap_or(&l[2..])).ok())
                .flatten();
            match (l[0], parsed) {
                (b'F', Some(k)) if !torn => {
                    c.insert_file(&k);
                }
                (b'D', Some(d)) if !torn => {
                    c.insert_dir(&d);
                }
                // kill -9 in the middle of an append: the last line is cut short; what it said is redone.
                _ if torn => break,
                _ => anyhow::bail!("checkpoint {} is damaged at byte {valid}; pass --restart to start over", path.display()),
            }
            valid += l.len();
        }
        c.journal_bytes = bytes.len() as u64;
        // Start clean: the torn tail (if any) and everything superseded are dropped now.
        c.compact()?;
        Ok(c)
    }

    /// A checkpoint that is never written (a run that sends nothing, such as `--dump-bulk`).
    /// It has no path and never reads, writes, locks or removes a file.
    pub fn ephemeral(source: &str) -> Checkpoint {
        Self::empty(Path::new(""), source, true)
    }

    fn dir_done(&self, dir: &str) -> bool {
        ancestors(dir).chain(std::iter::once(dir)).any(|d| self.done_dirs.contains(d))
    }

    /// The collapsed directories as they are now, for the lister (which skips them).
    pub fn done_dirs(&self) -> super::source::DoneDirs {
        let dirs = std::sync::Arc::new(self.done_dirs.clone());
        std::sync::Arc::new(move |dir: &str| ancestors(dir).chain(std::iter::once(dir)).any(|d| dirs.contains(d)))
    }

    /// Is everything under `dir` (ending with `/`, or `""`) already loaded?
    pub fn is_dir_done(&self, dir: &str) -> bool {
        self.dir_done(dir)
    }

    pub fn is_done(&self, key: &str) -> bool {
        let (d, f) = split(key);
        self.dir_done(d) || self.done_files.get(d).is_some_and(|s| s.contains(f))
    }

    fn insert_file(&mut self, key: &str) -> bool {
        if self.is_done(key) {
            return false;
        }
        let (d, f) = split(key);
        self.done_files.entry(d.to_string()).or_default().insert(f.to_string());
        self.files += 1;
        self.live_bytes += line_len(key);
        true
    }

    fn insert_dir(&mut self, dir: &str) -> bool {
        if self.dir_done(dir) {
            return false;
        }
        let inner: Vec<String> = self.done_dirs.range(dir.to_string()..).take_while(|d| d.starts_with(dir)).cloned().collect();
        for d in inner {
            self.live_bytes -= line_len(&d);
            self.done_dirs.remove(&d);
        }
        let dirs: Vec<String> = self.done_files.range(dir.to_string()..).take_while(|(d, _)| d.starts_with(dir)).map(|(d, _)| d.clone()).collect();
        for d in dirs {
            if let Some(names) = self.done_files.remove(&d) {
                self.files -= names.len();
                self.live_bytes -= names.iter().map(|n| line_len(n) + d.len() as u64).sum::<u64>();
            }
        }
        self.live_bytes += line_len(dir);
        self.done_dirs.insert(dir.to_string());
        true
    }

    fn append(&mut self, text: &str) -> anyhow::Result<()> {
        self.dirty = true;
        if self.ephemeral {
            return Ok(());
        }
        if self.journal.is_none() {
            self.compact()?;
        }
        let j = self.journal.as_mut().expect("opened by compact");
        j.write_all(text.as_bytes()).with_context(|| format!("writing checkpoint {}", self.path.display()))?;
        self.journal_bytes += text.len() as u64;
        self.written += text.len() as u64;
        Ok(())
    }

    /// This file is fully loaded.
    pub fn mark(&mut self, key: &str) -> anyhow::Result<()> {
        if self.insert_file(key) {
            self.append(&line('F', key))?;
        }
        Ok(())
    }

    /// Everything the listing admitted under `dir` is loaded.
    pub fn mark_dir(&mut self, dir: &str) -> anyhow::Result<()> {
        if self.insert_dir(dir) {
            self.append(&line('D', dir))?;
        }
        Ok(())
    }

    /// Files known one by one (those inside collapsed directories are not counted).
    pub fn len(&self) -> usize {
        self.files
    }

    /// Collapsed directories.
    pub fn dirs(&self) -> usize {
        self.done_dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files == 0 && self.done_dirs.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written to the checkpoint by this process (journal appends and compactions).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Bytes the checkpoint file takes on disk now.
    pub fn bytes_on_disk(&self) -> u64 {
        self.journal_bytes
    }

    /// Make what was appended durable (flush + fsync), and compact when the journal has grown well past the
    /// live state. Called about once a second and at the end.
    pub fn save(&mut self) -> anyhow::Result<()> {
        if !self.dirty || self.ephemeral {
            return Ok(());
        }
        if self.journal_bytes > COMPACT_MIN_BYTES && self.journal_bytes > COMPACT_RATIO * self.live_bytes {
            return self.compact();
        }
        let j = self.journal.as_mut().expect("dirty implies open");
        j.flush().with_context(|| format!("writing checkpoint {}", self.path.display()))?;
        j.get_ref().sync_data().with_context(|| format!("syncing checkpoint {}", self.path.display()))?;
        self.dirty = false;
        Ok(())
    }

    /// At the end of a run: leave only the live state on disk (a finished run leaves a single marker).
    pub fn close(&mut self) -> anyhow::Result<()> {
        if self.ephemeral || self.journal.is_none() {
            return Ok(());
        }
        self.compact()
    }

    /// Write the live state to a temp file, fsync, rename over the journal, and keep appending to it.
    fn compact(&mut self) -> anyhow::Result<()> {
        if self.ephemeral {
            return Ok(());
        }
        self.journal = None;
        let tmp = tmp_path(&self.path);
        let f = crate::fsutil::create(&tmp).with_context(|| format!("writing checkpoint {}", tmp.display()))?;
        let mut w = BufWriter::new(f);
        let mut n = 0u64;
        let mut put = |w: &mut BufWriter<File>, s: &str| -> std::io::Result<()> {
            n += s.len() as u64;
            w.write_all(s.as_bytes())
        };
        let header = serde_json::to_string(&Header { version: VERSION, source: self.source.clone() })? + "\n";
        put(&mut w, &header)?;
        for d in &self.done_dirs {
            put(&mut w, &line('D', d))?;
        }
        for (d, names) in &self.done_files {
            for f in names {
                put(&mut w, &line('F', &format!("{d}{f}")))?;
            }
        }
        w.flush()?;
        w.get_ref().sync_all()?;
        drop(w);
        std::fs::rename(&tmp, &self.path).with_context(|| format!("renaming checkpoint to {}", self.path.display()))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        let f = crate::fsutil::append(&self.path).with_context(|| format!("opening checkpoint {}", self.path.display()))?;
        self.journal = Some(BufWriter::with_capacity(64 * 1024, f));
        self.journal_bytes = n;
        self.written += n;
        self.dirty = false;
        Ok(())
    }
}

/// Which directories are finished: the lister seals a directory once it has sent every file under it; a sealed
/// directory whose files all settled completely is done. Only directories with work in flight are held.
#[derive(Default)]
pub struct Frontier {
    nodes: HashMap<String, Node>,
}

#[derive(Default)]
struct Node {
    /// Files dispatched under this directory (at any depth) and not yet settled.
    outstanding: u64,
    sealed: bool,
    /// A file under it failed: it cannot collapse in this run (the file is retried next run).
    failed: bool,
}

impl Frontier {
    /// A file is on its way.
    pub fn dispatch(&mut self, key: &str) {
        for d in ancestors(key) {
            self.nodes.entry(d.to_string()).or_default().outstanding += 1;
        }
    }

    /// A dispatched file settled; returns the directories this finished, innermost first.
    pub fn settle(&mut self, key: &str, complete: bool) -> Vec<String> {
        let dirs: Vec<&str> = ancestors(key).collect();
        for d in &dirs {
            if let Some(n) = self.nodes.get_mut(*d) {
                n.outstanding = n.outstanding.saturating_sub(1);
                n.failed |= !complete;
                // Nothing in flight, nothing failed, not sealed yet: a later seal finds it finished anyway.
                if n.outstanding == 0 && !n.failed && !n.sealed {
                    self.nodes.remove(*d);
                }
            }
        }
        let mut out = Vec::new();
        for d in dirs.iter().rev() {
            if self.finished(d) {
                self.nodes.remove(*d);
                out.push(d.to_string());
            }
        }
        out
    }

    /// The lister sent everything under `dir`; returns the directories this finished.
    pub fn seal(&mut self, dir: &str) -> Vec<String> {
        self.nodes.entry(dir.to_string()).or_default().sealed = true;
        if self.finished(dir) {
            self.nodes.remove(dir);
            return vec![dir.to_string()];
        }
        Vec::new()
    }

    fn finished(&self, dir: &str) -> bool {
        self.nodes.get(dir).is_some_and(|n| n.sealed && n.outstanding == 0 && !n.failed)
    }

    /// Directories held (for the memory tests).
    pub fn held(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_of_keys() {
        assert_eq!(ancestors("a/b/c.gz").collect::<Vec<_>>(), ["", "a/", "a/b/"]);
        assert_eq!(ancestors("a/b/").collect::<Vec<_>>(), ["", "a/"]);
        assert_eq!(ancestors("top.json").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn journal_roundtrip_collapse_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp");
        let mut c = Checkpoint::open(&p, "src", false).unwrap();
        assert!(c.is_empty());
        c.mark("a/b/c.json.gz").unwrap();
        c.mark("a/b/d.json.gz").unwrap();
        c.mark("top.json").unwrap();
        c.save().unwrap();
        // one process at a time
        let e = Checkpoint::open(&p, "src", false).err().unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
        drop(c);
        let mut c = Checkpoint::open(&p, "src", false).unwrap();
        assert!(c.is_done("a/b/c.json.gz") && c.is_done("top.json") && !c.is_done("a/b/e.json.gz"));
        assert_eq!(c.len(), 3);
        // a directory collapses: its files are dropped, everything under it is done
        c.mark_dir("a/").unwrap();
        assert_eq!((c.len(), c.dirs()), (1, 1));
        assert!(c.is_done("a/x/y/z.json.gz") && c.is_dir_done("a/b/"));
        c.mark("a/b/new.json.gz").unwrap(); // already covered: no line
        c.save().unwrap();
        drop(c);
        let size = std::fs::metadata(&p).unwrap().len();
        // kill -9 in the middle of an append: a torn line is ignored
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"F \"q/half").unwrap();
        drop(f);
        let c3 = Checkpoint::open(&p, "src", false).unwrap();
        assert!(c3.is_done("a/b/c.json.gz") && c3.is_done("top.json") && !c3.is_done("q/half"));
        assert_eq!((c3.len(), c3.dirs()), (1, 1));
        // opening compacted the journal: superseded lines and the torn tail are gone
        assert!(std::fs::metadata(&p).unwrap().len() < size);
        drop(c3);
        // other source: ignored; restart: ignored
        assert!(Checkpoint::open(&p, "other", false).unwrap().is_empty());
        assert!(Checkpoint::open(&p, "src", true).unwrap().is_empty());
        // a damaged line inside the journal is an error that names --restart
        std::fs::write(&p, "{\"version\":2,\"source\":\"src\"}\nX nonsense\nF \"a\"\n").unwrap();
        let e = Checkpoint::open(&p, "src", false).err().unwrap();
        assert!(e.to_string().contains("--restart"), "{e}");
        std::fs::write(&p, b"{not json").unwrap();
        assert!(Checkpoint::open(&p, "src", false).err().unwrap().to_string().contains("--restart"));
    }

    #[test]
    fn peek_reads_a_journal_in_use_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp");
        assert!(Checkpoint::peek(&p, "src", false).unwrap().is_empty(), "no checkpoint yet reads as empty");
        assert!(!p.exists() && !dir.path().join("cp.lock").exists(), "peek created nothing");
        let mut c = Checkpoint::open(&p, "src", false).unwrap();
        c.mark("a/b/c.json.gz").unwrap();
        c.mark_dir("a/d/").unwrap();
        c.save().unwrap();
        let before = std::fs::read(&p).unwrap();
        // the run still holds the lock; a dry run reads beside it
        let mut q = Checkpoint::peek(&p, "src", false).unwrap();
        assert!(q.is_done("a/b/c.json.gz") && q.is_dir_done("a/d/") && !q.is_done("a/b/x.json.gz"));
        q.mark("a/b/x.json.gz").unwrap();
        q.save().unwrap();
        q.close().unwrap();
        assert!(q.is_done("a/b/x.json.gz"), "marks after a peek live in memory");
        // another source's checkpoint reads as empty and is left where it is
        assert!(Checkpoint::peek(&p, "other", false).unwrap().is_empty());
        // --restart: a dry run counts everything, and the journal stays
        assert!(Checkpoint::peek(&p, "src", true).unwrap().is_empty());
        assert_eq!(std::fs::read(&p).unwrap(), before, "peek wrote nothing");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn version_1_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp.json");
        std::fs::write(&p, r#"{"version":1,"source":"src","done":{"a/b/":["c.json.gz"],"":["top.json"]}}"#).unwrap();
        let c = Checkpoint::open(&p, "src", false).unwrap();
        assert!(c.is_done("a/b/c.json.gz") && c.is_done("top.json"));
        assert!(std::fs::read_to_string(&p).unwrap().starts_with("{\"version\":2"));
        drop(c);
        // a version-1 temp file left by a crash before its rename is recovered
        std::fs::remove_file(&p).unwrap();
        std::fs::write(tmp_path(&p), r#"{"version":1,"source":"src","done":{"x/":["y.gz"]}}"#).unwrap();
        let c = Checkpoint::open(&p, "src", false).unwrap();
        assert!(c.is_done("x/y.gz"));
    }

    #[test]
    fn compaction_keeps_the_file_small() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp");
        let mut c = Checkpoint::open(&p, "src", false).unwrap();
        let mut fr = Frontier::default();
        // 400 days of 300 files each: every day is sealed after its files and collapses
        for day in 0..400 {
            let d = format!("AWSLogs/1/CloudTrail/us-east-1/day{day:04}/");
            for i in 0..300 {
                let k = format!("{d}file-{i:04}.json.gz");
                fr.dispatch(&k);
                c.mark(&k).unwrap();
                for done in fr.settle(&k, true) {
                    c.mark_dir(&done).unwrap();
                }
            }
            for done in fr.seal(&d) {
                c.mark_dir(&done).unwrap();
            }
            c.save().unwrap();
        }
        assert_eq!(c.len(), 0);
        assert_eq!(c.dirs(), 400);
        // the journal is bounded by the compaction ratio, not by the 120,000 file lines written
        let on_disk = std::fs::metadata(&p).unwrap().len();
        assert_eq!(on_disk, c.bytes_on_disk());
        assert!(on_disk < COMPACT_MIN_BYTES + 64 * 1024, "{on_disk}");
        assert!(c.bytes_written() > 120_000 * 40);
        // the lister seals the region, then the account: one marker remains
        for d in ["AWSLogs/1/CloudTrail/us-east-1/", "AWSLogs/1/CloudTrail/", "AWSLogs/1/", "AWSLogs/"] {
            for done in fr.seal(d) {
                c.mark_dir(&done).unwrap();
            }
        }
        assert_eq!(c.dirs(), 1);
        assert!(c.is_dir_done("AWSLogs/"));
        assert_eq!(fr.held(), 0, "nothing in flight, nothing held");
    }

    #[test]
    fn frontier_failure_blocks_collapse() {
        let mut fr = Frontier::default();
        fr.dispatch("d/a");
        fr.dispatch("d/b");
        assert!(fr.seal("d/").is_empty());
        assert!(fr.settle("d/a", true).is_empty());
        assert!(fr.settle("d/b", false).is_empty());
        // an empty sealed directory is finished at once
        assert_eq!(fr.seal("e/"), ["e/"]);
        // nested: the parent finishes after the child
        fr.dispatch("p/q/x");
        assert!(fr.seal("p/q/").is_empty());
        assert_eq!(fr.settle("p/q/x", true), ["p/q/"]);
        assert_eq!(fr.seal("p/"), ["p/"]);
    }
}
