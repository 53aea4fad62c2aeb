//! CloudWatch metrics for `status`: the forwarder's errors and throttles, the queue's oldest message.

use super::{Aws, Ctx};
use crate::aws::rpc::{self, Params};
use crate::plan::check::{found, Check, Level};

/// CloudWatch metrics of the last hour: the forwarder's errors and throttles (each region), the queue's oldest
/// message. No data points (a quiet hour, or an emulator) is not a problem.
pub async fn check(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let now = chrono::Utc::now();
    let start = now - chrono::TimeDelta::seconds(3600);
    let fetch = |region: String, queries: Vec<Query>| async move { get_metric_data(&aws.at(&region), &queries, start, now).await };
    let query = |id: &'static str, namespace: &'static str, metric: &'static str, dimension: &'static str, value: String, stat: &'static str| Query {
        id,
        namespace,
        metric,
        dimension,
        value,
        stat,
    };
    let mut out = Vec::new();
    for r in ctx.forwarder_regions() {
        let f = ctx.forwarder_name();
        match fetch(r.clone(), vec![query("errors", "AWS/Lambda", "Errors", "FunctionName", f.clone(), "Sum"), query("throttles", "AWS/Lambda", "Throttles", "FunctionName", f.clone(), "Sum")]).await {
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
            Err(e) => out.push(found("forwarder errors", &f, &r, Level::Warn, format!("{:#}", e.explain("reading metrics", "cloudwatch:GetMetricData")), "grant cloudwatch:GetMetricData")),
        }
    }
    match fetch(ctx.home.clone(), vec![query("age", "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", ctx.queue_name(), "Maximum")]).await {
        Ok(v) => {
            let age = v.first().map(|x| x.1).unwrap_or(0.0) as u64;
            out.push(if age > 3600 {
                found("queue oldest message", ctx.queue_name(), &ctx.home, Level::Warn, format!("{age} s old: the workers are behind, or none runs"), "start (more) `trailsetup ingest` workers")
            } else {
                found("queue oldest message", ctx.queue_name(), &ctx.home, Level::Ok, format!("{age} s"), "")
            });
        }
        Err(e) => out.push(found("queue oldest message", ctx.queue_name(), &ctx.home, Level::Warn, format!("{:#}", e.explain("reading metrics", "cloudwatch:GetMetricData")), "grant cloudwatch:GetMetricData")),
    }
    out
}

/// One metric of a `GetMetricData` call: one dimension, one statistic over the hour.
struct Query {
    id: &'static str,
    namespace: &'static str,
    metric: &'static str,
    dimension: &'static str,
    value: String,
    stat: &'static str,
}

/// CloudWatch `GetMetricData` over `[start, end)`, one period of an hour, through [`rpc`] in the Query protocol
/// (CloudWatch API Reference, "GetMetricData": `MetricDataQueries.member.N.MetricStat…`, `StartTime`, `EndTime`;
/// the answer's `MetricDataResults` → `member` → `Id`, `Values`): each query's id and its largest value (0 when
/// there are none).
async fn get_metric_data(cfg: &aws_config::SdkConfig, queries: &[Query], start: chrono::DateTime<chrono::Utc>, end: chrono::DateTime<chrono::Utc>) -> Result<Vec<(String, f64)>, rpc::Error> {
    let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut form = vec![("StartTime".to_string(), time(start)), ("EndTime".to_string(), time(end))];
    for (i, q) in queries.iter().enumerate() {
        let m = format!("MetricDataQueries.member.{}", i + 1);
        form.extend([
            (format!("{m}.Id"), q.id.to_string()),
            (format!("{m}.MetricStat.Metric.Namespace"), q.namespace.to_string()),
            (format!("{m}.MetricStat.Metric.MetricName"), q.metric.to_string()),
            (format!("{m}.MetricStat.Metric.Dimensions.member.1.Name"), q.dimension.to_string()),
            (format!("{m}.MetricStat.Metric.Dimensions.member.1.Value"), q.value.clone()),
            (format!("{m}.MetricStat.Period"), "3600".to_string()),
            (format!("{m}.MetricStat.Stat"), q.stat.to_string()),
        ]);
    }
    let xml = rpc::call(cfg, &rpc::CLOUDWATCH, "GetMetricData", Params::Form(form)).await?;
    parse_metric_data(&xml).map_err(|e| rpc::Error::Other(anyhow::anyhow!("CloudWatch's answer could not be read: {e:#}")))
}

fn parse_metric_data(xml: &str) -> anyhow::Result<Vec<(String, f64)>> {
    rpc::xml_items(xml, "GetMetricDataResponse", &["GetMetricDataResult", "MetricDataResults", "member"], |member| {
        let (mut id, mut max) = (None, 0.0_f64);
        while let Some(mut field) = member.next_tag() {
            if field.start_el().matches("Id") {
                id = Some(aws_smithy_xml::decode::try_data(&mut field)?.into_owned());
            } else if field.start_el().matches("Values") {
                while let Some(mut v) = field.next_tag() {
                    let text = aws_smithy_xml::decode::try_data(&mut v)?;
                    max = max.max(text.trim().parse::<f64>().map_err(|e| anyhow::anyhow!("value {text:?}: {e}"))?);
                }
            }
        }
        Ok(id.map(|id| (id, max)))
    })
}

use crate::permissions as perm;
/// cloudwatch:GetMetricData has no resource type ("... for Amazon CloudWatch", https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html).
pub const PERMISSIONS: &[perm::Permission] = &[perm::p("cloudwatch:GetMetricData", perm::Res::Any, &[perm::Cmd::Status])];

#[cfg(test)]
mod tests {
    /// The shape of CloudWatch's GetMetricData answer in the Query protocol (CloudWatch API Reference,
    /// "GetMetricData"; the XML moto sends): each result's id and its largest value; none is 0.
    #[test]
    fn reads_each_results_largest_value() {
        let xml = r#"<GetMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">
  <GetMetricDataResult>
    <MetricDataResults>
      <member><Id>errors</Id><Label>Errors</Label><StatusCode>Complete</StatusCode>
        <Timestamps><member>2026-12-07T17:00:00Z</member><member>2026-12-07T16:00:00Z</member></Timestamps>
        <Values><member>3.0</member><member>7.0</member></Values></member>
      <member><Id>throttles</Id><Label>Throttles</Label><StatusCode>Complete</StatusCode><Timestamps/><Values/></member>
    </MetricDataResults>
    <Messages/>
  </GetMetricDataResult>
  <ResponseMetadata><RequestId>5a4e8b1c-0000-4000-8000-000000000000</RequestId></ResponseMetadata>
</GetMetricDataResponse>"#;
        assert_eq!(super::parse_metric_data(xml).unwrap(), vec![("errors".to_string(), 7.0), ("throttles".to_string(), 0.0)]);
        assert!(super::parse_metric_data("<Other/>").is_err());
    }
}
