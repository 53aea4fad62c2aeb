//! `trailsetup ingest`: follow the SQS queue and load each notified log file through the backfill pipeline.
//! A message is deleted only after every document of every file it names is settled; while a big file is in
//! flight its visibility is extended; messages we cannot read are left for the queue's redrive policy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, QueueAttributeName as A};
use tokio::sync::Semaphore;

use super::pipeline::{FileResult, Pipeline};
use super::sqs::{self, Notice};
use super::{prepare, quarantine::Quarantine, select, sink, Report};
use crate::cli::IngestArgs;
use crate::error::{usage, Exit};
use crate::output::Output;
use crate::settings::Common;

/// Visibility we ask for while a message is being worked on (renewed at a third of it) by default.
const VISIBILITY: i32 = 120;

pub async fn ingest(common: &Common, a: &IngestArgs, out: &Output) -> anyhow::Result<Exit> {
    let started = Instant::now();
    // the stack's defaults: the state file, or the account's record when the queue, bucket or sink is not given
    let given = (a.queue_url.is_some() || common.file.queue_url.is_some())
        && (a.bucket.is_some() || common.file.bucket.is_some())
        && (a.sink.os.opensearch_url.is_some() || common.file.opensearch_url.is_some());
    let state = crate::stack::defaults(common, a.name.as_deref(), given).await?;
    let queue_url = a
        .queue_url
        .clone()
        .or_else(|| common.file.queue_url.clone())
        .or_else(|| state.as_ref().and_then(|s| s.queue_url.clone()))
        .ok_or_else(|| {
            usage("no queue to follow: pass --queue-url (env TRAILSETUP_QUEUE_URL, config key queue_url), or run `trailsetup init` first")
        })?;
    let (_sel, filter) = select(common, &a.select)?;
    // Only the stack's bucket(s): anyone allowed to send to the queue must not make us read (with our role)
    // and index a bucket of their choosing.
    let buckets: Vec<String> = match a.bucket.clone().or_else(|| common.file.bucket.clone()) {
        Some(b) => crate::settings::split_list(&b),
        None => state
            .as_ref()
            .map(|s| s.bucket.iter().chain(s.use_trail.as_ref().map(|t| &t.bucket)).cloned().collect())
            .unwrap_or_default(),
    };
    if buckets.is_empty() {
        return Err(usage(
            "ingest loads only the files of known buckets: pass --bucket BUCKET[,BUCKET] (env TRAILSETUP_BUCKET, config \
             key bucket), or run `trailsetup init` first so the state file names the stack's bucket",
        ));
    }
    let buckets: Arc<std::collections::BTreeSet<String>> = Arc::new(buckets.into_iter().collect());
    let base = crate::aws::sdk_config(common).await;
    let cfg = match sqs::queue_region(&queue_url) {
        Some(r) => crate::aws::in_region(&base, &r),
        None => base.clone(),
    };
    let sqs_client = aws_sdk_sqs::Client::new(&cfg);
    let source_role = a.source_role.clone().or_else(|| common.file.source_role.clone()).or_else(|| state.as_ref().and_then(|s| s.source_role.clone()));
    let s3 = match &source_role {
        Some(role) => crate::aws::s3(&crate::aws::with_role(&base, role).await),
        None => crate::aws::s3(&base),
    };
    let mut sink = sink(common, &a.sink, state.as_ref(), Some(&base)).await?;
    if common.dry_run {
        let attrs = queue_attributes(&sqs_client, &queue_url, &[A::ApproximateNumberOfMessages]).await?;
        let n = attrs.get(&A::ApproximateNumberOfMessages).cloned().unwrap_or_default();
        out.line(format!("ingest --dry-run: {queue_url} holds about {n} messages; nothing was read"));
        return Ok(Exit::Success);
    }
    let visibility = a.visibility_timeout.unwrap_or(VISIBILITY);
    if !(2..=43_200).contains(&visibility) {
        return Err(usage("--visibility-timeout must be between 2 and 43200 seconds"));
    }
    // With a redrive policy, an unreadable message is made visible again at once so that SQS moves it to the
    // dead-letter queue after maxReceiveCount receives; without one it would come back forever.
    let redrive = queue_attributes(&sqs_client, &queue_url, &[A::RedrivePolicy]).await?.remove(&A::RedrivePolicy);
    let has_redrive = redrive.is_some();
    // the dead-letter queue, for messages we refuse with a reason (same account and region as the queue, as SQS
    // requires of a redrive target)
    let dlq_url = redrive.as_deref().and_then(|r| sqs::dead_letter_url(&queue_url, r));
    if !has_redrive {
        out.note(format!("warning: {queue_url} has no redrive policy: messages that are not notifications will keep coming back (init sets one up)"));
    }
    prepare(&mut sink, out).await?;
    let quarantine = Arc::new(Quarantine::new(sink.quarantine.clone(), sink.rules.redact));
    let pipeline = Arc::new(Pipeline::start(sink.client.clone(), sink.rules.clone(), filter, sink.opts.clone(), quarantine));
    let stats = pipeline.stats.clone();

    let stopping = Arc::new(AtomicBool::new(false));
    {
        let flag = stopping.clone();
        tokio::spawn(async move {
            crate::signals::wait().await;
            flag.store(true, Relaxed);
        });
    }
    // Messages in flight: each holds its message until its documents are acknowledged, so more of them than
    // files in a backfill keep the sink busy; memory stays bounded by the pipeline's chunk channel.
    let messages_in_flight = a.sink.concurrency.or(common.file.concurrency).unwrap_or(32);
    let sem = Arc::new(Semaphore::new(messages_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    let mut report = Report::default();
    let mut empty_polls = 0u32;
    let mut garbage = 0u64;
    let mut ignored = 0u64;
    let mut messages = 0u64;
    let (res_tx, mut res_rx) = tokio::sync::mpsc::unbounded_channel::<(String, FileResult)>();
    // every delete goes through one task, in batches of up to ten
    let (deleter, deleting) = sqs::Deleter::start(sqs_client.clone(), queue_url.clone());

    // a refused read (s3:GetObject) ends the run: every later message would be refused too
    let refused: Arc<std::sync::OnceLock<String>> = Arc::default();
    while !stopping.load(Relaxed) && pipeline.fatal().is_none() && deleter.failed().is_none() && refused.get().is_none() {
        // Only ask for as many messages as we have room for.
        let room = sem.available_permits().clamp(1, 10) as i32;
        let wait = if a.drain { 1 } else { 20 };
        let recv = sqs_client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(room)
            .wait_time_seconds(wait)
            .visibility_timeout(visibility)
            .send();
        let r = tokio::select! {
            r = recv => r.map_err(|e| crate::aws::explain(e, &format!("receiving from {queue_url}"), "sqs:ReceiveMessage"))?,
            _ = wait_flag(&stopping) => break,
        };
        while let Ok((key, res)) = res_rx.try_recv() {
            note_file(&mut report, key, res);
        }
        let msgs = r.messages.unwrap_or_default();
        if msgs.is_empty() {
            while tasks.try_join_next().is_some() {}
            // --drain: stop once the queue stays empty: nothing in flight here, and SQS counts no visible and no
            // in-flight message (another worker's, or one of ours that failed and will reappear), twice in a row.
            if a.drain && tasks.is_empty() {
                if queue_is_idle(&sqs_client, &queue_url).await? {
                    empty_polls += 1;
                    if empty_polls >= 2 {
                        break;
                    }
                } else {
                    empty_polls = 0;
                }
            }
            continue;
        }
        empty_polls = 0;
        for m in msgs {
            messages += 1;
            let body = m.body().unwrap_or_default();
            match sqs::parse(body) {
                Notice::Ignore(what) => {
                    ignored += 1;
                    tracing::info!("deleting {what}");
                    deleter.delete(&m);
                }
                Notice::Garbage(shown) => {
                    garbage += 1;
                    tracing::warn!("message {} is not a CloudTrail or S3 notification; left for the dead-letter queue: {shown}", m.message_id().unwrap_or("?"));
                    if has_redrive {
                        if let Some(h) = m.receipt_handle() {
                            let r = sqs_client.change_message_visibility().queue_url(&queue_url).receipt_handle(h).visibility_timeout(0).send().await;
                            if let Err(e) = r {
                                tracing::warn!("{}", crate::aws::explain(e, "ChangeMessageVisibility", "sqs:ChangeMessageVisibility"));
                            }
                        }
                    }
                }
                Notice::Files(files) if files.iter().any(|(b, _)| !buckets.contains(b)) => {
                    garbage += 1;
                    let foreign: std::collections::BTreeSet<&str> =
                        files.iter().map(|(b, _)| b.as_str()).filter(|b| !buckets.contains(*b)).collect();
                    let reason = format!(
                        "names bucket(s) {} that this stack does not read (accepted: {}; see --bucket)",
                        foreign.into_iter().collect::<Vec<_>>().join(", "),
                        buckets.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
                    );
                    tracing::warn!("message {}: {reason}; sent to the dead-letter queue, not loaded", m.message_id().unwrap_or("?"));
                    match &dlq_url {
                        Some(dlq) => sqs::dead_letter(&sqs_client, dlq, &deleter, &m, &reason).await?,
                        None => tracing::warn!("{queue_url} has no dead-letter queue: the message stays on the queue"),
                    }
                }
                Notice::Files(files) => {
                    let permit = sem.clone().acquire_owned().await.expect("never closed");
                    let (p, client, q, s3, tx, d, no) =
                        (pipeline.clone(), sqs_client.clone(), queue_url.clone(), s3.clone(), res_tx.clone(), deleter.clone(), refused.clone());
                    tasks.spawn(async move {
                        let ok = handle(&p, Followed { client: &client, queue: &q, visibility, deleter: &d }, &s3, &m, files, &tx, &no).await;
                        drop(permit);
                        ok
                    });
                }
            }
        }
        while let Some(r) = tasks.try_join_next() {
            if let Ok(Err(e)) = r {
                tracing::warn!("{e:#}");
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!("{e:#}");
        }
    }
    drop(res_tx);
    while let Some((key, res)) = res_rx.recv().await {
        note_file(&mut report, key, res);
    }
    drop(deleter);
    let delete_failed = deleting.await.unwrap_or_else(|e| Some(format!("deleting messages: {e}")));
    let fatal = pipeline.fatal();
    let quarantine_path = sink.quarantine.clone();
    if let Some(p) = Arc::into_inner(pipeline) {
        p.finish().await;
    }
    let secs = started.elapsed().as_secs_f64();
    let extra = [("messages", messages), ("ignored_messages", ignored), ("dead_letter_messages", garbage)];
    super::summary("ingest", &stats, &report, secs, &quarantine_path, None, false, &extra, out);
    if let Some(f) = fatal {
        anyhow::bail!("{f}\nmessages whose files were not fully loaded were not deleted and will come back");
    }
    if let Some(f) = refused.get() {
        anyhow::bail!("{f}\nthe messages whose files could not be read were not deleted and will come back");
    }
    if let Some(f) = delete_failed {
        anyhow::bail!("{f}\nthe messages not deleted come back after their visibility timeout; their documents are counted as duplicates");
    }
    Ok(super::exit_for(&stats))
}

async fn queue_attributes(client: &aws_sdk_sqs::Client, queue: &str, names: &[A]) -> anyhow::Result<HashMap<A, String>> {
    let r = client
        .get_queue_attributes()
        .queue_url(queue)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|e| crate::aws::explain(e, &format!("reading {queue}"), "sqs:GetQueueAttributes"))?;
    Ok(r.attributes.unwrap_or_default())
}

/// No visible and no in-flight messages on the queue.
async fn queue_is_idle(client: &aws_sdk_sqs::Client, queue: &str) -> anyhow::Result<bool> {
    let attrs = queue_attributes(client, queue, &[A::ApproximateNumberOfMessages, A::ApproximateNumberOfMessagesNotVisible]).await?;
    let n = |k: A| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(n(A::ApproximateNumberOfMessages) == 0 && n(A::ApproximateNumberOfMessagesNotVisible) == 0)
}

async fn wait_flag(flag: &AtomicBool) {
    while !flag.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn note_file(report: &mut Report, key: String, res: FileResult) {
    match res {
        FileResult::Skipped(why) => *report.skipped.entry(why).or_default() += 1,
        FileResult::Damaged { reason, .. } => report.damaged.push((key, reason)),
        FileResult::Loaded { complete: false, .. } | FileResult::Interrupted { .. } => report.incomplete += 1,
        FileResult::Loaded { .. } => {}
    }
}

/// The queue a worker follows: client, URL, the visibility it asks for, and where settled messages go.
struct Followed<'a> {
    client: &'a aws_sdk_sqs::Client,
    queue: &'a str,
    visibility: i32,
    deleter: &'a sqs::Deleter,
}

/// Load every file a message names; delete the message only when all of them are settled.
async fn handle(
    p: &Pipeline,
    q: Followed<'_>,
    s3: &aws_sdk_s3::Client,
    m: &Message,
    files: Vec<(String, String)>,
    tx: &tokio::sync::mpsc::UnboundedSender<(String, FileResult)>,
    refused: &std::sync::OnceLock<String>,
) -> anyhow::Result<()> {
    let Followed { client, queue, visibility, deleter } = q;
    let handle = m.receipt_handle().unwrap_or_default().to_string();
    // Keep the message invisible while its files are in flight.
    let keeper = {
        let (client, queue, handle) = (client.clone(), queue.to_string(), handle.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs((visibility / 3).max(1) as u64)).await;
                let r = client.change_message_visibility().queue_url(&queue).receipt_handle(&handle).visibility_timeout(visibility).send().await;
                if let Err(e) = r {
                    tracing::warn!("extending visibility: {}", crate::aws::explain(e, "ChangeMessageVisibility", "sqs:ChangeMessageVisibility"));
                }
            }
        })
    };
    let mut all_ok = true;
    let mut by_bucket: HashMap<String, super::source::S3Source> = HashMap::new();
    for (bucket, key) in files {
        // an S3 event notification on a trail's prefix also names its digest files (same prefix and suffix):
        // they hold hashes, not events
        if super::source::is_digest(&key) {
            tracing::debug!("s3://{bucket}/{key}: a digest file, not loaded");
            continue;
        }
        let src = by_bucket
            .entry(bucket.clone())
            .or_insert_with(|| super::source::S3Source::new(s3.clone(), bucket.clone(), String::new()));
        let name = format!("s3://{bucket}/{key}");
        let res = match src.get(&key).await {
            Ok(bytes) => p.load(name.clone().into(), move || Ok(std::io::Cursor::new(bytes)), ()).await,
            Err(e) => {
                all_ok = false;
                if crate::aws::is_refusal(&e) {
                    let _ = refused.set(format!("{e:#}"));
                } else {
                    tracing::warn!("{e:#}");
                }
                let _ = tx.send((name, FileResult::Interrupted { records: 0 }));
                continue;
            }
        };
        match &res {
            FileResult::Loaded { complete: true, .. } | FileResult::Skipped(_) | FileResult::Damaged { .. } => {}
            FileResult::Loaded { complete: false, .. } | FileResult::Interrupted { .. } => all_ok = false,
        }
        let _ = tx.send((name, res));
    }
    keeper.abort();
    if all_ok {
        deleter.delete(m);
    }
    Ok(())
}
