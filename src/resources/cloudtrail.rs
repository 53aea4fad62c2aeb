//! CloudTrail: the trail (multi-region) or trails (per-region): validation, SNS, CloudWatch Logs, logging on.

use crate::plan::check::{found, Check, Level};

use aws_sdk_cloudtrail::types::Tag;
use serde_json::{json, Value};

use super::{Aws, Ctx, TAG_KEY};
use crate::aws::{code, explain};
use crate::cli::TrailMode;
use crate::plan::{Kind, Action, Change};

pub fn desired(ctx: &Ctx, region: &str) -> Value {
    let multi = ctx.trail_mode == TrailMode::MultiRegion;
    json!({
        "s3_bucket": ctx.bucket,
        "sns_topic_name": ctx.topic_name(),
        "multi_region": multi,
        // global service events reach only trails in us-east-1 ("CloudTrail concepts → global service events")
        "include_global_service_events": ctx.records_global_events(region),
        "log_file_validation": true,
        "cloudwatch_logs_log_group_arn": ctx.log_group_arn(region),
        "cloudwatch_logs_role_arn": ctx.logs_role_arn(),
        // the bucket's key (same region as the bucket), as the key ARN GetTrail reports
        "kms_key": ctx.bucket_kms_key(),
        "logging": true,
        "tags": ctx.tags(),
    })
}

fn client(aws: &Aws, region: &str) -> aws_sdk_cloudtrail::Client {
    aws_sdk_cloudtrail::Client::new(&aws.at(region))
}

async fn observe(ctx: &Ctx, aws: &Aws, region: &str, name: &str) -> anyhow::Result<Option<Value>> {
    let ct = client(aws, region);
    let t = match ct.get_trail().name(name).send().await {
        Ok(r) => match r.trail {
            Some(t) => t,
            None => return Ok(None),
        },
        Err(e) if code(&e).as_deref() == Some("TrailNotFoundException") => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading trail {name} in {region}"), "cloudtrail:GetTrail")),
    };
    // a multi-region trail's shadow in another region: not ours to manage here
    if t.home_region().is_some_and(|h| h != region) {
        return Ok(None);
    }
    let arn = ctx.trail_arn(region, name);
    let status = ct
        .get_trail_status()
        .name(&arn)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading the status of trail {name} in {region}"), "cloudtrail:GetTrailStatus"))?;
    let tags = ct
        .list_tags()
        .resource_id_list(&arn)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading the tags of trail {name} in {region}"), "cloudtrail:ListTags"))?;
    let tag = tags
        .resource_tag_list()
        .iter()
        .flat_map(|r| r.tags_list())
        .find(|t| t.key() == TAG_KEY)
        .map(|t| json!({TAG_KEY: t.value()}))
        .unwrap_or(json!({}));
    // SnsTopicName is deprecated and holds the ARN in real AWS; compare names
    #[allow(deprecated)]
    let topic = t
        .sns_topic_arn()
        .or(t.sns_topic_name())
        .map(|s| s.rsplit(':').next().unwrap_or(s).to_string());
    Ok(Some(json!({
        "s3_bucket": t.s3_bucket_name(),
        "sns_topic_name": topic,
        "multi_region": t.is_multi_region_trail().unwrap_or(false),
        "include_global_service_events": t.include_global_service_events().unwrap_or(false),
        "log_file_validation": t.log_file_validation_enabled().unwrap_or(false),
        "cloudwatch_logs_log_group_arn": t.cloud_watch_logs_log_group_arn(),
        "cloudwatch_logs_role_arn": t.cloud_watch_logs_role_arn(),
        "kms_key": t.kms_key_id(),
        "logging": status.is_logging().unwrap_or(false),
        "tags": tag,
    })))
}

