//! The ingest worker: source (S3, directory, SQS) → decode → document → `_bulk` sink, with checkpoint and
//! quarantine. `backfill` and `ingest` both run on [`pipeline::Pipeline`].

pub mod checkpoint;
pub mod follow;
pub mod migrate;
pub mod decode;
pub mod doc;
pub use crate::opensearch::client as opensearch;
pub mod pipeline;
pub mod quarantine;
pub mod source;
pub mod sqs;
pub use crate::opensearch::template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::cli::{BackfillArgs, SelectArgs, SinkArgs};
use crate::error::{usage, Exit};
use crate::output::{self, Output};
use crate::settings::{split_list, Common};
use crate::state::State;
use pipeline::{FileResult, Pipeline, SinkOptions, Stats, TimeFilter};
use source::{Listed, S3Source, Select};

pub use crate::opensearch::DEFAULT_PREFIX;

/// Everything about where documents go.
pub struct Sink {
    pub client: opensearch::Client,
    pub rules: doc::DocRules,
    pub opts: SinkOptions,
    /// `--concurrency` when given; otherwise each command sizes it for its source.
    pub concurrency: Option<usize>,
    pub quarantine: PathBuf,
    pub url: String,
    /// the granularity is settled (given, or the stack's); else `prepare` reads the installed template's
    pub granularity_given: bool,
}

pub use crate::settings::parse_bound;

pub fn select(common: &Common, a: &SelectArgs) -> anyhow::Result<(Select, TimeFilter)> {
    let from_b = a.from.as_deref().map(|s| parse_bound("--from", s, false)).transpose()?;
    let to_b = a.to.as_deref().map(|s| parse_bound("--to", s, true)).transpose()?;
    if let (Some((_, f)), Some((_, t))) = (from_b, to_b) {
        if f > t {
            return Err(usage(format!("--from {f} is after --to {t}")));
        }
    }
    let (from, to) = (from_b.map(|b| b.0), to_b.map(|b| b.0));
    let accounts = a
        .accounts
        .clone()
        .or_else(|| common.file.accounts.as_ref().map(|l| l.joined()))
        .map(|s| split_list(&s))
        .unwrap_or_default();
    if let Some(bad) = accounts.iter().find(|a| a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit())) {
        return Err(usage(format!("--accounts: {bad:?} is not a 12-digit AWS account id")));
    }
    let regions = a.regions.as_deref().map(split_list).unwrap_or_default();
    Ok((Select { accounts, regions, from, to }, TimeFilter { from: from_b.map(|b| b.1), to: to_b.map(|b| b.1) }))
}

/// The OpenSearch endpoint from flag, env, config file or state, as given.
fn sink_url(common: &Common, a: &SinkArgs, state: Option<&State>) -> Option<String> {
    crate::opensearch::endpoint_url(common, a, state)
}

/// The index prefix from flag, env, config file or state, else the default (not yet validated).
fn index_prefix(common: &Common, a: &SinkArgs, state: Option<&State>) -> String {
    crate::opensearch::index_prefix(common, &a.os, state)
}

/// The identity of a backfill's checkpoint: the source, the selection and the sink it loads into.
/// (`--follow-symlinks` reads more files: a checkpoint made without it does not say they are loaded.)
fn backfill_id(source: &Source, sel: &Select, follow_links: bool, url: &str, prefix: &str) -> String {
    let links = if follow_links { " +symlinks" } else { "" };
    format!("{}{links} {} -> {url} {prefix}", source.id(), sel_id(sel))
}

/// Resolve the sink from flags > env > config > init's state.
pub async fn sink(common: &Common, a: &SinkArgs, state: Option<&State>, aws: Option<&aws_config::SdkConfig>) -> anyhow::Result<Sink> {
    let (client, url) = crate::opensearch::connect(common, a, state, aws).await?;
    let prefix = index_prefix(common, a, state);
    template::validate_prefix(&prefix)?;
    let given_granularity = a
        .index_granularity
        .or_else(|| common.file.index_granularity.and_then(|c| c.fixed()))
        .or_else(|| state.and_then(|s| s.index_granularity));
    let compression = a.compression.clone().or_else(|| common.file.compression.clone()).unwrap_or_else(|| "auto".into());
    let gzip = match compression.as_str() {
        "auto" => !client.is_loopback(),
        "gzip" => true,
        "none" => false,
        other => return Err(usage(format!("--compression {other:?}: expected auto, gzip or none"))),
    };
    let concurrency = a.concurrency.or(common.file.concurrency);
    if concurrency == Some(0) {
        return Err(usage("--concurrency must be at least 1"));
    }
    let bulk_mib = a.bulk_mib.unwrap_or(2.0);
    if !(0.01..=100.0).contains(&bulk_mib) {
        return Err(usage("--bulk-mib must be between 0.01 and 100"));
    }
    let opts = SinkOptions {
        bulk_bytes: (bulk_mib * 1024.0 * 1024.0) as usize,
        bulk_concurrency: a.bulk_concurrency.or(common.file.bulk_concurrency).unwrap_or(4).max(1),
        gzip,
        retry_base: Duration::from_millis(a.retry_base_ms.unwrap_or(200)),
        retry_cap: Duration::from_secs(30),
        retry_deadline: Duration::from_secs(a.retry_deadline_secs.unwrap_or(900)),
        dump_dir: None,
    };
    let quarantine = a
        .quarantine
        .clone()
        .or_else(|| common.file.quarantine.clone())
        .unwrap_or_else(|| common.state_dir.join("quarantine.jsonl"));
    Ok(Sink {
        client,
        rules: doc::DocRules { prefix, redact: !a.no_redact, granularity: given_granularity.unwrap_or_default() },
        granularity_given: given_granularity.is_some(),
        opts,
        concurrency,
        quarantine,
        url,
    })
}

