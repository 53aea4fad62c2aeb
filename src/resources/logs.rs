//! CloudWatch Logs: the trail's log group in each trail region (retention, KMS, tags), and its subscription
//! filter (empty pattern: every event) to the forwarder Lambda of that region.

use anyhow::anyhow;
use serde_json::{json, Value};

use super::{Aws, Ctx, TAG_KEY};
use crate::aws::{code, explain};
use crate::plan::{Kind, Action, Change};

/// CreateLogGroup/AssociateKmsKey take the ARN of a key, never an alias ("Encrypt log data in CloudWatch Logs
/// using AWS Key Management Service"): `kms_key_for` holds key ARNs resolved with kms:DescribeKey.
pub fn desired(ctx: &Ctx, region: &str) -> Value {
    json!({"retention_days": ctx.retention_days, "kms_key": ctx.kms_key_for(region), "tags": ctx.tags()})
}

/// The forwarder's own log group, `/aws/lambda/<name>-forwarder`. Lambda would create it at the first
/// invocation, untagged and never expiring (and `destroy` would leave it): `init` creates it first, with the
/// stack's retention and tag (Lambda Developer Guide, "Sending Lambda function logs to CloudWatch Logs": the
/// function writes to the log group named `/aws/lambda/<function name>`).
pub fn forwarder_log_group(ctx: &Ctx) -> String {
    format!("/aws/lambda/{}", ctx.forwarder_name())
}

/// The forwarder's log group: no KMS key (its lines are run summaries; the key policy's CloudWatch Logs grant
/// is limited to the trail's log group), so the key is not compared.
pub fn desired_forwarder(ctx: &Ctx) -> Value {
    json!({"retention_days": ctx.retention_days, "tags": ctx.tags()})
}

pub async fn observe_forwarder(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Option<Value>> {
    let mut v = observe_named(ctx, aws, region, &forwarder_log_group(ctx)).await?;
    if let Some(Value::Object(m)) = &mut v {
        m.remove("kms_key");
    }
    Ok(v)
}

pub fn forwarder_changes(ctx: &Ctx, region: &str, now: Option<Value>) -> Vec<Change> {
    vec![Change::diff(Kind::LogsLogGroup, forwarder_log_group(ctx), region, desired_forwarder(ctx), now)]
}

pub async fn observe(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Option<Value>> {
    observe_named(ctx, aws, region, &ctx.log_group()).await
}

fn group_arn(ctx: &Ctx, region: &str, name: &str) -> String {
    format!("arn:{}:logs:{region}:{}:log-group:{name}", ctx.partition, ctx.account)
}

async fn observe_named(ctx: &Ctx, aws: &Aws, region: &str, name: &str) -> anyhow::Result<Option<Value>> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.at(region));
    let name = name.to_string();
    let r = logs
        .describe_log_groups()
        .log_group_name_prefix(&name)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading log group {name} in {region}"), "logs:DescribeLogGroups"))?;
    let Some(g) = r.log_groups().iter().find(|g| g.log_group_name() == Some(name.as_str())) else { return Ok(None) };
    let tags = logs
        .list_tags_for_resource()
        .resource_arn(group_arn(ctx, region, &name))
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading the tags of log group {name} in {region}"), "logs:ListTagsForResource"))?;
    let tag = tags.tags().and_then(|t| t.get(TAG_KEY)).cloned();
    Ok(Some(json!({
        "retention_days": g.retention_in_days(),
        "kms_key": g.kms_key_id(),
        "tags": match tag { Some(t) => json!({TAG_KEY: t}), None => json!({}) },
    })))
}

pub fn changes(ctx: &Ctx, region: &str, now: Option<Value>) -> Vec<Change> {
    vec![Change::diff(Kind::LogsLogGroup, ctx.log_group(), region, desired(ctx, region), now)]
}

pub fn desired_subscription(ctx: &Ctx, region: &str) -> Value {
    json!({"log_group": ctx.log_group(), "filter_pattern": "", "destination_arn": ctx.forwarder_function_arn(region)})
}

pub async fn observe_subscription(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Option<Value>> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.at(region));
    let group = ctx.log_group();
    let r = match logs.describe_subscription_filters().log_group_name(&group).send().await {
        Ok(r) => r,
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => {
            return Err(explain(e, &format!("reading the subscription filters of {group} in {region}"), "logs:DescribeSubscriptionFilters"))
        }
    };
    let name = ctx.forwarder_name();
    Ok(r.subscription_filters().iter().find(|f| f.filter_name() == Some(name.as_str())).map(|f| {
        json!({
            "log_group": f.log_group_name(),
            "filter_pattern": f.filter_pattern().unwrap_or_default(),
            "destination_arn": f.destination_arn(),
        })
    }))
}

/// The log group's subscription filter to the forwarder (named like the function).
pub fn subscription_changes(ctx: &Ctx, region: &str, now: Option<Value>) -> Vec<Change> {
    vec![Change::diff(Kind::LogsSubscriptionFilter, ctx.forwarder_name(), region, desired_subscription(ctx, region), now)]
}

