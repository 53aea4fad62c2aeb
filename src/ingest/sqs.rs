//! SQS: `ingest` follows the queue CloudTrail notifies; `backfill --enqueue` feeds it.
//!
//! Accepted message bodies (raw or inside an SNS envelope): CloudTrail's `{"s3Bucket":..,"s3ObjectKey":[..]}`,
//! S3 event notifications (`{"Records":[{"s3":{"bucket":{"name":..},"object":{"key":..}}}]}`, keys URL-encoded),
//! and the no-op messages `CloudTrail validation message.` and `s3:TestEvent`, which are deleted. Anything else
//! is left alone so that the queue's redrive policy moves it to the dead-letter queue.

use serde::Deserialize;
use tokio::sync::mpsc;

use super::checkpoint::{Checkpoint, Frontier};
use super::source::Listed;

/// What a message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// Load these `(bucket, key)` objects.
    Files(Vec<(String, String)>),
    /// Test/validation message: delete it.
    Ignore(&'static str),
    /// Not something we understand: leave it for the dead-letter queue.
    Garbage(String),
}

#[derive(Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
struct CloudTrailNotice {
    #[serde(rename = "s3Bucket")]
    bucket: String,
    #[serde(rename = "s3ObjectKey")]
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct S3Event {
    #[serde(rename = "Records", default)]
    records: Vec<S3Record>,
    #[serde(rename = "Event", default)]
    event: Option<String>,
}

#[derive(Deserialize)]
struct S3Record {
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
}

/// S3 event keys are URL-encoded with `+` for spaces.
fn s3_event_key(k: &str) -> String {
    let plus = k.replace('+', " ");
    url::form_urlencoded::parse(format!("k={}", plus.replace('&', "%26").replace('=', "%3D")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or(plus)
}

pub fn parse(body: &str) -> Notice {
    parse_depth(body, 0)
}

fn parse_depth(body: &str, depth: u8) -> Notice {
    let t = body.trim();
    if t == "CloudTrail validation message." {
        return Notice::Ignore("CloudTrail validation message");
    }
    if depth < 2 {
        if let Ok(env) = serde_json::from_str::<SnsEnvelope>(t) {
            if env.kind.as_deref().is_none_or(|k| k == "Notification") {
                return parse_depth(&env.message, depth + 1);
            }
        }
    }
    if let Ok(n) = serde_json::from_str::<CloudTrailNotice>(t) {
        if !n.bucket.is_empty() && !n.keys.is_empty() && n.keys.iter().all(|k| !k.is_empty()) {
            return Notice::Files(n.keys.into_iter().map(|k| (n.bucket.clone(), k)).collect());
        }
    }
    if let Ok(e) = serde_json::from_str::<S3Event>(t) {
        if e.event.as_deref() == Some("s3:TestEvent") {
            return Notice::Ignore("s3:TestEvent");
        }
        if !e.records.is_empty() {
            return Notice::Files(e.records.into_iter().map(|r| (r.s3.bucket.name, s3_event_key(&r.s3.object.key))).collect());
        }
    }
    let mut shown: String = t.chars().take(120).collect();
    if t.chars().count() > 120 {
        shown.push('…');
    }
    Notice::Garbage(shown)
}

/// What `backfill --enqueue` did.
#[derive(Debug, Default)]
pub struct Enqueued {
    pub sent: u64,
    /// Files the checkpoint had as enqueued by an earlier run.
    pub already_done: u64,
    pub requests: u64,
}

/// SendMessageBatch calls in flight at once.
const SEND_CONCURRENCY: usize = 16;

/// Send one CloudTrail-style notification per file, 10 per SendMessageBatch call, `SEND_CONCURRENCY` calls at
/// a time. A file is checkpointed once SQS accepted its message, and a listed directory collapses once all of
/// its files are; a rerun sends only what is not yet in the queue.
pub async fn enqueue(
    cfg: &aws_config::SdkConfig,
    queue_url: &str,
    bucket: &str,
    rx: &mut mpsc::Receiver<Listed>,
    cp: &mut Checkpoint,
    dry_run: bool,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<Enqueued> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    use futures::StreamExt as _;
    let region = queue_region(queue_url);
    let cfg = match &region {
        Some(r) => crate::aws::in_region(cfg, r),
        None => cfg.clone(),
    };
    let client = aws_sdk_sqs::Client::new(&cfg);
    let started = std::time::Instant::now();
    let mut n = Enqueued::default();
    let mut frontier = Frontier::default();
    let mut batch: Vec<String> = Vec::with_capacity(10);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut last_save = std::time::Instant::now();
    let send = |keys: Vec<String>| {
        let client = client.clone();
        async move {
            let entries = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let body = serde_json::json!({"s3Bucket": bucket, "s3ObjectKey": [k]}).to_string();
                    SendMessageBatchRequestEntry::builder().id(format!("m{i}")).message_body(body).build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut pending = entries;
            let mut calls = 0u64;
            for attempt in 0..6u32 {
                calls += 1;
                let r = client
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| crate::aws::explain(e, &format!("sending to {queue_url}"), "sqs:SendMessage"))?;
                // SenderFault: the entry itself is wrong (sending it again cannot help); stop, naming SQS's reason.
                if let Some(f) = r.failed().iter().find(|f| f.sender_fault()) {
                    anyhow::bail!(
                        "SQS refused a message for {queue_url} as the sender's fault ({}: {}); nothing after the last \
                         checkpointed file was sent",
                        f.code(),
                        f.message().unwrap_or("no message")
                    );
                }
                let failed: Vec<String> = r.failed().iter().map(|f| f.id().to_string()).collect();
                if failed.is_empty() {
                    return Ok::<_, anyhow::Error>((keys, calls));
                }
                pending.retain(|e| failed.iter().any(|f| f == e.id()));
                // full jitter: workers refused together do not all come back at the same instant
                let cap = std::time::Duration::from_millis(100 << attempt);
                tokio::time::sleep(cap.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
            }
            anyhow::bail!("SQS kept refusing {} messages for {queue_url}; rerun to send the rest", pending.len())
        }
    };
    let mut settle = |cp: &mut Checkpoint, frontier: &mut Frontier, keys: Vec<String>| -> anyhow::Result<()> {
        for k in keys {
            cp.mark(&k)?;
            for d in frontier.settle(&k, true) {
                cp.mark_dir(&d)?;
            }
        }
        if last_save.elapsed() > std::time::Duration::from_secs(1) {
            cp.save()?;
            last_save = std::time::Instant::now();
        }
        Ok(())
    };
    loop {
        let item = rx.recv().await;
        let full = match &item {
            None => !batch.is_empty(),
            Some(Listed::File(_)) => batch.len() == 10,
            Some(Listed::Sealed(_)) => false,
        };
        if full && !dry_run {
            while in_flight.len() >= SEND_CONCURRENCY {
                let (keys, calls) = in_flight.next().await.expect("not empty")?;
                n.requests += calls;
                settle(cp, &mut frontier, keys)?;
            }
            in_flight.push(send(std::mem::take(&mut batch)));
        }
        match item {
            None => break,
            Some(Listed::Sealed(d)) => {
                for d in frontier.seal(&d) {
                    cp.mark_dir(&d)?;
                }
            }
            Some(Listed::File(f)) => {
                if super::source::is_digest(&f.key) || !super::source::looks_like_log(&f.key) {
                    continue;
                }
                if cp.is_done(&f.key) {
                    n.already_done += 1;
                    continue;
                }
                n.sent += 1;
                pb.set_length(n.sent);
                pb.set_message(format!("{:.0} messages/s", n.sent as f64 / started.elapsed().as_secs_f64().max(0.001)));
                if dry_run {
                    continue;
                }
                frontier.dispatch(&f.key);
                batch.push(f.key);
            }
        }
        pb.set_position(n.sent.saturating_sub((batch.len() + in_flight.len() * 10) as u64));
    }
    while let Some(r) = in_flight.next().await {
        let (keys, calls) = r?;
        n.requests += calls;
        settle(cp, &mut frontier, keys)?;
    }
    Ok(n)
}

/// `https://sqs.us-east-1.amazonaws.com/123/q` → `us-east-1`.
/// The URL of the dead-letter queue a `RedrivePolicy` names (`deadLetterTargetArn`), built from the queue's own
/// URL: SQS requires the dead-letter queue in the same account and region, so only the last path segment
/// differs (this keeps endpoint overrides, and needs no sqs:GetQueueUrl).
pub fn dead_letter_url(queue_url: &str, redrive_policy: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(redrive_policy).ok()?;
    let name = v["deadLetterTargetArn"].as_str()?.rsplit(':').next()?.to_string();
    let (base, _) = queue_url.trim_end_matches('/').rsplit_once('/')?;
    (!name.is_empty()).then(|| format!("{base}/{name}"))
}

/// Move a message to the dead-letter queue ourselves, body untouched, with why in the message attribute
/// `trailsetup-reason`; then delete it from the queue.
pub async fn dead_letter(client: &aws_sdk_sqs::Client, dlq_url: &str, deleter: &Deleter, m: &aws_sdk_sqs::types::Message, reason: &str) -> anyhow::Result<()> {
    use aws_sdk_sqs::types::MessageAttributeValue;
    let attr = MessageAttributeValue::builder().data_type("String").string_value(reason).build()?;
    client
        .send_message()
        .queue_url(dlq_url)
        .message_body(m.body().unwrap_or_default())
        .message_attributes("trailsetup-reason", attr)
        .send()
        .await
        .map_err(|e| crate::aws::explain(e, &format!("sending a refused message to {dlq_url}"), "sqs:SendMessage"))?;
    deleter.delete(m);
    Ok(())
}

/// Deletes received messages in batches of up to ten (DeleteMessageBatch), from one task.
///
/// One request per ten messages instead of one per message: SQS bills per request, and its guide recommends the
/// batch actions for that reason (Amazon SQS Developer Guide, "Amazon SQS batch actions"; the batch actions need
/// no permission of their own: `sqs:DeleteMessage` covers DeleteMessageBatch). Each entry succeeds or fails on
/// its own, so a 200 answer is read entry by entry (API Reference, DeleteMessageBatch). A message whose delete
/// failed only comes back after its visibility timeout; its documents are then counted as duplicates.
/// A failed call (e.g. AccessDenied) is kept and ends the run: every message would otherwise come back forever.
#[derive(Clone)]
pub struct Deleter {
    tx: mpsc::UnboundedSender<String>,
    failed: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// How long a delete waits for others to share its request.
const DELETE_LINGER: std::time::Duration = std::time::Duration::from_millis(50);

impl Deleter {
    /// The deleter, and its task: it ends once every clone is dropped, having sent everything queued, with the
    /// first failed call if any.
    pub fn start(client: aws_sdk_sqs::Client, queue: String) -> (Deleter, tokio::task::JoinHandle<Option<String>>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
        let f2 = std::sync::Arc::clone(&failed);
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut handles = vec![first];
                let deadline = tokio::time::Instant::now() + DELETE_LINGER;
                while handles.len() < 10 {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(h)) => handles.push(h),
                        Ok(None) | Err(_) => break,
                    }
                }
                if let Err(e) = delete_batch(&client, &queue, &handles).await {
                    tracing::warn!("{e:#}");
                    f2.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| format!("{e:#}"));
                }
            }
            let first = f2.lock().unwrap_or_else(|p| p.into_inner()).clone();
            first
        });
        (Deleter { tx, failed }, task)
    }

    /// Queue a received message for deletion (a message without a receipt handle has nothing to delete).
    pub fn delete(&self, m: &aws_sdk_sqs::types::Message) {
        if let Some(h) = m.receipt_handle() {
            let _ = self.tx.send(h.to_string());
        }
    }

    /// The first failed DeleteMessageBatch call, if any.
    pub fn failed(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn delete_batch(client: &aws_sdk_sqs::Client, queue: &str, handles: &[String]) -> anyhow::Result<()> {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry as Entry;
    let entries = handles
        .iter()
        .enumerate()
        .map(|(i, h)| Entry::builder().id(i.to_string()).receipt_handle(h).build())
        .collect::<Result<Vec<_>, _>>()?;
    let r = client
        .delete_message_batch()
        .queue_url(queue)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| crate::aws::explain(e, &format!("deleting messages from {queue}"), "sqs:DeleteMessage"))?;
    for f in r.failed() {
        tracing::warn!(
            "message not deleted from {queue} ({}: {}); it comes back after its visibility timeout and its documents count as duplicates",
            f.code(),
            f.message().unwrap_or_default()
        );
    }
    Ok(())
}