/// Ping, settle the layout (the granularity given or recorded, else the installed template's, else day), then
/// install the template before the first document.
pub async fn prepare(sink: &mut Sink, out: &Output) -> anyhow::Result<()> {
    let version = sink.client.ping().await?;
    tracing::info!("OpenSearch {version} at {}", sink.url);
    if !sink.granularity_given {
        if let Some(g) = template::recorded_granularity(&sink.client, &sink.rules.prefix).await? {
            sink.rules.granularity = g;
        }
        sink.granularity_given = true;
    }
    template::install(&sink.client, &sink.rules.prefix, sink.rules.granularity).await?;
    out.note(format!(
        "OpenSearch {version} at {}: index template {} installed for {}-* ({} indices)",
        sink.url,
        template::name(&sink.rules.prefix),
        sink.rules.prefix,
        sink.rules.granularity,
    ));
    Ok(())
}

/// The source of a backfill.
enum Source {
    Dir(PathBuf),
    S3(Arc<S3Source>),
}

impl Source {
    fn id(&self) -> String {
        match self {
            Source::Dir(p) => format!("dir:{}", std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display()),
            Source::S3(s) => format!("s3://{}/{}", s.bucket, s.prefix),
        }
    }
}

/// Per-file reasons, for the report.
#[derive(Default)]
struct Report {
    skipped: BTreeMap<String, u64>,
    damaged: Vec<(String, String)>,
    incomplete: u64,
    already_done: u64,
}

