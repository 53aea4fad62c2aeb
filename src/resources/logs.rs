//! CloudWatch Logs: the trail's log group in each trail region (retention, KMS, tags).

use anyhow::anyhow;
use serde_json::{json, Value};

use super::{Aws, Ctx, TAG_KEY};
use crate::aws::{code, explain};
use crate::plan::{Action, Change};

pub fn desired(ctx: &Ctx) -> Value {
    json!({"retention_days": ctx.retention_days, "kms_key": ctx.kms_key.as_ref().map(|k| ctx.kms_key_arn(k)), "tags": ctx.tags()})
}

async fn observe(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Option<Value>> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.at(region));
    let name = ctx.log_group();
    let r = logs
        .describe_log_groups()
        .log_group_name_prefix(&name)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading log group {name} in {region}"), "logs:DescribeLogGroups"))?;
    let Some(g) = r.log_groups().iter().find(|g| g.log_group_name() == Some(name.as_str())) else { return Ok(None) };
    let tags = logs
        .list_tags_for_resource()
        .resource_arn(ctx.log_group_arn(region).trim_end_matches(":*"))
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

pub async fn plan(ctx: &Ctx, aws: Option<&Aws>, region: &str) -> anyhow::Result<Vec<Change>> {
    let now = match aws {
        None => None,
        Some(a) => observe(ctx, a, region).await?,
    };
    Ok(vec![Change::diff("logs-log-group", ctx.log_group(), region, desired(ctx), now)])
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.at(&c.region));
    let name = &c.name;
    let r = &c.region;
    if c.kind != "logs-log-group" {
        return Err(anyhow!("logs cannot apply {}", c.kind));
    }
    if c.action == Action::Create {
        match logs
            .create_log_group()
            .log_group_name(name)
            .set_kms_key_id(c.details["kms_key"].as_str().map(String::from))
            .tags(TAG_KEY, &ctx.stack)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if code(&e).as_deref() == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(explain(e, &format!("creating log group {name} in {r}"), "logs:CreateLogGroup")),
        }
    } else {
        if let Some(k) = c.details["kms_key"].as_str() {
            logs.associate_kms_key()
                .log_group_name(name)
                .kms_key_id(k)
                .send()
                .await
                .map_err(|e| explain(e, &format!("setting the KMS key of log group {name} in {r}"), "logs:AssociateKmsKey"))?;
        }
        logs.tag_resource()
            .resource_arn(ctx.log_group_arn(r).trim_end_matches(":*"))
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