async fn apply_subscription(aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.at(&c.region));
    let group = c.details["log_group"].as_str().unwrap_or_default();
    let dest = c.details["destination_arn"].as_str().unwrap_or_default();
    let r = &c.region;
    // CloudWatch Logs test-invokes the function; a just-added permission can take a few seconds to count
    let start = std::time::Instant::now();
    loop {
        let res = logs
            .put_subscription_filter()
            .log_group_name(group)
            .filter_name(&c.name)
            .filter_pattern(c.details["filter_pattern"].as_str().unwrap_or_default())
            .destination_arn(dest)
            .send()
            .await;
        match res {
            Ok(_) => return Ok(()),
            Err(e)
                if code(&e).as_deref() == Some("InvalidParameterException")
                    && start.elapsed() < std::time::Duration::from_secs(60) =>
            {
                tracing::info!("waiting for CloudWatch Logs to be allowed to invoke {dest}");
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            }
            Err(e) => {
                return Err(explain(e, &format!("subscribing {dest} to log group {group} in {r}"), "logs:PutSubscriptionFilter"))
            }
        }
    }
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.at(&c.region));
    let name = &c.name;
    let r = &c.region;
    if c.kind == "logs-subscription-filter" {
        return apply_subscription(aws, c).await;
    }
    if c.kind != "logs-log-group" {
        return Err(anyhow!("logs cannot apply {}", c.kind));
    }
    if c.action == Action::Create {
        // the key policy may have been changed moments ago (KMS is eventually consistent)
        let create = || {
            logs.create_log_group()
                .log_group_name(name)
                .set_kms_key_id(c.details["kms_key"].as_str().map(String::from))
                .tags(TAG_KEY, &ctx.stack)
                .send()
        };
        match crate::aws::eventual::retry("CreateLogGroup", &format!("log group {name} in {r}"), create).await {
            Ok(_) => {}
            Err(e) if code(&e).as_deref() == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(explain(e, &format!("creating log group {name} in {r}"), "logs:CreateLogGroup")),
        }
    } else {
        if let Some(k) = c.details["kms_key"].as_str() {
            let associate = || logs.associate_kms_key().log_group_name(name).kms_key_id(k).send();
            crate::aws::eventual::retry("AssociateKmsKey", &format!("log group {name} in {r}"), associate)
                .await
                .map_err(|e| explain(e, &format!("setting the KMS key of log group {name} in {r}"), "logs:AssociateKmsKey"))?;
        }
        logs.tag_resource()
            .resource_arn(group_arn(ctx, r, name))
            .tags(TAG_KEY, &ctx.stack)
            .send()
            .await
            .map_err(|e| explain(e, &format!("tagging log group {name} in {r}"), "logs:TagResource"))?;
    }
    logs.put_retention_policy()
        .log_group_name(name)
        .retention_in_days(ctx.retention_days)
        .send()
        .await
        .map_err(|e| explain(e, &format!("setting the retention of log group {name} in {r}"), "logs:PutRetentionPolicy"))?;
    Ok(())
}

/// destroy: the subscription filter or the log group.
pub async fn delete(_ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.at(&c.region));
    let r = &c.region;
    let res = match c.kind {
        crate::plan::Kind::LogsSubscriptionFilter => logs
            .delete_subscription_filter()
            .log_group_name(c.details["log_group"].as_str().unwrap_or_default())
            .filter_name(&c.name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| (code(&e), explain(e, &format!("deleting subscription filter {} in {r}", c.name), "logs:DeleteSubscriptionFilter"))),
        _ => logs
            .delete_log_group()
            .log_group_name(&c.name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| (code(&e), explain(e, &format!("deleting log group {} in {r}", c.name), "logs:DeleteLogGroup"))),
    };
    match res {
        Ok(()) => Ok(()),
        Err((Some(code), _)) if code == "ResourceNotFoundException" => Ok(()),
        Err((_, e)) => Err(e),
    }
}

use crate::permissions as perm;
/// "Actions, resources, and condition keys for Amazon CloudWatch Logs" (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatchlogs.html): log-group actions on the group
/// (`…:log-group:NAME` and `…:log-group:NAME:*`); logs:DescribeLogGroups has no resource type there (`*`: it
/// lists the account's groups, and is not authorised on one group). With `--use-trail` the subscription filter
/// is put on (and removed from) the other trail's log group, which is not known before discovery.
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("logs:DescribeLogGroups", perm::Res::Any, perm::OBSERVE),
    perm::p("logs:ListTagsForResource", perm::Res::TrailLogGroup, perm::OBSERVE),
    perm::p("logs:DescribeSubscriptionFilters", perm::Res::TrailLogGroup, perm::OBSERVE),
    perm::p("logs:CreateLogGroup", perm::Res::TrailLogGroup, perm::INIT),
    perm::p("logs:PutRetentionPolicy", perm::Res::TrailLogGroup, perm::INIT),
    perm::p("logs:TagResource", perm::Res::TrailLogGroup, perm::INIT),
    perm::p("logs:PutSubscriptionFilter", perm::Res::TrailLogGroup, perm::INIT),
    perm::with(&[perm::Feature::Kms], "logs:AssociateKmsKey", perm::Res::TrailLogGroup, perm::INIT),
    perm::p("logs:DeleteSubscriptionFilter", perm::Res::TrailLogGroup, perm::DESTROY),
    perm::p("logs:DeleteLogGroup", perm::Res::TrailLogGroup, perm::DESTROY),
    perm::p("logs:ListTagsForResource", perm::Res::ForwarderLogGroup, perm::OBSERVE),
    perm::p("logs:CreateLogGroup", perm::Res::ForwarderLogGroup, perm::INIT),
    perm::p("logs:PutRetentionPolicy", perm::Res::ForwarderLogGroup, perm::INIT),
    perm::p("logs:TagResource", perm::Res::ForwarderLogGroup, perm::INIT),
    perm::p("logs:DeleteLogGroup", perm::Res::ForwarderLogGroup, perm::DESTROY),
    perm::with(&[perm::Feature::UseTrail], "logs:PutSubscriptionFilter", perm::Res::OtherLogGroup, perm::INIT),
    perm::with(&[perm::Feature::UseTrail], "logs:DeleteSubscriptionFilter", perm::Res::OtherLogGroup, perm::DESTROY),
];
