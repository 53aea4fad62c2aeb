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
    /// Redact session tokens in raw records, as the documents are redacted (off only with `--no-redact`).
    redact: bool,
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
    /// The file is created 0600 (in a 0700 directory when it makes one).
    pub fn new(path: PathBuf, redact: bool) -> Quarantine {
        Quarantine { path, out: Mutex::new(None), redact }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, line: &Line) -> anyhow::Result<()> {
        // a write and its flush are blocking I/O: off the async workers when called from one
        crate::blocking::run(|| self.write_now(line))
    }

    fn write_now(&self, line: &Line) -> anyhow::Result<()> {
        let mut g = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            let f = crate::fsutil::append(&self.path).with_context(|| format!("opening the quarantine file {}", self.path.display()))?;
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
        let text = if self.redact { redact_session_tokens(&text) } else { text };
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

/// Every `"sessionToken": "<value>"` in a record's text (which may not even be JSON) with its value replaced by
/// `REDACTED`: a record that could not become a document still carries its credentials, and the quarantine keeps
/// them no more than the index does.
pub fn redact_session_tokens(text: &str) -> std::borrow::Cow<'_, str> {
    // also the escaped form, `\"sessionToken\":\"…\"`, of a record that is a JSON string holding JSON
    match redact_quoted(text, "\"") {
        std::borrow::Cow::Borrowed(t) => redact_quoted(t, "\\\""),
        std::borrow::Cow::Owned(t) => std::borrow::Cow::Owned(redact_quoted(&t, "\\\"").into_owned()),
    }
}

/// `redact_session_tokens` for one spelling of the quote (`"`, or `\"` inside a JSON string).
fn redact_quoted<'a>(text: &'a str, q: &str) -> std::borrow::Cow<'a, str> {
    let key = format!("{q}sessionToken{q}");
    let key = key.as_str();
    if !text.contains(key) {
        return std::borrow::Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(k) = text[i..].find(key).map(|k| i + k) {
        let mut j = k + key.len();
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < b.len() && b[j] == b':' {
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if text[j..].starts_with(q) {
                // the string's end: the next closing quote (the next unescaped `"`; for the escaped spelling, the
                // next `\"`), or the end of a cut-off text
                let start = j + q.len();
                let mut e = start;
                if q == "\"" {
                    while e < b.len() && b[e] != b'"' {
                        e += if b[e] == b'\\' { 2 } else { 1 };
                    }
                } else {
                    e = text[start..].find(q).map_or(b.len(), |x| start + x);
                }
                out.push_str(&text[i..start]);
                out.push_str(super::doc::REDACTED);
                i = e.min(b.len());
                continue;
            }
        }
        out.push_str(&text[i..k + key.len()]);
        i = k + key.len();
    }
    out.push_str(&text[i..]);
    std::borrow::Cow::Owned(out)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::redact_session_tokens;

    #[test]
    fn session_tokens_are_redacted_in_raw_text() {
        let t = r#"{"responseElements":{"credentials":{"sessionToken" : "IQo\"JbW==","x":1}},"sessionToken":"b"} broken"#;
        assert_eq!(
            redact_session_tokens(t),
            r#"{"responseElements":{"credentials":{"sessionToken" : "REDACTED","x":1}},"sessionToken":"REDACTED"} broken"#
        );
        // cut off inside the value: nothing of it is left
        assert_eq!(redact_session_tokens(r#"{"sessionToken":"IQoJbW"#), r#"{"sessionToken":"REDACTED"#);
        assert_eq!(redact_session_tokens(r#"{"sessionToken":null}"#), r#"{"sessionToken":null}"#);
        assert_eq!(redact_session_tokens("no token"), "no token");
        // a record that is a JSON string holding JSON: the escaped spelling
        assert_eq!(
            redact_session_tokens(r#""{\"sessionToken\": \"IQoJ\", \"a\": 1}""#),
            r#""{\"sessionToken\": \"REDACTED\", \"a\": 1}""#
        );
    }
}
