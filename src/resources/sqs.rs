//! SQS: the notification queue, its dead-letter queue (redrive) and the queue policy (only our topics send);
//! and in each forwarder region the forwarder's dead-letter queue (rejected records, failed invocations).

use std::collections::HashMap;

use anyhow::anyhow;
use aws_sdk_sqs::types::QueueAttributeName as A;
use serde_json::{json, Map, Value};

use super::{Aws, Ctx};
use crate::aws::{code, explain};
use crate::plan::{Action, Change};

pub const MAX_RECEIVE_COUNT: u32 = 5;

fn sse(ctx: &Ctx) -> Map<String, Value> {
    let mut m = Map::new();
    match &ctx.kms_key {
        None => {
            m.insert("SqsManagedSseEnabled".into(), json!("true"));
        }
        Some(k) => {
            m.insert("KmsMasterKeyId".into(), json!(k));
        }
    }
    m
}

pub fn desired_dlq(ctx: &Ctx) -> Value {
    let mut a = sse(ctx);
    a.insert("MessageRetentionPeriod".into(), json!("1209600"));
    json!({"attributes": a, "tags": ctx.tags()})
}

pub fn desired_queue(ctx: &Ctx) -> Value {
    let mut a = sse(ctx);
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
async fn observe(aws: &Aws, region: &str, name: &str, desired: &Value) -> anyhow::Result<Option<(Value, Option<Value>)>> {
    let Some(url) = queue_url_in(aws, region, name).await? else { return Ok(None) };
    let sqs = client(aws, region);
    let r = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(A::All)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading queue {name}"), "sqs:GetQueueAttributes"))?;
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

pub async fn plan(ctx: &Ctx, aws: Option<&Aws>) -> anyhow::Result<Vec<Change>> {
    let dlq = desired_dlq(ctx);
    let q = desired_queue(ctx);
    let (dlq_now, q_now) = match aws {
        None => (None, None),
        Some(a) => (observe(a, &ctx.home, &ctx.dlq_name(), &dlq).await?, observe(a, &ctx.home, &ctx.queue_name(), &q).await?),
    };
    let policy_now = q_now.as_ref().map(|(_, p)| json!({"policy": p}));
    Ok(vec![
        Change::diff("sqs-queue", ctx.dlq_name(), &ctx.home, dlq, dlq_now.map(|x| x.0)),
        Change::diff("sqs-queue", ctx.queue_name(), &ctx.home, q, q_now.map(|x| x.0)),
        Change::diff("sqs-queue-policy", ctx.queue_name(), &ctx.home, json!({"policy": ctx.queue_policy()}), policy_now),
    ])
}

/// The forwarder's dead-letter queue in `region`: same settings as the notifications' dead-letter queue.
pub async fn plan_forwarder_dlq(ctx: &Ctx, aws: Option<&Aws>, region: &str) -> anyhow::Result<Vec<Change>> {
    let want = desired_dlq(ctx);
    let now = match aws {
        None => None,
        Some(a) => observe(a, region, &ctx.forwarder_dlq_name(), &want).await?,
    };
    Ok(vec![Change::diff("sqs-queue", ctx.forwarder_dlq_name(), region, want, now.map(|x| x.0))])
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
                match sqs.create_queue().queue_name(name).set_attributes(Some(attrs.clone())).set_tags(Some(tags)).send().await {
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