pub async fn backfill(common: &Common, a: &BackfillArgs, out: &Output) -> anyhow::Result<Exit> {
    let started = Instant::now();
    // the stack's defaults: the state file, or the account's record when the source or the sink is not given
    let given = (a.bucket.is_some() || a.source_dir.is_some() || a.replay_quarantine.is_some() || common.file.bucket.is_some())
        && (a.sink.os.opensearch_url.is_some() || common.file.opensearch_url.is_some() || a.dump_bulk.is_some() || a.enqueue.is_some());
    let state = crate::stack::defaults(common, a.name.as_deref(), given).await?;
    let (sel, filter) = select(common, &a.select)?;

    if let Some(q) = &a.replay_quarantine {
        return replay(common, a, q, state.as_ref(), out).await;
    }

    let aws = if a.source_dir.is_none() || a.enqueue.is_some() { Some(crate::aws::sdk_config(common).await) } else { None };
    let source = if let Some(d) = &a.source_dir {
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(usage(format!("--source-dir {} is not a directory", d.display()))),
            Err(e) => return Err(usage(format!("--source-dir {}: {e}", d.display()))),
        }
        Source::Dir(d.clone())
    } else {
        let bucket = a
            .bucket
            .clone()
            .or_else(|| common.file.bucket.clone())
            .or_else(|| state.as_ref().and_then(|s| s.bucket.clone()))
            .ok_or_else(|| {
                usage(
                    "nothing to load from: pass --source-dir DIR, or --bucket B (env TRAILSETUP_BUCKET, config key \
                     bucket), or run `trailsetup init` first so the state file names the bucket",
                )
            })?;
        let prefix = a
            .prefix
            .clone()
            .or_else(|| common.file.prefix.clone())
            .or_else(|| state.as_ref().filter(|s| s.bucket.as_deref() == Some(bucket.as_str())).and_then(|s| s.prefix.clone()))
            .unwrap_or_else(|| "AWSLogs/".into());
        let cfg = aws.as_ref().expect("loaded above for S3");
        let role = a.source_role.clone().or_else(|| common.file.source_role.clone()).or_else(|| state.as_ref().and_then(|s| s.source_role.clone()));
        let client = match &role {
            Some(r) => crate::aws::s3(&crate::aws::with_role(cfg, r).await),
            None => crate::aws::s3(cfg),
        };
        Source::S3(Arc::new(S3Source::new(client, bucket, prefix)))
    };

    // Enumerate in the background so loading starts at once. Directories the checkpoint has as done are not
    // listed at all.
    let spawn_lister = |done: source::DoneDirs| {
        let (tx, rx) = mpsc::channel::<Listed>(4096);
        let task = match &source {
            Source::Dir(d) => {
                let (d, sel, follow) = (d.clone(), sel.clone(), a.follow_symlinks);
                tokio::task::spawn_blocking(move || source::walk_dir(&d, &sel, &done, follow, &tx))
            }
            Source::S3(s) => {
                let (s, sel) = (s.clone(), sel.clone());
                tokio::spawn(async move { s.list(&sel, &done, &tx).await })
            }
        };
        (rx, task)
    };
    let nothing_done: source::DoneDirs = Arc::new(|_: &str| false);

    if let Some(queue) = &a.enqueue {
        let Source::S3(s) = &source else {
            return Err(usage("--enqueue needs an S3 source (--bucket): ingest workers read the files from S3"));
        };
        let cfg = aws.as_ref().expect("loaded above");
        let id = format!("enqueue {} {} -> {queue}", source.id(), sel_id(&sel));
        let mut cp = if common.dry_run {
            // what a real run would skip, read beside any run in progress; nothing is written
            checkpoint::Checkpoint::peek(&checkpoint_path(common, a, &id), &id, a.restart)?
        } else {
            checkpoint::Checkpoint::open(&checkpoint_path(common, a, &id), &id, a.restart)?
        };
        if !cp.is_empty() {
            out.note(format!("resuming: already enqueued files are skipped (checkpoint {}; --restart starts over)", cp.path().display()));
        }
        let (mut rx, lister) = spawn_lister(cp.done_dirs());
        let pb = out.progress(0, "files");
        let r = sqs::enqueue(cfg, queue, &s.bucket, &mut rx, &mut cp, common.dry_run, &pb).await;
        drop(rx);
        cp.close()?;
        pb.finish_and_clear();
        let n = r?;
        lister.await.context("listing task")??;
        let secs = started.elapsed().as_secs_f64();
        if out.json {
            out.json_doc(&serde_json::json!({"enqueue": {
                "files": n.sent, "already_done_files": n.already_done, "queue_url": queue, "dry_run": common.dry_run,
                "seconds": secs, "send_requests": n.requests, "checkpoint": cp.path().display().to_string(),
            }}));
        } else {
            out.line(format!(
                "{} {} file notifications to {queue} in {secs:.1}s ({:.0}/s; {} already enqueued before)",
                if common.dry_run { "would send" } else { "sent" },
                output::thousands(n.sent),
                n.sent as f64 / secs.max(0.001),
                output::thousands(n.already_done),
            ));
        }
        return Ok(Exit::Success);
    }

    if common.dry_run {
        // What is left to do: the checkpoint a real run would resume from, when the sink is known (it is part of
        // the checkpoint's identity), read without its lock. Directories it has as done are not listed.
        let cp = match sink_url(common, &a.sink, state.as_ref()) {
            Some(url) if a.dump_bulk.is_none() => {
                opensearch::parse_url(&url)?;
                let id = backfill_id(&source, &sel, a.follow_symlinks, &url, &index_prefix(common, &a.sink, state.as_ref()));
                Some(checkpoint::Checkpoint::peek(&checkpoint_path(common, a, &id), &id, a.restart)?).filter(|c| !c.is_empty())
            }
            _ => None,
        };
        let (mut rx, lister) = spawn_lister(cp.as_ref().map_or(nothing_done, |c| c.done_dirs()));
        return dry_run(&source, &mut rx, lister, cp.as_ref(), out, started).await;
    }

    let mut sink = sink(common, &a.sink, state.as_ref(), aws.as_ref()).await?;
    if let Some(dir) = &a.dump_bulk {
        crate::fsutil::private_dir_all(dir)?;
        sink.opts.dump_dir = Some(dir.clone());
    } else {
        prepare(&mut sink, out).await?;
    }

    let source_id = backfill_id(&source, &sel, a.follow_symlinks, &sink.url, &sink.rules.prefix);
    let use_checkpoint = a.dump_bulk.is_none();
    let mut cp = if use_checkpoint {
        checkpoint::Checkpoint::open(&checkpoint_path(common, a, &source_id), &source_id, a.restart)?
    } else {
        checkpoint::Checkpoint::ephemeral(&source_id)
    };
    if !cp.is_empty() {
        out.note(format!(
            "resuming: {} directories and {} more files already loaded (checkpoint {}; --restart starts over)",
            cp.dirs(),
            cp.len(),
            cp.path().display()
        ));
    }
    let resumed_dirs = cp.dirs() as u64;
    let (mut file_rx, lister) = spawn_lister(cp.done_dirs());

    let quarantine = Arc::new(quarantine::Quarantine::new(sink.quarantine.clone(), sink.rules.redact));
    let pipeline = Arc::new(Pipeline::start(sink.client.clone(), sink.rules.clone(), filter, sink.opts.clone(), quarantine));
    let stats = pipeline.stats.clone();
    let pb = out.progress(0, "files");

    // Stop reading on SIGINT/SIGTERM; what was read is still delivered and checkpointed.
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signal_task = {
        let (p, flag) = (pipeline.clone(), interrupted.clone());
        tokio::spawn(async move {
            crate::signals::wait().await;
            flag.store(true, Relaxed);
            p.request_stop();
        })
    };

    // Files in flight are sized for I/O, not cores: S3 GETs spend their time waiting on the network. Memory is
    // bounded by the bytes of the files being read, whatever their number.
    let files_in_flight = sink.concurrency.unwrap_or(match &source {
        Source::S3(_) => S3_FILES_IN_FLIGHT,
        Source::Dir(_) => (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 4).max(8),
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(files_in_flight));
    let budget = Arc::new(tokio::sync::Semaphore::new(INFLIGHT_KIB));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, FileResult)>();
    let mut report = Report::default();
    let mut frontier = checkpoint::Frontier::default();
    let mut listed = 0u64;
    let mut in_flight = 0u64;
    let mut last_save = Instant::now();
    let mut listing_done: Option<f64> = None;

    loop {
        tokio::select! {
            biased;
            Some((key, res)) = done_rx.recv() => {
                in_flight -= 1;
                pb.inc(1);
                let complete = matches!(res, FileResult::Loaded { complete: true, .. } | FileResult::Skipped(_));
                settle_file(&mut cp, &mut report, &key, res)?;
                for dir in frontier.settle(&key, complete) {
                    cp.mark_dir(&dir)?;
                }
                if last_save.elapsed() > Duration::from_secs(1) {
                    crate::blocking::run(|| cp.save())?;
                    last_save = Instant::now();
                }
                pb.set_message(progress_msg(&stats, started, listing_done.is_some()));
            }
            f = file_rx.recv(), if listing_done.is_none() && !stopping(&interrupted, &pipeline) => {
                let f = match f {
                    None => {
                        listing_done = Some(started.elapsed().as_secs_f64());
                        if in_flight == 0 { break; }
                        continue;
                    }
                    Some(Listed::Sealed(dir)) => {
                        for dir in frontier.seal(&dir) {
                            cp.mark_dir(&dir)?;
                        }
                        continue;
                    }
                    Some(Listed::File(f)) => f,
                };
                listed += 1;
                pb.set_length(listed);
                if cp.is_done(&f.key) {
                    report.already_done += 1;
                    pb.inc(1);
                    continue;
                }
                if source::is_digest(&f.key) {
                    stats.skipped_files.fetch_add(1, Relaxed);
                    *report.skipped.entry(decode::Skip::Digest.to_string()).or_default() += 1;
                    pb.inc(1);
                    continue;
                }
                if !source::looks_like_log(&f.key) {
                    stats.skipped_files.fetch_add(1, Relaxed);
                    *report.skipped.entry("not a .json or .json.gz file".into()).or_default() += 1;
                    pb.inc(1);
                    continue;
                }
                let permit = sem.clone().acquire_owned().await.expect("semaphore never closed");
                in_flight += 1;
                frontier.dispatch(&f.key);
                let (p, tx) = (pipeline.clone(), done_tx.clone());
                match &source {
                    Source::Dir(root) => {
                        let path = root.join(&f.key);
                        tokio::spawn(async move {
                            let res = p.load(f.key.clone().into(), move || std::fs::File::open(path), permit).await;
                            let _ = tx.send((f.key, res));
                        });
                    }
                    Source::S3(s3) => {
                        let (s3, budget) = (s3.clone(), budget.clone());
                        let kib = (f.size.div_ceil(1024) as usize).clamp(1, INFLIGHT_KIB) as u32;
                        tokio::spawn(async move {
                            let bytes_permit = budget.acquire_many_owned(kib).await.expect("semaphore never closed");
                            let res = match s3.get(&f.key).await {
                                Ok(bytes) => p.load(f.key.clone().into(), move || Ok(std::io::Cursor::new(bytes)), (permit, bytes_permit)).await,
                                // an unreadable file (a refused GetObject) counts as damaged: the run ends 3, not 0
                                Err(e) => {
                                    p.stats.damaged_files.fetch_add(1, Relaxed);
                                    FileResult::Damaged { records: 0, reason: format!("{e:#}") }
                                }
                            };
                            let _ = tx.send((f.key, res));
                        });
                    }
                }
            }
            else => {
                if in_flight == 0 { break; }
            }
        }
        if (listing_done.is_some() || stopping(&interrupted, &pipeline)) && in_flight == 0 {
            break;
        }
    }
    // The lister may be waiting to hand over more files: closing the channel lets it finish.
    drop(file_rx);
    if let Err(e) = lister.await.context("listing task")? {
        // A listing failure after some files were loaded: keep what was done, then fail.
        cp.save()?;
        return Err(e);
    }
    drop(done_tx);
    // the signal task holds the pipeline too: end it, so that the pipeline is ours alone to finish
    signal_task.abort();
    let _ = signal_task.await;
    let fatal = pipeline.fatal();
    let pipeline = Arc::into_inner(pipeline);
    let quarantine_path = sink.quarantine.clone();
    if let Some(p) = pipeline {
        p.finish().await;
    }
    // what was loaded answers searches now, not at the next refresh interval (best effort: a refused refresh
    // only delays visibility by the index's `refresh_interval`)
    if a.dump_bulk.is_none() {
        let path = format!("{}-*/_refresh?ignore_unavailable=true&allow_no_indices=true", sink.rules.prefix);
        if let Err(e) = sink.client.json(reqwest::Method::POST, &path, None).await {
            tracing::debug!("refresh after the backfill: {e:#}");
        }
    }
    cp.close()?;
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let mut extra: Vec<(&str, u64)> = vec![("already_done_dirs", resumed_dirs), ("files_in_flight", files_in_flight as u64)];
    if let Some(l) = listing_done {
        extra.push(("listing_ms", (l * 1000.0).round() as u64));
    }
    if let Source::S3(s) = &source {
        extra.push(("list_requests", s.list_requests.load(Relaxed)));
    }
    if use_checkpoint {
        extra.push(("checkpoint_bytes", cp.bytes_on_disk()));
        extra.push(("checkpoint_bytes_written", cp.bytes_written()));
    }
    summary("backfill", &stats, &report, secs, &quarantine_path, use_checkpoint.then(|| cp.path()), a.dump_bulk.is_some(), &extra, out);
    if let Some(f) = fatal {
        anyhow::bail!("{f}\nfiles not fully loaded are not checkpointed: rerun the same command after the fix");
    }
    if interrupted.load(Relaxed) {
        anyhow::bail!("interrupted: completed files are checkpointed; rerun the same command to resume");
    }
    Ok(exit_for(&stats))
}

