//! SQS: the notification queue, its dead-letter queue (redrive) and the queue policy (only our topics send);
//! and in each forwarder region the forwarder's dead-letter queue (rejected records, failed invocations).

use crate::plan::check::{found, Check, Level};
use std::collections::HashMap;

use anyhow::anyhow;
use aws_sdk_sqs::types::QueueAttributeName as A;
use serde_json::{json, Map, Value};

use super::{Aws, Ctx};
use crate::aws::{code, explain};
use crate::plan::{Kind, Action, Change};

pub const MAX_RECEIVE_COUNT: u32 = 5;

fn sse(ctx: &Ctx, region: &str) -> Map<String, Value> {
    let mut m = Map::new();
    match ctx.kms_key_for(region) {
        None => {
            m.insert("SqsManagedSseEnabled".into(), json!("true"));
        }
        Some(k) => {
            m.insert("KmsMasterKeyId".into(), json!(k));
        }
    }
    m
}

pub fn desired_dlq(ctx: &Ctx, region: &str) -> Value {
    let mut a = sse(ctx, region);
    a.insert("MessageRetentionPeriod".into(), json!("1209600"));
    json!({"attributes": a, "tags": ctx.tags()})
}

pub fn desired_queue(ctx: &Ctx) -> Value {
    let mut a = sse(ctx, &ctx.home);
    a.insert("MessageRetentionPeriod".into(), json!("345600"));
    a.insert("VisibilityTimeout".into(), json!("300"));
    a.insert(
        "RedrivePolicy".into(),
        json!({"deadLetterTargetArn": ctx.queue_arn(&ctx.dlq_name()), "maxReceiveCount": MAX_RECEIVE_COUNT.to_string()}),
    );
    json!({"attributes": a, "tags": ctx.tags()})
}

fn client(aws: &Aws, region: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&aws.at(region))
}

/// A home-region queue's URL.
pub async fn queue_url(ctx: &Ctx, aws: &Aws, name: &str) -> anyhow::Result<Option<String>> {
    queue_url_in(aws, &ctx.home, name).await
}

pub async fn queue_url_in(aws: &Aws, region: &str, name: &str) -> anyhow::Result<Option<String>> {
    match client(aws, region).get_queue_url().queue_name(name).send().await {
        Ok(r) => Ok(r.queue_url().map(String::from)),
        Err(e) if matches!(code(&e).as_deref(), Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")) => Ok(None),
        Err(e) => Err(explain(e, &format!("looking up queue {name} in {region}"), "sqs:GetQueueUrl")),
    }
}

/// observe: (attributes we manage, tags, policy) or `None`.
async fn observe_queue(aws: &Aws, region: &str, name: &str, desired: &Value) -> anyhow::Result<Option<(Value, Option<Value>)>> {
    let Some(url) = queue_url_in(aws, region, name).await? else { return Ok(None) };
    let sqs = client(aws, region);
    let r = match sqs.get_queue_attributes().queue_url(&url).attribute_names(A::All).send().await {
        Ok(r) => r,
        // GetQueueUrl can still answer for a queue deleted moments ago (init right after destroy): it is gone
        Err(e) if matches!(code(&e).as_deref(), Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")) => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading queue {name}"), "sqs:GetQueueAttributes")),
    };
    let attrs: HashMap<String, String> = r.attributes().map(|m| m.iter().map(|(k, v)| (k.as_str().to_string(), v.clone())).collect()).unwrap_or_default();
    let mut cur = Map::new();
    for k in desired["attributes"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        let v = attrs.get(&k).map(|s| {
            if k == "RedrivePolicy" {
                let mut p: Value = serde_json::from_str(s).unwrap_or(Value::Null);
                if let Some(n) = p.get("maxReceiveCount").cloned() {
                    p["maxReceiveCount"] = json!(n.as_str().map(String::from).unwrap_or_else(|| n.to_string()));
                }
                p
            } else {
                json!(s)
            }
        });
        cur.insert(k, v.unwrap_or(Value::Null));
    }
    let tags = sqs
        .list_queue_tags()
        .queue_url(&url)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading the tags of queue {name}"), "sqs:ListQueueTags"))?;
    let tag = tags.tags().and_then(|t| t.get(super::TAG_KEY)).cloned();
    let tags = match tag { Some(t) => json!({super::TAG_KEY: t}), None => json!({}) };
    let policy = attrs.get("Policy").map(|p| super::parse_policy(p)).transpose()?;
    Ok(Some((json!({"attributes": cur, "tags": tags}), policy)))
}

