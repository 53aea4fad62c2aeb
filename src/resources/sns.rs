//! SNS: one topic per trail region (CloudTrail publishes there, limited to the trail by aws:SourceArn) and its
//! subscription to the home-region queue (cross-region).

use crate::plan::check::{found, Check, Level};
use anyhow::anyhow;
use aws_sdk_sns::types::Tag;
use serde_json::{json, Value};

use super::{parse_policy, Aws, Ctx, TAG_KEY};
use crate::aws::{code, explain};
use crate::plan::{Kind, Action, Change};

pub fn desired_topic(ctx: &Ctx, region: &str) -> Value {
    json!({"kms_key": ctx.kms_key_for(region), "tags": ctx.tags()})
}

/// A topic as found: its settings, its policy, and our subscription (if there is one).
pub type Observed = (Value, Value, Option<Value>);

pub fn desired_subscription(ctx: &Ctx, region: &str) -> Value {
    json!({"topic_arn": ctx.topic_arn(region), "protocol": "sqs", "endpoint": ctx.queue_arn(&ctx.queue_name())})
}

pub fn subscription_name(ctx: &Ctx) -> String {
    format!("{} -> {}", ctx.topic_name(), ctx.queue_name())
}

fn client(aws: &Aws, region: &str) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&aws.at(region))
}

pub async fn observe(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Option<Observed>> {
    let sns = client(aws, region);
    let arn = ctx.topic_arn(region);
    let attrs = match sns.get_topic_attributes().topic_arn(&arn).send().await {
        Ok(r) => r.attributes.unwrap_or_default(),
        Err(e) if code(&e).as_deref() == Some("NotFound") => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading topic {arn}"), "sns:GetTopicAttributes")),
    };
    let tags = sns
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading the tags of topic {arn}"), "sns:ListTagsForResource"))?;
    let tag = tags.tags().iter().find(|t| t.key() == TAG_KEY).map(|t| json!({TAG_KEY: t.value()})).unwrap_or(json!({}));
    let topic = json!({"kms_key": attrs.get("KmsMasterKeyId").filter(|k| !k.is_empty()), "tags": tag});
    let policy = attrs.get("Policy").map(|p| parse_policy(p)).transpose()?;
    let want = desired_subscription(ctx, region);
    let sub = subscribed(aws, region, &arn, want["endpoint"].as_str().unwrap_or_default()).await?.then_some(want);
    Ok(Some((topic, json!({"policy": policy}), sub)))
}

/// Is `endpoint` (a queue ARN) subscribed to `topic` over SQS? Our topic's subscription and a reused trail's.
pub async fn subscribed(aws: &Aws, region: &str, topic: &str, endpoint: &str) -> anyhow::Result<bool> {
    let sns = client(aws, region);
    let mut pages = sns.list_subscriptions_by_topic().topic_arn(topic).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain(e, &format!("listing the subscriptions of {topic}"), "sns:ListSubscriptionsByTopic"))?;
        if page.subscriptions().iter().any(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(endpoint)) {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn changes(ctx: &Ctx, region: &str, now: Option<Observed>) -> Vec<Change> {
    let (topic, policy, sub) = match now {
        None => (None, None, None),
        Some((t, p, s)) => (Some(t), Some(p), s),
    };
    vec![
        Change::diff(Kind::SnsTopic, ctx.topic_name(), region, desired_topic(ctx, region), topic),
        Change::diff(Kind::SnsTopicPolicy, ctx.topic_name(), region, json!({"policy": ctx.topic_policy(region)}), policy),
        Change::diff(Kind::SnsSubscription, subscription_name(ctx), region, desired_subscription(ctx, region), sub),
    ]
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let r = c.region.as_str();
    let sns = client(aws, r);
    let arn = ctx.topic_arn(r);
    match c.kind.as_str() {
        "sns-topic" => {
            if c.action == Action::Create {
                let mut req = sns.create_topic().name(ctx.topic_name()).tags(Tag::builder().key(TAG_KEY).value(&ctx.stack).build()?);
                if let Some(k) = ctx.kms_key_for(r) {
                    req = req.attributes("KmsMasterKeyId", k);
                }
                req.send().await.map_err(|e| explain(e, &format!("creating topic {arn}"), "sns:CreateTopic"))?;
            } else {
                if let Some(k) = ctx.kms_key_for(r) {
                    sns.set_topic_attributes()
                        .topic_arn(&arn)
                        .attribute_name("KmsMasterKeyId")
                        .attribute_value(k)
                        .send()
                        .await
                        .map_err(|e| explain(e, &format!("setting the KMS key of {arn}"), "sns:SetTopicAttributes"))?;
                }
                sns.tag_resource()
                    .resource_arn(&arn)
                    .tags(Tag::builder().key(TAG_KEY).value(&ctx.stack).build()?)
                    .send()
                    .await
                    .map_err(|e| explain(e, &format!("tagging topic {arn}"), "sns:TagResource"))?;
            }
        }
        "sns-topic-policy" => {
            sns.set_topic_attributes()
                .topic_arn(&arn)
                .attribute_name("Policy")
                .attribute_value(c.details["policy"].to_string())
                .send()
                .await
                .map_err(|e| explain(e, &format!("setting the policy of topic {arn}"), "sns:SetTopicAttributes"))?;
        }
        "sns-subscription" => {
            let arn = c.details["topic_arn"].as_str().unwrap_or(&arn);
            sns.subscribe()
                .topic_arn(arn)
                .protocol("sqs")
                .endpoint(c.details["endpoint"].as_str().unwrap_or_default())
                .return_subscription_arn(true)
                .send()
                .await
                .map_err(|e| explain(e, &format!("subscribing the queue to {arn}"), "sns:Subscribe"))?;
        }
        other => return Err(anyhow!("sns cannot apply {other}")),
    }
    Ok(())
}

/// destroy: our subscription (found by its endpoint, our queue), or the topic (its policy goes with it).
pub async fn delete(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let r = c.region.as_str();
    let sns = client(aws, r);
    // a subscription names its topic (ours, or a reused trail's)
    let arn = c.details["topic_arn"].as_str().map(String::from).unwrap_or_else(|| ctx.topic_arn(r));
    if c.kind == crate::plan::Kind::SnsSubscription {
        let queue = ctx.queue_arn(&ctx.queue_name());
        let mut pages = sns.list_subscriptions_by_topic().topic_arn(&arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) if code(&e).as_deref() == Some("NotFound") => return Ok(()),
                Err(e) => return Err(explain(e, &format!("listing the subscriptions of {arn}"), "sns:ListSubscriptionsByTopic")),
            };
            for s in page.subscriptions().iter().filter(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue.as_str())) {
                if let Some(sub) = s.subscription_arn().filter(|a| a.starts_with("arn:")) {
                    sns.unsubscribe().subscription_arn(sub).send().await.map_err(|e| explain(e, &format!("unsubscribing {sub}"), "sns:Unsubscribe"))?;
                }
            }
        }
        return Ok(());
    }
    match sns.delete_topic().topic_arn(&arn).send().await {
        Ok(_) => Ok(()),
        Err(e) if code(&e).as_deref() == Some("NotFound") => Ok(()),
        Err(e) => Err(explain(e, &format!("deleting topic {arn}"), "sns:DeleteTopic")),
    }
}