/// Files read at once from S3 by default: enough to hide tens of milliseconds per GET on a small machine.
pub const S3_FILES_IN_FLIGHT: usize = 64;
/// Bytes of files being read at once (KiB), whatever their number.
const INFLIGHT_KIB: usize = 256 * 1024;

/// What narrows the key space, as part of a checkpoint's identity: a checkpoint made for one selection says
/// nothing about the directories of another.
fn sel_id(sel: &Select) -> String {
    format!(
        "accounts={} regions={} from={} to={}",
        sel.accounts.join(","),
        sel.regions.join(","),
        sel.from.map(|d| d.to_string()).unwrap_or_default(),
        sel.to.map(|d| d.to_string()).unwrap_or_default()
    )
}

fn checkpoint_path(common: &Common, a: &BackfillArgs, id: &str) -> PathBuf {
    a.checkpoint.clone().unwrap_or_else(|| {
        use sha2::Digest;
        let h = hex::encode(sha2::Sha256::digest(id.as_bytes()));
        common.state_dir.join("checkpoints").join(format!("{}.journal", &h[..16]))
    })
}

/// A signal arrived, or the sink failed for good: read no more files.
fn stopping(interrupted: &std::sync::atomic::AtomicBool, pipeline: &Pipeline) -> bool {
    interrupted.load(Relaxed) || pipeline.fatal().is_some()
}