/// The notification queue (with its policy) and its dead-letter queue, as found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub dlq: Option<Value>,
    pub queue: Option<Value>,
    /// `Some(None)`: the queue exists without a policy
    pub policy: Option<Option<Value>>,
}

pub async fn observe(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Observed> {
    let (dn, qn, dd, qd) = (ctx.dlq_name(), ctx.queue_name(), desired_dlq(ctx, &ctx.home), desired_queue(ctx));
    let (d, q) = futures::try_join!(observe_queue(aws, &ctx.home, &dn, &dd), observe_queue(aws, &ctx.home, &qn, &qd))?;
    Ok(Observed { dlq: d.map(|x| x.0), policy: q.as_ref().map(|x| x.1.clone()), queue: q.map(|x| x.0) })
}

pub fn changes(ctx: &Ctx, o: &Observed) -> Vec<Change> {
    let policy_now = o.policy.as_ref().map(|p| json!({"policy": p}));
    vec![
        Change::diff(Kind::SqsQueue, ctx.dlq_name(), &ctx.home, desired_dlq(ctx, &ctx.home), o.dlq.clone()),
        Change::diff(Kind::SqsQueue, ctx.queue_name(), &ctx.home, desired_queue(ctx), o.queue.clone()),
        Change::diff(Kind::SqsQueuePolicy, ctx.queue_name(), &ctx.home, json!({"policy": ctx.queue_policy()}), policy_now),
    ]
}

/// The forwarder's dead-letter queue in `region`: same settings as the notifications' dead-letter queue.
pub async fn observe_forwarder_dlq(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Option<Value>> {
    Ok(observe_queue(aws, region, &ctx.forwarder_dlq_name(), &desired_dlq(ctx, region)).await?.map(|x| x.0))
}

pub fn forwarder_dlq_changes(ctx: &Ctx, region: &str, now: Option<Value>) -> Vec<Change> {
    vec![Change::diff(Kind::SqsQueue, ctx.forwarder_dlq_name(), region, desired_dlq(ctx, region), now)]
}

fn attributes(details: &Value) -> HashMap<A, String> {
    details["attributes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (A::from(k.as_str()), v.as_str().map(String::from).unwrap_or_else(|| v.to_string())))
        .collect()
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let sqs = client(aws, &c.region);
    let name = &c.name;
    match c.kind.as_str() {
        "sqs-queue" => {
            let attrs = attributes(&c.details);
            if c.action == Action::Create {
                let tags: HashMap<String, String> =
                    [(super::TAG_KEY.to_string(), ctx.stack.clone())].into_iter().collect();
                // a name deleted less than 60 s ago (init right after destroy) is refused until then
                let create = || sqs.create_queue().queue_name(name).set_attributes(Some(attrs.clone())).set_tags(Some(tags.clone())).send();
                match crate::aws::eventual::retry("CreateQueue", &format!("queue {name} in {}", c.region), create).await {
                    Ok(_) => return Ok(()),
                    // exists with other attributes: fall through to set them
                    Err(e) if code(&e).as_deref() == Some("QueueAlreadyExists") => {}
                    Err(e) => return Err(explain(e, &format!("creating queue {name}"), "sqs:CreateQueue")),
                }
            }
            let url = queue_url_in(aws, &c.region, name).await?.ok_or_else(|| anyhow!("queue {name} vanished"))?;
            sqs.set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attrs))
                .send()
                .await
                .map_err(|e| explain(e, &format!("configuring queue {name}"), "sqs:SetQueueAttributes"))?;
            sqs.tag_queue()
                .queue_url(&url)
                .tags(super::TAG_KEY, &ctx.stack)
                .send()
                .await
                .map_err(|e| explain(e, &format!("tagging queue {name}"), "sqs:TagQueue"))?;
        }
        "sqs-queue-policy" => {
            let url = queue_url_in(aws, &c.region, name).await?.ok_or_else(|| anyhow!("queue {name} does not exist"))?;
            sqs.set_queue_attributes()
                .queue_url(&url)
                .attributes(A::Policy, c.details["policy"].to_string())
                .send()
                .await
                .map_err(|e| explain(e, &format!("setting the policy of queue {name}"), "sqs:SetQueueAttributes"))?;
        }
        other => return Err(anyhow!("sqs cannot apply {other}")),
    }
    Ok(())
}

/// destroy: the queue (its policy goes with it).
pub async fn delete(aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let Some(url) = queue_url_in(aws, &c.region, &c.name).await? else { return Ok(()) };
    client(aws, &c.region)
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .map_err(|e| explain(e, &format!("deleting queue {} in {}", c.name, c.region), "sqs:DeleteQueue"))?;
    Ok(())
}

// --- status ---

pub async fn queue_depth(aws: &Aws, region: &str, name: &str) -> anyhow::Result<Option<(u64, u64, String)>> {
    let Some(url) = queue_url_in(aws, region, name).await? else { return Ok(None) };
    let a = aws_sdk_sqs::Client::new(&aws.at(region))
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| crate::aws::explain(e, &format!("reading queue {name}"), "sqs:GetQueueAttributes"))?;
    let n = |k: aws_sdk_sqs::types::QueueAttributeName| a.attributes().and_then(|m| m.get(&k)).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Some((n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages), n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible), url)))
}

