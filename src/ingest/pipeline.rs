//! The load pipeline shared by `backfill` and `ingest`: files → documents → `_bulk`, with every document
//! accounted for before its file counts as done.
//!
//! ```text
//!  file workers (blocking threads)          coalescer                 bulk requests (N in flight)
//!  read → decode → build docs ── chunks ──▶ merge up to --bulk-mib ──▶ POST _bulk, triage each item:
//!                        (bounded channel)                            201 indexed · 409 duplicate ·
//!                                                                     429/5xx retry · other → quarantine
//! ```
//! Each document carries its file's tracker; a file is complete when its last document is settled, and only
//! then may a checkpoint or an SQS delete follow.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::decode::{self, Flow, Outcome};
use super::doc::{self, DocRules};
use super::opensearch::{check_auth, Client};
use super::quarantine::Quarantine;

/// Totals of a run. `records = indexed + duplicates + quarantined` once everything is settled.
#[derive(Default, Debug)]
pub struct Stats {
    pub files: AtomicU64,
    pub skipped_files: AtomicU64,
    pub damaged_files: AtomicU64,
    pub records: AtomicU64,
    pub filtered: AtomicU64,
    pub indexed: AtomicU64,
    pub duplicates: AtomicU64,
    pub quarantined: AtomicU64,
    pub retries: AtomicU64,
    pub bulk_requests: AtomicU64,
    pub bytes_read: AtomicU64,
}

impl Stats {
    pub fn settled(&self) -> u64 {
        self.indexed.load(Relaxed) + self.duplicates.load(Relaxed) + self.quarantined.load(Relaxed)
    }
}

/// How one file ended, for reports.
#[derive(Debug, Clone)]
pub enum FileResult {
    /// `complete` is false when the sink failed for good while this file was in flight.
    Loaded { records: u64, indexed: u64, duplicates: u64, quarantined: u64, complete: bool },
    Skipped(String),
    Damaged { records: u64, reason: String },
    /// Reading stopped early on request (signal); what was read is delivered, the file is not complete.
    Interrupted { records: u64 },
}

/// Per-file accounting: documents still unsettled, and the completion signal.
pub struct FileTrack {
    pub name: Arc<str>,
    /// Unsettled documents, plus one while the file is still being read.
    pending: AtomicU64,
    indexed: AtomicU64,
    duplicates: AtomicU64,
    quarantined: AtomicU64,
    /// Set when documents were quarantined because the sink failed for good (auth, endpoint): such a file
    /// must not be checkpointed, so a rerun after the fix loads it.
    failed: AtomicBool,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Indexed,
    Duplicate,
    Quarantined,
}

impl FileTrack {
    fn new(name: Arc<str>) -> (Arc<FileTrack>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let t = FileTrack {
            name,
            pending: AtomicU64::new(1),
            indexed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            done: Mutex::new(Some(tx)),
        };
        (Arc::new(t), rx)
    }

    fn add(&self) {
        self.pending.fetch_add(1, Relaxed);
    }

    fn release(&self) {
        if self.pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            if let Some(tx) = self.done.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(());
            }
        }
    }

    fn settle(&self, how: Settle, stats: &Stats) {
        let (mine, all) = match how {
            Settle::Indexed => (&self.indexed, &stats.indexed),
            Settle::Duplicate => (&self.duplicates, &stats.duplicates),
            Settle::Quarantined => (&self.quarantined, &stats.quarantined),
        };
        mine.fetch_add(1, Relaxed);
        all.fetch_add(1, Relaxed);
        self.release();
    }
}

/// One document inside a bulk body: its byte range (action line + source line) and its file.
struct DocRef {
    file: Arc<FileTrack>,
    start: usize,
    end: usize,
}

/// A request body being sent: shared, so retries and the HTTP client need no copy.
struct Batch {
    body: bytes::Bytes,
    docs: Vec<DocRef>,
}

impl From<Chunk> for Batch {
    fn from(c: Chunk) -> Batch {
        Batch { body: bytes::Bytes::from(c.body), docs: c.docs }
    }
}