fn exit_for(stats: &Stats) -> Exit {
    if stats.quarantined.load(Relaxed) > 0 || stats.damaged_files.load(Relaxed) > 0 {
        Exit::Quarantined
    } else {
        Exit::Success
    }
}

fn settle_file(cp: &mut checkpoint::Checkpoint, report: &mut Report, key: &str, res: FileResult) -> anyhow::Result<()> {
    match res {
        FileResult::Loaded { complete: true, .. } => cp.mark(key)?,
        FileResult::Loaded { complete: false, .. } | FileResult::Interrupted { .. } => report.incomplete += 1,
        FileResult::Skipped(why) => {
            *report.skipped.entry(why).or_default() += 1;
            // Not a log file: nothing to retry.
            cp.mark(key)?;
        }
        FileResult::Damaged { records, reason } => {
            tracing::warn!(file = %key, records, "{reason}");
            report.damaged.push((key.to_string(), reason));
        }
    }
    Ok(())
}

/// `events · events/s · bytes/s` beside the bar's files, rate and ETA; `listing…` while files are still being
/// discovered (the ETA then covers the files listed so far).
fn progress_msg(stats: &Stats, started: Instant, listing_done: bool) -> String {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let r = stats.records.load(Relaxed);
    let b = stats.bytes_read.load(Relaxed);
    format!(
        "{} events · {:.0} events/s · {}/s{}",
        output::thousands(r),
        r as f64 / secs,
        output::bytes((b as f64 / secs) as u64),
        if listing_done { "" } else { " · listing…" }
    )
}