// --- status ---

pub async fn check(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let mut out = Vec::new();
    let queue = ctx.queue_arn(&ctx.queue_name());
    // every topic the queue listens to: ours, or the reused trail's (which may be in another account)
    for (r, topic) in ctx.notification_topics() {
        let name = if ctx.reuse.is_some() { topic.clone() } else { subscription_name(ctx) };
        out.push(match subscription_of(aws, &r, &topic, &queue).await {
            Err(e) => found("subscription", &topic, &r, Level::Fail, format!("{e:#}"), "run `trailsetup init`"),
            Ok(None) => found("subscription", &name, &r, Level::Fail,
                format!("{topic} does not deliver to the queue: new log files are not announced to `ingest`"),
                "run `trailsetup init` (it subscribes the queue again)"),
            Ok(Some(arn)) if arn == "PendingConfirmation" => found("subscription", &name, &r, Level::Fail,
                "pending confirmation", "run `trailsetup init` as the queue's owner (its subscriptions confirm at once)"),
            Ok(Some(_)) => found("subscription", &name, &r, Level::Ok, "confirmed", ""),
        });
    }
    out
}

/// The ARN of `queue`'s SQS subscription to `topic` (`PendingConfirmation` while unconfirmed), or `None`. Read
/// from the topic's subscriptions; when the topic belongs to another account that does not let us list them,
/// from this account's own subscriptions in that region (a subscription is owned by the subscriber).
async fn subscription_of(aws: &Aws, region: &str, topic: &str, queue: &str) -> anyhow::Result<Option<String>> {
    let sns = aws_sdk_sns::Client::new(&aws.at(region));
    let pick = |subs: &[aws_sdk_sns::types::Subscription]| {
        subs.iter()
            .find(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue) && s.topic_arn().is_none_or(|t| t == topic))
            .map(|s| s.subscription_arn().unwrap_or("PendingConfirmation").to_string())
    };
    let mut pages = sns.list_subscriptions_by_topic().topic_arn(topic).into_paginator().send();
    let mut refused = false;
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => {
                if let Some(a) = pick(p.subscriptions()) {
                    return Ok(Some(a));
                }
            }
            Err(e) if crate::aws::code(&e).as_deref() == Some("AuthorizationError") => {
                refused = true;
                break;
            }
            Err(e) => return Err(explain(e, &format!("listing the subscriptions of {topic}"), "sns:ListSubscriptionsByTopic")),
        }
    }
    if !refused {
        return Ok(None);
    }
    let mut pages = sns.list_subscriptions().into_paginator().send();
    while let Some(page) = pages.next().await {
        let p = page.map_err(|e| explain(e, &format!("listing this account's subscriptions in {region}"), "sns:ListSubscriptions"))?;
        if let Some(a) = pick(p.subscriptions()) {
            return Ok(Some(a));
        }
    }
    Ok(None)
}

use crate::permissions as perm;
/// "... for Amazon SNS" (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsns.html): topic actions on the topic (a subscription's actions are
/// authorised on its topic: sns:Unsubscribe lists the `topic` resource type, which older versions of the page
/// left out); sns:ListSubscriptions has no resource type (`*`).
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("sns:GetTopicAttributes", perm::Res::Topic, perm::OBSERVE),
    perm::p("sns:ListTagsForResource", perm::Res::Topic, perm::OBSERVE),
    perm::p("sns:ListSubscriptionsByTopic", perm::Res::Topic, perm::OBSERVE),
    perm::p("sns:ListSubscriptions", perm::Res::Any, perm::OBSERVE),
    perm::p("sns:CreateTopic", perm::Res::Topic, perm::INIT),
    perm::p("sns:SetTopicAttributes", perm::Res::Topic, perm::INIT),
    perm::p("sns:TagResource", perm::Res::Topic, perm::INIT),
    perm::p("sns:Subscribe", perm::Res::Topic, perm::INIT),
    perm::p("sns:Unsubscribe", perm::Res::Topic, perm::DESTROY),
    perm::p("sns:DeleteTopic", perm::Res::Topic, perm::DESTROY),
];