/// A run of documents in `_bulk` form.
#[derive(Default)]
struct Chunk {
    body: Vec<u8>,
    docs: Vec<DocRef>,
}

impl Chunk {
    fn append(&mut self, other: Chunk) {
        let off = self.body.len();
        self.body.extend_from_slice(&other.body);
        self.docs.extend(other.docs.into_iter().map(|d| DocRef { start: d.start + off, end: d.end + off, file: d.file }));
    }
}

#[derive(Clone, Debug)]
pub struct SinkOptions {
    pub bulk_bytes: usize,
    pub bulk_concurrency: usize,
    pub gzip: bool,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub retry_deadline: Duration,
    /// Write bodies here instead of sending them (benchmark ceiling input).
    pub dump_dir: Option<std::path::PathBuf>,
}

/// Filter on eventTime, both bounds inclusive (UTC, to the millisecond).
#[derive(Clone, Debug, Default)]
pub struct TimeFilter {
    pub from: Option<chrono::NaiveDateTime>,
    pub to: Option<chrono::NaiveDateTime>,
}

impl TimeFilter {
    pub fn is_open(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
    fn admits(&self, t: Option<&doc::Instant>) -> bool {
        if self.is_open() {
            return true;
        }
        // Undated records cannot be placed inside a window: keep them only when no window is set.
        let Some(t) = t else { return false };
        let Some(d) = t.date().and_hms_milli_opt(t.hour, t.minute, t.second, t.milli) else { return false };
        self.from.is_none_or(|f| d >= f) && self.to.is_none_or(|e| d <= e)
    }
}

pub struct Pipeline {
    pub stats: Arc<Stats>,
    rules: DocRules,
    filter: TimeFilter,
    chunk_tx: mpsc::Sender<Chunk>,
    quarantine: Arc<Quarantine>,
    fatal: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    coalescer: tokio::task::JoinHandle<()>,
    /// Chunk size handed from file workers to the coalescer.
    chunk_bytes: usize,
    /// Files decoded at once: decoding is CPU work, however many files are being fetched.
    decoding: Arc<tokio::sync::Semaphore>,
}

impl Pipeline {
    pub fn start(client: Client, rules: DocRules, filter: TimeFilter, opts: SinkOptions, quarantine: Arc<Quarantine>) -> Pipeline {
        let stats = Arc::new(Stats::default());
        let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(8);
        let fatal = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::new(tokio::sync::watch::Sender::new(false));
        let chunk_bytes = (opts.bulk_bytes / 4).clamp(64 * 1024, 1024 * 1024);
        // POST /<prefix>/_bulk: every item names its index; the path keeps IAM policies scoped to `<prefix>*`
        // (es:ESHttpPost on domain/<d>/<prefix>*) valid, where a bare /_bulk would be refused.
        let bulk_path = format!("{}/_bulk", rules.prefix);
        let sink = Arc::new(Sink { client, opts, bulk_path, stats: stats.clone(), quarantine: quarantine.clone(), fatal: fatal.clone(), stop: stop.clone(), stopping: stopping.clone(), seq: AtomicU64::new(0) });
        let coalescer = tokio::spawn(coalesce(chunk_rx, sink));
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let decoding = Arc::new(tokio::sync::Semaphore::new(cores * 2));
        Pipeline { stats, rules, filter, chunk_tx, quarantine, fatal, stop, stopping, coalescer, chunk_bytes, decoding }
    }

    /// The first fatal sink error (auth refused, endpoint gone for good), if any.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn quarantine(&self) -> &Arc<Quarantine> {
        &self.quarantine
    }