/// The trails of `region`, as found: (name, trail).
pub async fn observe_region(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Vec<(String, Option<Value>)>> {
    let mut out = Vec::new();
    for (r, name) in ctx.trails().into_iter().filter(|(r, _)| r == region) {
        let now = observe(ctx, aws, &r, &name).await?;
        out.push((name, now));
    }
    Ok(out)
}

/// CloudTrail answers `KmsKeyId` with the key ARN ("GetTrail" API reference), and the plan names the key by its
/// ARN (an alias is resolved with kms:DescribeKey first): a plain comparison, so an unchanged trail is a no-op.
pub fn changes(ctx: &Ctx, region: &str, trails: &std::collections::BTreeMap<String, Option<Value>>) -> Vec<Change> {
    ctx.trails()
        .into_iter()
        .filter(|(r, _)| r == region)
        .map(|(r, name)| {
            let now = trails.get(&name).cloned().flatten();
            Change::diff(Kind::CloudTrailTrail, name, r.clone(), desired(ctx, &r), now)
        })
        .collect()
}

fn tag(ctx: &Ctx) -> anyhow::Result<Tag> {
    Ok(Tag::builder().key(TAG_KEY).value(&ctx.stack).build()?)
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let r = c.region.as_str();
    let ct = client(aws, r);
    let name = &c.name;
    let d = &c.details;
    // the bucket policy, topic policy, logs role and key policy were written moments before: CloudTrail's
    // documented "not yet" answers are waited out (crate::aws::eventual)
    let what = format!("trail {name} in {r}");
    let tag_ = tag(ctx)?;
    {
        let res = if c.action == Action::Create {
            crate::aws::eventual::retry("CreateTrail", &what, || ct.create_trail()
                .name(name)
                .s3_bucket_name(&ctx.bucket)
                .sns_topic_name(ctx.topic_name())
                .is_multi_region_trail(d["multi_region"].as_bool().unwrap_or(false))
                .include_global_service_events(d["include_global_service_events"].as_bool().unwrap_or(false))
                .enable_log_file_validation(true)
                .cloud_watch_logs_log_group_arn(ctx.log_group_arn(r))
                .cloud_watch_logs_role_arn(ctx.logs_role_arn())
                .set_kms_key_id(ctx.bucket_kms_key())
                .tags_list(tag_.clone())
                .send())
                .await
                .map(|_| ())
                .map_err(|e| (code(&e), explain(e, &format!("creating trail {name} in {r}"), "cloudtrail:CreateTrail")))
        } else {
            crate::aws::eventual::retry("UpdateTrail", &what, || ct.update_trail()
                .name(name)
                .s3_bucket_name(&ctx.bucket)
                .sns_topic_name(ctx.topic_name())
                .is_multi_region_trail(d["multi_region"].as_bool().unwrap_or(false))
                .include_global_service_events(d["include_global_service_events"].as_bool().unwrap_or(false))
                .enable_log_file_validation(true)
                .cloud_watch_logs_log_group_arn(ctx.log_group_arn(r))
                .cloud_watch_logs_role_arn(ctx.logs_role_arn())
                .set_kms_key_id(ctx.bucket_kms_key())
                .send())
                .await
                .map(|_| ())
                .map_err(|e| (code(&e), explain(e, &format!("updating trail {name} in {r}"), "cloudtrail:UpdateTrail")))
        };
        match res {
            Ok(()) => {}
            Err((code, _)) if code.as_deref() == Some("TrailAlreadyExistsException") => {}
            Err((_, e)) => return Err(e),
        }
    }
    let arn = ctx.trail_arn(r, name);
    ct.add_tags()
        .resource_id(&arn)
        .tags_list(tag(ctx)?)
        .send()
        .await
        .map_err(|e| explain(e, &format!("tagging trail {name} in {r}"), "cloudtrail:AddTags"))?;
    ct.start_logging()
        .name(&arn)
        .send()
        .await
        .map_err(|e| explain(e, &format!("starting logging on trail {name} in {r}"), "cloudtrail:StartLogging"))?;
    Ok(())
}

/// destroy: the trail (a deleted trail stops logging).
pub async fn delete(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    // by name, in the trail's home region (DeleteTrail takes a name or an ARN)
    let _ = ctx;
    match client(aws, &c.region).delete_trail().name(&c.name).send().await {
        Ok(_) => Ok(()),
        Err(e) if code(&e).as_deref() == Some("TrailNotFoundException") => Ok(()),
        Err(e) => Err(explain(e, &format!("deleting trail {} in {}", c.name, c.region), "cloudtrail:DeleteTrail")),
    }
}

// --- status ---

pub async fn check(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let mut out = Vec::new();
    // a reused trail: read-only, is it still logging? (it is someone else's to fix)
    if let Some(t) = ctx.reuse.as_ref().filter(|t| t.visible) {
        let ct = aws_sdk_cloudtrail::Client::new(&aws.at(&t.home_region));
        out.push(match ct.get_trail_status().name(&t.arn).send().await {
            Ok(s) if s.is_logging().unwrap_or(false) => found("reused trail logging", &t.name, &t.home_region, Level::Ok, "logging", ""),
            Ok(_) => found("reused trail logging", &t.name, &t.home_region, Level::Fail, "logging is stopped: no event is recorded",
                "ask the trail's owner to start logging (trailsetup never changes a reused trail)"),
            Err(e) => found("reused trail logging", &t.name, &t.home_region, Level::Warn,
                format!("{:#}", crate::aws::explain(e, "GetTrailStatus", "cloudtrail:GetTrailStatus")), ""),
        });
    }
    for (r, n) in ctx.trails() {
        let ct = aws_sdk_cloudtrail::Client::new(&aws.at(&r));
        match ct.get_trail_status().name(ctx.trail_arn(&r, &n)).send().await {
            Err(e) => out.push(found("trail logging", &n, &r, Level::Fail, format!("{:#}", crate::aws::explain(e, "GetTrailStatus", "cloudtrail:GetTrailStatus")), "run `trailsetup init`")),
            Ok(s) => {
                out.push(if s.is_logging().unwrap_or(false) {
                    found("trail logging", &n, &r, Level::Ok, "logging", "")
                } else {
                    found("trail logging", &n, &r, Level::Fail, "logging is stopped: no event is recorded",
                        format!("aws cloudtrail start-logging --name {} --region {r} (or run `trailsetup init`)", ctx.trail_arn(&r, &n)))
                });
                let now_secs = chrono::Utc::now().timestamp();
                let secs = |t: Option<&aws_smithy_types::DateTime>| t.map(|t| t.secs());
                for (what, err, success, attempt, fix) in [
                    ("log file delivery", s.latest_delivery_error(), secs(s.latest_delivery_time()),
                        attempt_failed(s.latest_delivery_attempt_time(), s.latest_delivery_attempt_succeeded()),
                        "check the bucket policy and, with --kms-key, the key policy (`trailsetup init` repairs ours)"),
                    ("SNS notification", s.latest_notification_error(), secs(s.latest_notification_time()),
                        attempt_failed(s.latest_notification_attempt_time(), s.latest_notification_attempt_succeeded()),
                        "check the topic policy (and key policy): run `trailsetup init`"),
                    ("CloudWatch Logs delivery", s.latest_cloud_watch_logs_delivery_error(), secs(s.latest_cloud_watch_logs_delivery_time()), None,
                        "check role trailsetup-cloudtrail-logs and the log group: run `trailsetup init`"),
                ] {
                    let Some(e) = err.filter(|e| !e.is_empty()) else { continue };
                    if error_is_current(attempt, success, now_secs) {
                        out.push(found(&format!("trail {what}"), &n, &r, Level::Fail, format!("latest error: {e}"), fix));
                    } else {
                        out.push(found(&format!("trail {what}"), &n, &r, Level::Ok,
                            format!("recovered: delivered since an earlier error ({e})"), ""));
                    }
                }
                // CloudTrail delivers a file about every 5 minutes while there are events; the first within ~15
                // minutes of logging starting
                let now = chrono::Utc::now().timestamp();
                let last = s.latest_delivery_time().map(|t| t.secs());
                let since_start = s.start_logging_time().map(|t| now - t.secs());
                out.push(match (last, since_start) {
                    (Some(t), _) if now - t <= 3600 => found("trail last delivery", &n, &r, Level::Ok, format!("{} s ago", now - t), ""),
                    (Some(t), _) => found("trail last delivery", &n, &r, Level::Warn, format!("last log file {} min ago", (now - t) / 60),
                        "is the trail recording events? see its delivery errors above"),
                    (None, Some(age)) if age <= 30 * 60 => found("trail last delivery", &n, &r, Level::Ok,
                        format!("logging for {} min; the first log file arrives within about 15 min", age / 60), ""),
                    (None, _) => found("trail last delivery", &n, &r, Level::Warn, "no log file delivered yet",
                        "check the bucket policy and the trail's delivery errors (`trailsetup init` repairs ours)"),
                });
            }
        }
    }
    out
}

/// GetTrailStatus keeps the last error of each kind of delivery until the next error, even after later
/// deliveries succeeded. The error is current when the latest attempt failed: said by the attempt fields where
/// CloudTrail still fills them (`LatestDeliveryAttemptTime` differs from `LatestDeliveryAttemptSucceeded`), else
/// when there was no successful delivery in the last 30 minutes (CloudTrail delivers about every 5 minutes
/// while there are events) ("GetTrailStatus", AWS CloudTrail API Reference).
pub fn error_is_current(attempt_failed: Option<bool>, last_success: Option<i64>, now: i64) -> bool {
    match attempt_failed {
        Some(failed) => failed,
        None => last_success.is_none_or(|t| now - t > 30 * 60),
    }
}

/// From the attempt fields (ISO 8601 strings, empty when CloudTrail no longer fills them): did the latest
/// attempt fail? `None` when they say nothing.
fn attempt_failed(attempt: Option<&str>, succeeded: Option<&str>) -> Option<bool> {
    let attempt = attempt.filter(|a| !a.trim().is_empty())?;
    Some(succeeded.is_none_or(|s| s.trim() != attempt.trim()))
}

use crate::permissions as perm;
/// "Actions, resources, and condition keys for AWS CloudTrail" (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudtrail.html): trail actions on
/// the trail (`<name>`, or `<name>-<region>` per region).
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("cloudtrail:GetTrail", perm::Res::Trail, perm::OBSERVE),
    perm::p("cloudtrail:GetTrailStatus", perm::Res::Trail, perm::OBSERVE),
    perm::p("cloudtrail:ListTags", perm::Res::Trail, perm::OBSERVE),
    perm::p("cloudtrail:CreateTrail", perm::Res::Trail, perm::INIT),
    perm::p("cloudtrail:UpdateTrail", perm::Res::Trail, perm::INIT),
    perm::p("cloudtrail:AddTags", perm::Res::Trail, perm::INIT),
    perm::p("cloudtrail:StartLogging", perm::Res::Trail, perm::INIT),
    perm::p("cloudtrail:DeleteTrail", perm::Res::Trail, perm::DESTROY),
];

#[cfg(test)]
mod status_tests {
    use super::{attempt_failed, error_is_current};

    #[test]
    fn an_old_delivery_error_is_not_a_failure() {
        let now = 1_700_000_000;
        // the attempt fields decide when present
        assert_eq!(attempt_failed(Some("2024-01-01T10:05:00Z"), Some("2024-01-01T10:05:00Z")), Some(false));
        assert_eq!(attempt_failed(Some("2024-01-01T10:05:00Z"), Some("2024-01-01T10:00:00Z")), Some(true));
        assert_eq!(attempt_failed(Some(""), Some("")), None);
        assert!(!error_is_current(Some(false), None, now));
        assert!(error_is_current(Some(true), Some(now), now));
        // else: a success in the last 30 minutes means the error is from before
        assert!(!error_is_current(None, Some(now - 300), now));
        assert!(error_is_current(None, Some(now - 3 * 3600), now));
        assert!(error_is_current(None, None, now));
    }
}
