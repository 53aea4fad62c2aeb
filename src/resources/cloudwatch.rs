//! CloudWatch metrics for `status`: the forwarder's errors and throttles, the queue's oldest message.

use std::time::Duration;

use super::{Aws, Ctx};
use crate::plan::check::{found, Check, Level};

/// CloudWatch metrics of the last hour: the forwarder's errors and throttles (each region), the queue's oldest
/// message. No data points (a quiet hour, or an emulator) is not a problem.
pub async fn check(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let now = std::time::SystemTime::now();
    let start = now - Duration::from_secs(3600);
    let query = |id: &str, ns: &str, metric: &str, dim: &str, value: &str, stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(Metric::builder().namespace(ns).metric_name(metric).dimensions(Dimension::builder().name(dim).value(value).build()).build())
                    .period(3600)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    let fetch = |region: String, queries: Vec<MetricDataQuery>| async move {
        let r = aws_sdk_cloudwatch::Client::new(&aws.at(&region))
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(aws_smithy_types::DateTime::from(start))
            .end_time(aws_smithy_types::DateTime::from(now))
            .send()
            .await;
        r.map(|r| r.metric_data_results().iter().map(|m| (m.id().unwrap_or_default().to_string(), m.values().iter().cloned().fold(0.0_f64, f64::max))).collect::<Vec<_>>())
    };
    let mut out = Vec::new();
    for r in ctx.forwarder_regions() {
        let f = ctx.forwarder_name();
        match fetch(r.clone(), vec![query("errors", "AWS/Lambda", "Errors", "FunctionName", &f, "Sum"), query("throttles", "AWS/Lambda", "Throttles", "FunctionName", &f, "Sum")]).await {
            Ok(v) => {
                let get = |k: &str| v.iter().find(|(id, _)| id == k).map(|x| x.1).unwrap_or(0.0) as u64;
                let (e, t) = (get("errors"), get("throttles"));
                out.push(if e + t > 0 {
                    found("forwarder errors", &f, &r, Level::Warn, format!("{e} error(s), {t} throttle(s) in the last hour"),
                        format!("read its log group /aws/lambda/{f}; failed invocations land in {}", ctx.forwarder_dlq_name()))
                } else {
                    found("forwarder errors", &f, &r, Level::Ok, "no errors or throttles in the last hour", "")
                });
            }
            Err(e) => out.push(found("forwarder errors", &f, &r, Level::Warn, format!("{:#}", crate::aws::explain(e, "reading metrics", "cloudwatch:GetMetricData")), "grant cloudwatch:GetMetricData")),
        }
    }
    match fetch(ctx.home.clone(), vec![query("age", "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", &ctx.queue_name(), "Maximum")]).await {
        Ok(v) => {
            let age = v.first().map(|x| x.1).unwrap_or(0.0) as u64;
            out.push(if age > 3600 {
                found("queue oldest message", ctx.queue_name(), &ctx.home, Level::Warn, format!("{age} s old: the workers are behind, or none runs"), "start (more) `trailsetup ingest` workers")
            } else {
                found("queue oldest message", ctx.queue_name(), &ctx.home, Level::Ok, format!("{age} s"), "")
            });
        }
        Err(e) => out.push(found("queue oldest message", ctx.queue_name(), &ctx.home, Level::Warn, format!("{:#}", crate::aws::explain(e, "reading metrics", "cloudwatch:GetMetricData")), "grant cloudwatch:GetMetricData")),
    }
    out
}

use crate::permissions as perm;
/// cloudwatch:GetMetricData has no resource type ("... for Amazon CloudWatch", https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html).
pub const PERMISSIONS: &[perm::Permission] = &[perm::p("cloudwatch:GetMetricData", perm::Res::Any, &[perm::Cmd::Status])];
