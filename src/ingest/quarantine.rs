//! The quarantine: a JSON-lines file of every record OpenSearch would not take (or that could not become a
//! document), with the reason, so that nothing is silently lost. `backfill --replay-quarantine FILE` reloads it.
//!
//! Line format: `{"time":..,"file":..,"index":..,"id":..,"status":..,"reason":..,"document":{...}}`; a record
//! that is not valid JSON has `"record_text"` instead of `"document"`; a damaged file has `"kind":"file"`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde_json::value::RawValue;

pub struct Quarantine {
    path: PathBuf,
    out: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    time: String,
    kind: &'a str,
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    reason: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_text: Option<&'a str>,
}

/// One quarantined entry, as read back for a replay.
#[derive(serde::Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub file: String,
    pub index: Option<String>,
    pub id: Option<String>,
    pub document: Option<Box<RawValue>>,
    pub record_text: Option<String>,
}

impl Quarantine {
    pub fn new(path: PathBuf) -> Quarantine {
        Quarantine { path, out: Mutex::new(None) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, line: &Line) -> anyhow::Result<()> {
        let mut g = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("opening the quarantine file {}", self.path.display()))?;
            *g = Some(std::io::BufWriter::new(f));
        }
        let w = g.as_mut().expect("opened above");
        serde_json::to_writer(&mut *w, line)?;
        w.write_all(b"\n")?;
        // Flush every line: a quarantined record must survive a crash of this process.
        w.flush()?;
        Ok(())
    }

    /// A document OpenSearch rejected (or that we gave up retrying).
    pub fn document(&self, file: &str, index: &str, id: &str, status: u16, reason: &serde_json::Value, doc: &[u8]) -> anyhow::Result<()> {
        let text = std::str::from_utf8(doc).ok().map(|s| s.trim_end());
        let raw = text.and_then(|t| serde_json::from_str::<&RawValue>(t).ok());
        self.write(&Line {
            time: now(),
            kind: "document",
            file,
            index: Some(index),
            id: Some(id),
            status: Some(status),
            reason,
            document: raw,
            record_text: if raw.is_none() { text } else { None },
        })
    }

    /// A record that could not become a document (not JSON, not an object).
    pub fn record(&self, file: &str, reason: &str, record: &[u8]) -> anyhow::Result<()> {
        let text = String::from_utf8_lossy(record);
        self.write(&Line {
            time: now(),
            kind: "record",
            file,
            index: None,
            id: None,
            status: None,
            reason: &serde_json::Value::String(reason.into()),
            document: None,
            record_text: Some(&text),
        })
    }

    /// A file that was damaged part way (records after the damage could not be read).
    pub fn file(&self, file: &str, reason: &str) -> anyhow::Result<()> {
        self.write(&Line {
            time: now(),
            kind: "file",
            file,
            index: None,
            id: None,
            status: None,
            reason: &serde_json::Value::String(reason.into()),
            document: None,
            record_text: None,
        })
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