pub fn queue_region(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_string();
    let mut parts = host.split('.');
    match (parts.next(), parts.next()) {
        (Some("sqs"), Some(r)) if r.contains('-') => Some(r.to_string()),
        (Some(r), Some("queue")) if r.contains('-') => Some(r.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_url_from_the_redrive_policy() {
        let rp = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:ts-notifications-dlq","maxReceiveCount":"5"}"#;
        assert_eq!(
            super::dead_letter_url("https://sqs.us-east-1.amazonaws.com/123456789012/ts-notifications", rp).as_deref(),
            Some("https://sqs.us-east-1.amazonaws.com/123456789012/ts-notifications-dlq")
        );
        assert_eq!(
            super::dead_letter_url("http://127.0.0.1:5000/123456789012/q", rp).as_deref(),
            Some("http://127.0.0.1:5000/123456789012/ts-notifications-dlq")
        );
        assert_eq!(super::dead_letter_url("http://x/1/q", "not json"), None);
    }

    #[test]
    fn formats() {
        let ct = r#"{"s3Bucket":"b","s3ObjectKey":["AWSLogs/1/CloudTrail/us-east-1/2024/01/01/a.json.gz"]}"#;
        let want = Notice::Files(vec![("b".into(), "AWSLogs/1/CloudTrail/us-east-1/2024/01/01/a.json.gz".into())]);
        assert_eq!(parse(ct), want);
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "x", "Message": ct}).to_string();
        assert_eq!(parse(&sns), want);
        let s3 = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a+b%3Dc.json.gz","size":1}}}]}"#;
        assert_eq!(parse(s3), Notice::Files(vec![("b".into(), "a b=c.json.gz".into())]));
        let s3sns = serde_json::json!({"Type": "Notification", "Message": s3}).to_string();
        assert_eq!(parse(&s3sns), Notice::Files(vec![("b".into(), "a b=c.json.gz".into())]));
        assert!(matches!(parse("CloudTrail validation message."), Notice::Ignore(_)));
        let v = serde_json::json!({"Type": "Notification", "Message": "CloudTrail validation message."}).to_string();
        assert!(matches!(parse(&v), Notice::Ignore(_)));
        assert!(matches!(parse(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#), Notice::Ignore(_)));
        assert!(matches!(parse("hello"), Notice::Garbage(_)));
        assert!(matches!(parse(r#"{"s3Bucket":"b","s3ObjectKey":[]}"#), Notice::Garbage(_)));
        assert_eq!(queue_region("https://sqs.eu-west-1.amazonaws.com/1/q").as_deref(), Some("eu-west-1"));
        assert_eq!(queue_region("http://127.0.0.1:5000/1/q"), None);
    }
}