    /// Load one file: read it on a blocking thread, hand its documents to the sink, and resolve once every
    /// document is settled. `open` produces the reader (a file, or bytes fetched from S3). `reading` (a
    /// concurrency permit) is released as soon as the file is read, so the next file is read while these
    /// documents are still in flight; memory stays bounded by the chunk channel and the requests in flight.
    pub async fn load<R, F, G>(&self, name: Arc<str>, open: F, reading: G) -> FileResult
    where
        R: Read,
        F: FnOnce() -> std::io::Result<R> + Send + 'static,
        G: Send + 'static,
    {
        let (track, done) = FileTrack::new(name.clone());
        let tx = self.chunk_tx.clone();
        let rules = self.rules.clone();
        let filter = self.filter.clone();
        let stats = self.stats.clone();
        let quarantine = self.quarantine.clone();
        let stop = self.stop.clone();
        let chunk_bytes = self.chunk_bytes;
        let t2 = track.clone();
        let decoding = self.decoding.clone().acquire_owned().await.expect("semaphore never closed");
        let outcome = tokio::task::spawn_blocking(move || {
            let _decoding = decoding;
            let reader = match open() {
                Ok(r) => r,
                Err(e) => return Outcome::Damaged { records: 0, reason: format!("cannot open: {e}") },
            };
            let mut chunk = Chunk::default();
            let o = decode::read_log(CountingReader(reader, &stats.bytes_read), |rec| {
                if stop.load(Relaxed) {
                    return Flow::Stop;
                }
                let rec = match rec {
                    decode::Rec::Whole(r) => r,
                    decode::Rec::TooBig { head, size } => {
                        // never held whole: the start of it is kept in the quarantine with the reason
                        stats.records.fetch_add(1, Relaxed);
                        let reason = format!(
                            "record of {size} bytes is over the limit of {} MiB; its first {} KiB are kept here",
                            decode::MAX_RECORD_BYTES >> 20,
                            QUARANTINED_HEAD >> 10
                        );
                        if let Err(e) = quarantine.record(&t2.name, &reason, &head[..head.len().min(QUARANTINED_HEAD)]) {
                            tracing::error!("writing quarantine: {e:#}");
                        }
                        t2.add();
                        t2.settle(Settle::Quarantined, &stats);
                        return Flow::Continue;
                    }
                };
                let start = chunk.body.len();
                let r = std::str::from_utf8(rec).map_err(|e| format!("record is not UTF-8: {e}")).and_then(|text| {
                    doc::append_bulk(&rules, text, &mut chunk.body).map_err(|e| e.to_string())
                });
                match r {
                    Ok(d) if filter.admits(d.time.as_ref()) => {
                        stats.records.fetch_add(1, Relaxed);
                        t2.add();
                        chunk.docs.push(DocRef { file: t2.clone(), start, end: chunk.body.len() });
                    }
                    Ok(_) => {
                        chunk.body.truncate(start);
                        stats.filtered.fetch_add(1, Relaxed);
                    }
                    Err(reason) => {
                        chunk.body.truncate(start);
                        stats.records.fetch_add(1, Relaxed);
                        if let Err(e) = quarantine.record(&t2.name, &reason, rec) {
                            tracing::error!("writing quarantine: {e:#}");
                        }
                        t2.add();
                        t2.settle(Settle::Quarantined, &stats);
                    }
                }
                if chunk.body.len() >= chunk_bytes && tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                    return Flow::Stop;
                }
                Flow::Continue
            });
            if !chunk.docs.is_empty() {
                let _ = tx.blocking_send(chunk);
            }
            o
        })
        .await
        .unwrap_or_else(|e| Outcome::Damaged { records: 0, reason: format!("reader crashed: {e}") });
        drop(reading);
        // The reading token: once released, completion fires when the last document settles.
        track.release();
        let _ = done.await;
        let (indexed, duplicates, quarantined) =
            (track.indexed.load(Relaxed), track.duplicates.load(Relaxed), track.quarantined.load(Relaxed));
        match outcome {
            Outcome::Log { records } => {
                self.stats.files.fetch_add(1, Relaxed);
                let complete = !track.failed.load(Relaxed);
                FileResult::Loaded { records, indexed, duplicates, quarantined, complete }
            }
            Outcome::Stopped { records } => FileResult::Interrupted { records },
            Outcome::Skipped(why) => {
                self.stats.skipped_files.fetch_add(1, Relaxed);
                FileResult::Skipped(why.to_string())
            }
            Outcome::Damaged { records, reason } => {
                self.stats.damaged_files.fetch_add(1, Relaxed);
                if let Err(e) = self.quarantine.file(&name, &reason) {
                    tracing::error!("writing quarantine: {e:#}");
                }
                FileResult::Damaged { records, reason }
            }
        }
    }

    /// Load already-built documents (quarantine replay): each `(index, id, source)`.
    pub async fn load_docs(&self, name: Arc<str>, docs: Vec<(String, String, Box<RawValue>)>) -> FileResult {
        let (track, done) = FileTrack::new(name);
        let mut chunk = Chunk::default();
        let n = docs.len() as u64;
        for (index, id, source) in docs {
            let start = chunk.body.len();
            chunk.body.extend_from_slice(b"{\"create\":{\"_index\":");
            doc::write_json_str(&mut chunk.body, &index);
            chunk.body.extend_from_slice(b",\"_id\":");
            doc::write_json_str(&mut chunk.body, &id);
            chunk.body.extend_from_slice(b"}}\n");
            chunk.body.extend_from_slice(source.get().as_bytes());
            chunk.body.push(b'\n');
            self.stats.records.fetch_add(1, Relaxed);
            track.add();
            chunk.docs.push(DocRef { file: track.clone(), start, end: chunk.body.len() });
            if chunk.body.len() >= self.chunk_bytes {
                let _ = self.chunk_tx.send(std::mem::take(&mut chunk)).await;
            }
        }
        if !chunk.docs.is_empty() {
            let _ = self.chunk_tx.send(chunk).await;
        }
        track.release();
        let _ = done.await;
        FileResult::Loaded {
            records: n,
            indexed: track.indexed.load(Relaxed),
            duplicates: track.duplicates.load(Relaxed),
            quarantined: track.quarantined.load(Relaxed),
            complete: !track.failed.load(Relaxed),
        }
    }

    /// Ask readers to stop early (signals). Documents already read are still delivered.
    /// A batch waiting to be retried gives up at once (its files are not checkpointed, so a rerun loads them).
    pub fn request_stop(&self) {
        self.stop.store(true, Relaxed);
        self.stopping.send_replace(true);
    }

    /// Wait until every document handed in is settled.
    pub async fn finish(self) -> Arc<Stats> {
        drop(self.chunk_tx);
        let _ = self.coalescer.await;
        self.stats
    }
}