pub async fn check(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let mut out = Vec::new();
    match queue_depth(aws, &ctx.home, &ctx.queue_name()).await {
        Ok(Some((v, nv, _))) => out.push(found("queue depth", ctx.queue_name(), &ctx.home, if v > 10_000 { Level::Warn } else { Level::Ok },
            format!("{v} waiting, {nv} in flight"), if v > 10_000 { "start more `trailsetup ingest` workers" } else { "" })),
        Ok(None) => {}
        Err(e) => out.push(found("queue depth", ctx.queue_name(), &ctx.home, Level::Fail, format!("{e:#}"), "grant sqs:GetQueueAttributes")),
    }
    let mut dlqs = vec![(ctx.home.clone(), ctx.dlq_name(), "notifications `ingest` could not handle")];
    for r in ctx.forwarder_regions() {
        dlqs.push((r, ctx.forwarder_dlq_name(), "records OpenSearch rejected, or forwarder invocations that failed"));
    }
    for (r, name, what) in dlqs {
        match queue_depth(aws, &r, &name).await {
            Ok(Some((v, nv, url))) if v + nv > 0 => out.push(found("dead-letter queue", &name, &r, Level::Fail,
                format!("{} message(s): {what}", v + nv),
                format!("read them (aws sqs receive-message --queue-url {url} --region {r}), fix the cause, then redrive or delete them"))),
            Ok(Some(_)) => out.push(found("dead-letter queue", &name, &r, Level::Ok, "empty", "")),
            Ok(None) => {}
            Err(e) => out.push(found("dead-letter queue", &name, &r, Level::Fail, format!("{e:#}"), "grant sqs:GetQueueAttributes")),
        }
    }
    out
}

use crate::permissions as perm;
/// "... for Amazon SQS" (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsqs.html): every action used here is on a queue.
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("sqs:GetQueueUrl", perm::Res::Queues, perm::OBSERVE),
    perm::p("sqs:GetQueueAttributes", perm::Res::Queues, perm::OBSERVE),
    perm::p("sqs:ListQueueTags", perm::Res::Queues, perm::OBSERVE),
    perm::p("sqs:CreateQueue", perm::Res::Queues, perm::INIT),
    perm::p("sqs:SetQueueAttributes", perm::Res::Queues, perm::INIT),
    perm::p("sqs:TagQueue", perm::Res::Queues, perm::INIT),
    perm::p("sqs:DeleteQueue", perm::Res::Queues, perm::DESTROY),
    perm::p("sqs:GetQueueUrl", perm::Res::ForwarderDlq, perm::OBSERVE),
    perm::p("sqs:GetQueueAttributes", perm::Res::ForwarderDlq, perm::OBSERVE),
    perm::p("sqs:ListQueueTags", perm::Res::ForwarderDlq, perm::OBSERVE),
    perm::p("sqs:CreateQueue", perm::Res::ForwarderDlq, perm::INIT),
    perm::p("sqs:SetQueueAttributes", perm::Res::ForwarderDlq, perm::INIT),
    perm::p("sqs:TagQueue", perm::Res::ForwarderDlq, perm::INIT),
    perm::p("sqs:DeleteQueue", perm::Res::ForwarderDlq, perm::DESTROY),
];