/// The closing summary of `backfill` and `ingest` (`extra` adds command-specific fields / lines).
#[allow(clippy::too_many_arguments)]
fn summary(
    kind: &str,
    stats: &Stats,
    report: &Report,
    secs: f64,
    quarantine: &std::path::Path,
    checkpoint: Option<&std::path::Path>,
    dumped: bool,
    extra: &[(&str, u64)],
    out: &Output,
) {
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
    let records = g(&stats.records);
    if out.json {
        let mut v = serde_json::json!({
            "files": g(&stats.files),
            "skipped_files": g(&stats.skipped_files),
            "damaged_files": g(&stats.damaged_files),
            "records": records,
            "indexed": g(&stats.indexed),
            "duplicates": g(&stats.duplicates),
            "quarantined": g(&stats.quarantined),
            "seconds": (secs * 1000.0).round() / 1000.0,
            "filtered": g(&stats.filtered),
            "already_done_files": report.already_done,
            "incomplete_files": report.incomplete,
            "bulk_requests": g(&stats.bulk_requests),
            "retries": g(&stats.retries),
            "bytes": g(&stats.bytes_read),
            "skipped_reasons": report.skipped,
            "damaged": report.damaged.iter().map(|(f, r)| serde_json::json!({"file": f, "reason": r})).collect::<Vec<_>>(),
        });
        if g(&stats.quarantined) > 0 || !report.damaged.is_empty() {
            v["quarantine_file"] = quarantine.display().to_string().into();
        }
        if let Some(c) = checkpoint {
            v["checkpoint"] = c.display().to_string().into();
        }
        if dumped {
            v["dumped_only"] = true.into();
        }
        for (k, n) in extra {
            v[*k] = (*n).into();
        }
        out.json_doc(&serde_json::json!({ kind: v }));
        return;
    }
    let rate = records as f64 / secs.max(0.001);
    out.line(format!(
        "{kind}: {} files ({} skipped, {} damaged, {} already done) · {} records in {secs:.1}s ({rate:.0}/s)",
        output::thousands(g(&stats.files)),
        g(&stats.skipped_files),
        g(&stats.damaged_files),
        report.already_done,
        output::thousands(records),
    ));
    out.line(format!(
        "  indexed {} · duplicates {} · quarantined {}{}",
        output::thousands(g(&stats.indexed)),
        output::thousands(g(&stats.duplicates)),
        output::thousands(g(&stats.quarantined)),
        if g(&stats.filtered) > 0 { format!(" · outside --from/--to {}", output::thousands(g(&stats.filtered))) } else { String::new() }
    ));
    for (why, n) in &report.skipped {
        out.line(format!("  skipped {n} file(s): {why}"));
    }
    for (f, why) in &report.damaged {
        out.line(format!("  damaged: {f}: {why}"));
    }
    if g(&stats.quarantined) > 0 || !report.damaged.is_empty() {
        out.line(format!(
            "  quarantine: {} — fix the cause, then `trailsetup backfill --replay-quarantine {}`",
            quarantine.display(),
            quarantine.display()
        ));
    }
    if dumped {
        out.line("  (bodies written with --dump-bulk; nothing was sent)");
    }
    if !extra.is_empty() {
        let parts: Vec<String> = extra.iter().map(|(k, n)| format!("{} {n}", k.replace('_', " "))).collect();
        out.line(format!("  {}", parts.join(" · ")));
    }
}