/// Full jitter over `base·2^attempt` capped at `cap`, raised to the server's hint, then clamped to `cap` and to
/// `left` (the time before the retry deadline).
fn backoff(base: Duration, cap: Duration, attempt: u32, hint: Option<Duration>, left: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let jittered = exp.mul_f64(fastrand::f64());
    hint.map_or(jittered, |h| h.max(jittered)).min(cap).min(left)
}

/// How much of a record over the size limit the quarantine keeps.
const QUARANTINED_HEAD: usize = 64 * 1024;

struct CountingReader<'a, R>(R, &'a AtomicU64);
impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

struct Sink {
    client: Client,
    opts: SinkOptions,
    bulk_path: String,
    stats: Arc<Stats>,
    quarantine: Arc<Quarantine>,
    fatal: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    /// Turns true on a stop request or a fatal error: every retry sleep races it.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    seq: AtomicU64,
}

/// Merge chunks into requests of about `bulk_bytes`, never more than `bulk_concurrency` in flight.
async fn coalesce(mut rx: mpsc::Receiver<Chunk>, sink: Arc<Sink>) {
    let sem = Arc::new(Semaphore::new(sink.opts.bulk_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let Ok(permit) = sem.clone().acquire_owned().await else { break };
        let Some(mut batch) = rx.recv().await else { break };
        while batch.body.len() < sink.opts.bulk_bytes {
            match rx.try_recv() {
                Ok(c) => batch.append(c),
                Err(_) => break,
            }
        }
        let s = sink.clone();
        tasks.spawn(async move {
            s.deliver(batch).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

#[derive(Deserialize)]
struct BulkHead {
    #[serde(default)]
    errors: bool,
}

#[derive(Deserialize)]
struct BulkItems<'a> {
    #[serde(borrow)]
    items: Vec<std::collections::HashMap<&'a str, Item<'a>>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    status: u16,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

impl Sink {
    /// The wait before the next attempt: full jitter over the capped exponential, never less than the server's
    /// `Retry-After` hint, but never more than the retry cap nor the time `left` before the retry deadline (a
    /// server asking for an hour does not hold a run with a 5-second deadline for an hour).
    fn backoff(&self, attempt: u32, hint: Option<Duration>, left: Duration) -> Duration {
        backoff(self.opts.retry_base, self.opts.retry_cap, attempt, hint, left)
    }

    /// Sleep `wait`, unless a stop request or a fatal error comes first (then false).
    async fn sleep_unless_stopped(&self, wait: Duration) -> bool {
        let mut rx = self.stopping.subscribe();
        if *rx.borrow_and_update() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = rx.wait_for(|s| *s) => false,
        }
    }

    /// Send a batch until every document in it is settled.
    async fn deliver(&self, batch: Chunk) {
        let mut batch = Batch::from(batch);
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            if batch.docs.is_empty() {
                return;
            }
            let (retry, hint, why) = self.attempt(&batch).await;
            let Some(retry_idx) = retry else { return };
            if why.starts_with("HTTP 413") && batch.docs.len() > 1 {
                // Too large for the cluster's http.max_content_length: halve and send each half.
                let mut second = Chunk::default();
                let mut first = Chunk::default();
                let mid = batch.docs.len() / 2;
                for (i, d) in batch.docs.iter().enumerate() {
                    let dst = if i < mid { &mut first } else { &mut second };
                    let start = dst.body.len();
                    dst.body.extend_from_slice(&batch.body[d.start..d.end]);
                    dst.docs.push(DocRef { file: d.file.clone(), start, end: dst.body.len() });
                }
                Box::pin(self.deliver(first)).await;
                Box::pin(self.deliver(second)).await;
                return;
            }
            // Some (or all) documents must go again.
            let mut next = Chunk::default();
            for i in retry_idx {
                let d = &batch.docs[i];
                let start = next.body.len();
                next.body.extend_from_slice(&batch.body[d.start..d.end]);
                next.docs.push(DocRef { file: d.file.clone(), start, end: next.body.len() });
            }
            batch = Batch::from(next);
            self.stats.retries.fetch_add(1, Relaxed);
            let fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let left = self.opts.retry_deadline.saturating_sub(started.elapsed());
            let wait = self.backoff(attempt, hint, left);
            let stopped = fatal.is_none() && !left.is_zero() && {
                tracing::debug!(docs = batch.docs.len(), ?wait, "retrying _bulk: {why}");
                !self.sleep_unless_stopped(wait).await
            };
            if left.is_zero() || fatal.is_some() || stopped {
                let fatal = fatal.or_else(|| self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone());
                let reason = serde_json::json!({
                    "type": "retries_exhausted",
                    "reason": match (fatal, stopped) {
                        (Some(f), _) => f,
                        (None, true) => format!("stopped (signal) while waiting to retry: {why}"),
                        (None, false) => format!("still failing after {:?}: {why}", started.elapsed()),
                    },
                });
                for d in &batch.docs {
                    d.file.failed.store(true, Relaxed);
                    self.quarantine_doc(&batch.body[d.start..d.end], &d.file, 0, &reason);
                }
                return;
            }
            attempt += 1;
        }
    }

    fn quarantine_doc(&self, lines: &[u8], file: &Arc<FileTrack>, status: u16, reason: &serde_json::Value) {
        #[derive(Deserialize)]
        struct Action<'a> {
            #[serde(borrow)]
            create: Meta<'a>,
        }
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(rename = "_index", borrow)]
            index: std::borrow::Cow<'a, str>,
            #[serde(rename = "_id", borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        let nl = memchr::memchr(b'\n', lines).unwrap_or(lines.len());
        let (index, id) = match serde_json::from_slice::<Action>(&lines[..nl]) {
            Ok(a) => (a.create.index.into_owned(), a.create.id.into_owned()),
            Err(_) => (String::new(), String::new()),
        };
        let source = lines.get(nl + 1..).unwrap_or_default();
        if let Err(e) = self.quarantine.document(&file.name, &index, &id, status, reason, source) {
            tracing::error!("writing quarantine {}: {e:#}", self.quarantine.path().display());
        }
        file.settle(Settle::Quarantined, &self.stats);
    }

    /// One `_bulk` round trip. Returns the positions to retry (None when all are settled), a server hint for
    /// the delay, and a description of the failure.
    async fn attempt(&self, batch: &Batch) -> (Option<Vec<usize>>, Option<Duration>, String) {
        let all = || Some((0..batch.docs.len()).collect::<Vec<_>>());
        if let Some(dir) = &self.opts.dump_dir {
            let n = self.seq.fetch_add(1, Relaxed);
            let path = dir.join(format!("{n:08}.ndjson"));
            if let Err(e) = crate::fsutil::create(&path).and_then(|mut f| {
                use std::io::Write as _;
                f.write_all(&batch.body).with_context(|| format!("writing {}", path.display()))
            }) {
                self.set_fatal(format!("writing {}: {e}", path.display()));
                return (all(), None, e.to_string());
            }
            for d in &batch.docs {
                d.file.settle(Settle::Indexed, &self.stats);
            }
            return (None, None, String::new());
        }
        let body = if self.opts.gzip {
            // Compressing up to 100 MiB is CPU work: off the async workers.
            let raw = batch.body.clone();
            let gz = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 6), flate2::Compression::fast());
                e.write_all(&raw)?;
                e.finish()
            })
            .await;
            match gz {
                Ok(Ok(b)) => bytes::Bytes::from(b),
                Ok(Err(e)) => return (all(), None, format!("gzip: {e}")),
                Err(e) => return (all(), None, format!("gzip task: {e}")),
            }
        } else {
            batch.body.clone()
        };
        self.stats.bulk_requests.fetch_add(1, Relaxed);
        let resp = match self.client.send(Method::POST, &self.bulk_path, body, "application/x-ndjson", self.opts.gzip).await {
            Ok(r) => r,
            Err(e) => return (all(), None, format!("request failed: {e:#}")),
        };
        if let Err(e) = check_auth(&resp, self.client.auth(), "_bulk") {
            self.set_fatal(format!("{e:#}"));
            return (all(), None, format!("{e:#}"));
        }
        let status = resp.status.as_u16();
        if status == 429 || status >= 500 {
            return (all(), resp.retry_after, format!("HTTP {status}: {}", resp.text()));
        }
        if status == 413 && batch.docs.len() > 1 {
            // Too large for this cluster's http.max_content_length: retried in smaller requests below.
            return (all(), None, "HTTP 413 request too large".into());
        }
        if status == 413 {
            // One document alone is over the cluster's limit: that document is the problem, not the sink.
            let reason = serde_json::json!({"type": "http_413", "reason": resp.text()});
            for d in &batch.docs {
                self.quarantine_doc(&batch.body[d.start..d.end], &d.file, status, &reason);
            }
            return (None, None, String::new());
        }
        if !resp.status.is_success() {
            // A whole-request refusal (404 no such path, 400, 405, a proxy's error page…) says nothing about the
            // documents: stop the run without checkpointing these files, so a rerun after the fix loads them.
            let msg = format!(
                "OpenSearch refused the whole _bulk request to {}{} with HTTP {status}: {}; check --opensearch-url and \
                 --index-prefix (nothing of the files in flight was marked done: rerun to resume)",
                self.client.base_redacted(),
                self.bulk_path,
                resp.text()
            );
            self.set_fatal(msg.clone());
            return (all(), None, msg);
        }
        let head: BulkHead = match serde_json::from_slice(&resp.body) {
            Ok(h) => h,
            Err(e) => return (all(), None, format!("unreadable _bulk response: {e}")),
        };
        if !head.errors {
            for d in &batch.docs {
                d.file.settle(Settle::Indexed, &self.stats);
            }
            return (None, None, String::new());
        }
        let items = match serde_json::from_slice::<BulkItems>(&resp.body) {
            Ok(i) if i.items.len() == batch.docs.len() => i,
            Ok(i) => {
                return (all(), None, format!("_bulk answered {} items for {} documents", i.items.len(), batch.docs.len()));
            }
            Err(e) => return (all(), None, format!("unreadable _bulk items: {e}")),
        };
        let mut retry = Vec::new();
        let mut why = String::new();
        for (i, (item, d)) in items.items.iter().zip(&batch.docs).enumerate() {
            let Some(it) = item.values().next() else {
                retry.push(i);
                continue;
            };
            match it.status {
                200 | 201 => d.file.settle(Settle::Indexed, &self.stats),
                409 => d.file.settle(Settle::Duplicate, &self.stats),
                429 | 500..=599 => {
                    if why.is_empty() {
                        why = format!("item status {}: {}", it.status, it.error.map(|e| e.get()).unwrap_or(""));
                    }
                    retry.push(i);
                }
                s => {
                    let reason = it
                        .error
                        .and_then(|e| serde_json::from_str::<serde_json::Value>(e.get()).ok())
                        .unwrap_or_else(|| serde_json::json!({"type": format!("status_{s}")}));
                    self.quarantine_doc(&batch.body[d.start..d.end], &d.file, s, &reason);
                }
            }
        }
        if retry.is_empty() { (None, None, why) } else { (Some(retry), resp.retry_after, why) }
    }

    fn set_fatal(&self, msg: String) {
        let mut g = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            tracing::error!("{msg}");
            *g = Some(msg);
        }
        drop(g);
        self.stop.store(true, Relaxed);
        // a fatal error ends every retry wait too
        self.stopping.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn time_filter_honours_the_time_of_day() {
        use super::{doc::Instant, TimeFilter};
        let at = |h, m| Instant { year: 2024, month: 5, day: 1, hour: h, minute: m, second: 0, milli: 0 };
        let (_, from) = crate::ingest::parse_bound("--from", "2024-05-01T13:00:00Z", false).unwrap();
        let (_, to) = crate::ingest::parse_bound("--to", "2024-05-01T15:30:00+02:00", true).unwrap();
        let f = TimeFilter { from: Some(from), to: Some(to) };
        assert!(!f.admits(Some(&at(12, 59))));
        assert!(f.admits(Some(&at(13, 0))));
        assert!(f.admits(Some(&at(13, 30))));
        assert!(!f.admits(Some(&at(13, 31))), "15:30+02:00 is 13:30Z");
        // a bare --to date takes its whole day
        let (_, to) = crate::ingest::parse_bound("--to", "2024-05-01", true).unwrap();
        assert!(TimeFilter { from: None, to: Some(to) }.admits(Some(&Instant { hour: 23, minute: 59, second: 59, milli: 999, ..at(0, 0) })));
    }

    #[test]
    fn retry_after_is_clamped_to_the_cap_and_the_time_left() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(10));
        let hour = Some(Duration::from_secs(3600));
        for attempt in 0..20 {
            let w = backoff(base, cap, attempt, hour, Duration::from_secs(3600 * 2));
            assert_eq!(w, cap, "a 3600 s hint waits the cap, not an hour");
            let w = backoff(base, cap, attempt, hour, Duration::from_secs(5));
            assert_eq!(w, Duration::from_secs(5), "never past the deadline");
            let w = backoff(base, cap, attempt, None, Duration::from_secs(3600));
            assert!(w <= cap);
        }
        // a small hint is honoured as a floor
        assert!(backoff(base, cap, 0, Some(Duration::from_secs(2)), Duration::from_secs(60)) >= Duration::from_secs(2));
        assert_eq!(backoff(base, cap, 3, None, Duration::ZERO), Duration::ZERO);
    }
}