async fn dry_run(
    source: &Source,
    rx: &mut mpsc::Receiver<Listed>,
    lister: tokio::task::JoinHandle<anyhow::Result<()>>,
    cp: Option<&checkpoint::Checkpoint>,
    out: &Output,
    started: Instant,
) -> anyhow::Result<Exit> {
    let mut files = Vec::new();
    let mut already_done = 0u64;
    while let Some(l) = rx.recv().await {
        let Listed::File(f) = l else { continue };
        if source::looks_like_log(&f.key) && !source::is_digest(&f.key) {
            if cp.is_some_and(|c| c.is_done(&f.key)) {
                already_done += 1;
                continue;
            }
            files.push(f);
        }
    }
    lister.await.context("listing task")??;
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let dates: Vec<chrono::NaiveDate> = files.iter().filter_map(|f| source::key_info(&f.key).and_then(|k| k.date)).collect();
    let (first, last) = (dates.iter().min().copied(), dates.iter().max().copied());
    // Estimate records from a sample of up to 8 files spread over the listing (read calls only).
    let step = (files.len() / 8).max(1);
    let (mut s_bytes, mut s_records, mut s_files) = (0u64, 0u64, 0u64);
    for f in files.iter().step_by(step).take(8) {
        let data = match source {
            Source::Dir(root) => std::fs::read(root.join(&f.key)).map(bytes::Bytes::from).map_err(anyhow::Error::from),
            Source::S3(s) => s.get(&f.key).await,
        };
        if let Ok(d) = data {
            let mut n = 0u64;
            if let decode::Outcome::Log { .. } = decode::read_log(&d[..], |_| {
                n += 1;
                decode::Flow::Continue
            }) {
                s_bytes += d.len() as u64;
                s_records += n;
                s_files += 1;
            }
        }
    }
    let est = if s_bytes > 0 { (bytes as f64 * s_records as f64 / s_bytes as f64).round() as u64 } else { 0 };
    let requests = match source {
        Source::Dir(_) => 0,
        Source::S3(_) => files.len() as u64 + (files.len() as u64).div_ceil(1000),
    };
    // Throughput assumed for the estimate: this tool's measured backfill rate (see docs/performance.md).
    const RATE: f64 = 20_000.0;
    let est_secs = est as f64 / RATE;
    if out.json {
        out.json_doc(&serde_json::json!({"backfill": {
            "dry_run": true, "files": files.len(), "bytes": bytes,
            "first_date": first.map(|d| d.to_string()), "last_date": last.map(|d| d.to_string()),
            "estimated_records": est, "s3_requests": requests, "estimated_seconds": est_secs.round(),
            "sampled_files": s_files,
            "already_done_files": already_done, "already_done_dirs": cp.map_or(0, |c| c.dirs()),
            "checkpoint": cp.map(|c| c.path().display().to_string()),
            "seconds": started.elapsed().as_secs_f64(),
        }}));
    } else {
        out.line("backfill --dry-run: nothing was loaded");
        if let Some(c) = cp {
            let (dirs, files) = (c.dirs() as u64, already_done);
            out.line(format!(
                "  resuming   left out as already loaded: {} director{} and {} more file{} (checkpoint {}; --restart \
                 counts everything)",
                output::thousands(dirs),
                if dirs == 1 { "y" } else { "ies" },
                output::thousands(files),
                if files == 1 { "" } else { "s" },
                c.path().display()
            ));
        }
        out.line(format!("  files      {}", output::thousands(files.len() as u64)));
        out.line(format!("  bytes      {}", output::bytes(bytes)));
        out.line(format!(
            "  dates      {} … {}",
            first.map_or("?".into(), |d| d.to_string()),
            last.map_or("?".into(), |d| d.to_string())
        ));
        out.line(format!("  records    ~{} (estimated from a sample)", output::thousands(est)));
        if requests > 0 {
            out.line(format!("  requests   ~{} S3 requests (GET + LIST)", output::thousands(requests)));
        }
        out.line(format!("  duration   ~{:.0}s at ~{} records/s", est_secs.ceil(), output::thousands(RATE as u64)));
    }
    Ok(Exit::Success)
}

/// Quarantined documents handed to the pipeline at once by a replay.
const REPLAY_BATCH: usize = 1000;

/// `--replay-quarantine FILE`: send the quarantined documents again; what still fails goes to a new quarantine
/// file, and the replayed file is renamed `*.replayed` so a second replay does not double-count.
async fn replay(common: &Common, a: &BackfillArgs, file: &std::path::Path, state: Option<&State>, out: &Output) -> anyhow::Result<Exit> {
    let started = Instant::now();
    // The file is read line by line, twice, never whole: a first pass checks every line (a bad line stops the
    // replay before anything is sent), the second loads the documents in batches.
    let lines = || -> anyhow::Result<_> {
        use std::io::BufRead as _;
        let f = std::fs::File::open(file).map_err(|e| usage(format!("--replay-quarantine {}: {e}", file.display())))?;
        Ok(std::io::BufReader::new(f).lines().enumerate())
    };
    for (n, line) in lines()? {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: quarantine::Entry = serde_json::from_str(&line).map_err(|e| usage(format!("{}:{}: not a quarantine line: {e}", file.display(), n + 1)))?;
        let ok = match e.kind.as_str() {
            "document" => e.index.as_deref().is_some_and(|i| !i.is_empty()) && e.id.is_some() && e.document.is_some(),
            "record" | "file" => true,
            _ => false,
        };
        if !ok {
            return Err(usage(format!("{}:{}: quarantine line without a document", file.display(), n + 1)));
        }
    }
    let mut s = sink(common, &a.sink, state, None).await?;
    if s.quarantine == file {
        s.quarantine = file.with_extension("retry.jsonl");
    }
    prepare(&mut s, out).await?;
    let quarantine = Arc::new(quarantine::Quarantine::new(s.quarantine.clone(), s.rules.redact));
    let pipeline = Pipeline::start(s.client.clone(), s.rules.clone(), TimeFilter::default(), s.opts.clone(), quarantine.clone());
    let mut docs = Vec::new();
    let mut report = Report::default();
    let name: Arc<str> = Arc::from(file.display().to_string());
    for (n, line) in lines()? {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: quarantine::Entry = serde_json::from_str(&line).map_err(|e| usage(format!("{}:{}: not a quarantine line: {e}", file.display(), n + 1)))?;
        if docs.len() >= REPLAY_BATCH {
            pipeline.load_docs(name.clone(), std::mem::take(&mut docs)).await;
        }
        match (e.kind.as_str(), e.index, e.id, e.document) {
            ("document", Some(index), Some(id), Some(doc)) if !index.is_empty() => docs.push((index, id, doc)),
            ("record", ..) => {
                // The record never became a document: rebuild it (maybe the rules changed), or keep it.
                let text = e.record_text.unwrap_or_default();
                let mut body = Vec::new();
                match doc::append_bulk(&s.rules, &text, &mut body) {
                    Ok(d) => {
                        let src = body.split(|c| *c == b'\n').nth(1).unwrap_or_default();
                        match serde_json::from_slice::<Box<serde_json::value::RawValue>>(src) {
                            Ok(raw) => docs.push((d.index, d.id, raw)),
                            Err(_) => quarantine.record(&e.file, "still not a document", text.as_bytes())?,
                        }
                    }
                    Err(err) => quarantine.record(&e.file, &err.to_string(), text.as_bytes())?,
                }
            }
            ("file", ..) => {
                report.damaged.push((e.file.clone(), "damaged file: reload it with backfill --source-dir/--bucket".into()));
                quarantine.file(&e.file, "damaged file (carried over by replay)")?;
            }
            _ => return Err(usage(format!("{}:{}: quarantine line without a document", file.display(), n + 1))),
        }
    }
    // The per-file result is not needed: the run's totals below say everything about a replay.
    pipeline.load_docs(name, docs).await;
    let fatal = pipeline.fatal();
    let stats = pipeline.finish().await;
    if fatal.is_none() {
        let done = file.with_extension("replayed.jsonl");
        std::fs::rename(file, &done).with_context(|| format!("renaming {} after replay", file.display()))?;
        out.note(format!("replayed {} → kept as {}", file.display(), done.display()));
    }
    summary("backfill", &stats, &report, started.elapsed().as_secs_f64(), quarantine.path(), None, false, &[], out);
    if let Some(f) = fatal {
        anyhow::bail!("{f}");
    }
    Ok(exit_for(&stats))
}

use crate::permissions as perm;
/// What `backfill` and `ingest` call (source.rs, follow.rs, sqs.rs): the log files in the bucket (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html:
/// ListBucket on the bucket, GetObject on objects) and the notification queue (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsqs.html: queue).
/// The ingest-worker policy `init` creates grants the same to workers, and nothing else (sqs:GetQueueUrl is not
/// needed: the queue's URL comes from the stack's record, sqs.rs).
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("s3:ListBucket", perm::Res::Bucket, &[perm::Cmd::Backfill]),
    perm::p("s3:GetObject", perm::Res::BucketObjects, &[perm::Cmd::Backfill, perm::Cmd::Ingest]),
    perm::p("sqs:GetQueueAttributes", perm::Res::Queues, &[perm::Cmd::Ingest]),
    perm::p("sqs:ReceiveMessage", perm::Res::Queues, &[perm::Cmd::Ingest]),
    perm::p("sqs:ChangeMessageVisibility", perm::Res::Queues, &[perm::Cmd::Ingest]),
    perm::p("sqs:DeleteMessage", perm::Res::Queues, &[perm::Cmd::Ingest]),
    perm::p("sqs:SendMessage", perm::Res::Queues, &[perm::Cmd::Ingest]),
    // `backfill --enqueue` (sqs.rs): SendMessageBatch, which sqs:SendMessage covers (SQS Developer Guide, "Amazon
    // SQS batch actions")
    perm::with(&[perm::Feature::Enqueue], "sqs:SendMessage", perm::Res::Queues, &[perm::Cmd::Backfill]),
];
