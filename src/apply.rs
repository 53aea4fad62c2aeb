//! Walk the plan: dependencies by stage (key policies first, alone, so that a key whose policy cannot be changed
//! stops the run before anything else changes; then IAM, S3 and SQS — IAM, S3 and one SQS chain per region in parallel;
//! then each trail region in parallel: log group → topic → topic policy → subscription → trail; then OpenSearch;
//! then each forwarder region in parallel: function → permission → subscription filter). A no-op is skipped.
//! A failure names the resource; AWS's code and message and the permission to grant come from `aws::explain`.

use anyhow::Context as _;
use futures::future::try_join_all;

use crate::plan::{Action, Change, Kind, Plan};
use crate::resources::opensearch::domain_client;
use crate::resources::{self, Aws, Ctx};

/// What apply learned that the plan could not know (a new domain's endpoint).
#[derive(Debug, Default)]
pub struct Applied {
    /// Changes made.
    pub changed: usize,
    /// Changes not made here, with what to run and from where (OpenSearch not reachable from this machine).
    pub deferred: Vec<(String, String)>,
    pub opensearch_endpoint: Option<String>,
}

/// How one change ended.
pub enum Outcome {
    Done,
    /// Done, and it gave the OpenSearch endpoint.
    Endpoint(String),
    /// Not made here; why, and what to run from where.
    Deferred(String),
}

/// (stage, chain key): changes with the same key run in plan order; chains of one stage run in parallel.
fn stage(c: &Change) -> (u8, String) {
    match c.kind {
        Kind::KmsKeyPolicy => (0, format!("kms/{}", c.name)),
        // the forwarder's secret first in the IAM chain: the forwarder's policy names its ARN
        Kind::IamRole | Kind::IamPolicy | Kind::SecretsManagerSecret => (1, "iam".into()),
        Kind::S3Bucket | Kind::S3BucketPolicy => (1, "s3".into()),
        Kind::SqsQueue | Kind::SqsQueuePolicy => (1, format!("sqs/{}", c.region)),
        Kind::LogsLogGroup | Kind::SnsTopic | Kind::SnsTopicPolicy | Kind::SnsSubscription | Kind::CloudTrailTrail => (2, c.region.clone()),
        // after the queue policy: S3 checks that it may send to the queue when the configuration is written
        Kind::S3BucketNotification => (2, format!("s3-notification/{}", c.region)),
        Kind::OpenSearchDomain | Kind::OpenSearchRoleMapping | Kind::OpenSearchIndexTemplate | Kind::OpenSearchDashboardsObjects => {
            (3, "opensearch".into())
        }
        Kind::LambdaFunction | Kind::LambdaPermission | Kind::LogsSubscriptionFilter => (4, c.region.clone()),
    }
}

/// Changes grouped into stages; each stage a list of chains that may run in parallel.
pub fn schedule(plan: &Plan) -> Vec<Vec<Vec<&Change>>> {
    let mut stages: Vec<Vec<(String, Vec<&Change>)>> = vec![Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let (s, key) = stage(c);
        let chains = &mut stages[s as usize];
        match chains.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(c),
            None => chains.push((key, vec![c])),
        }
    }
    stages.into_iter().map(|s| s.into_iter().map(|(_, v)| v).collect()).filter(|s: &Vec<Vec<&Change>>| !s.is_empty()).collect()
}

async fn apply_one(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<Outcome> {
    tracing::info!("{:?} {} {} [{}]", c.action, c.kind, c.name, c.region);
    let done = |r: anyhow::Result<()>| r.map(|_| Outcome::Done);
    let r = match c.kind {
        Kind::IamRole | Kind::IamPolicy => done(resources::iam::apply(ctx, aws, c).await),
        Kind::S3Bucket | Kind::S3BucketPolicy => done(resources::s3::apply(ctx, aws, c).await),
        Kind::S3BucketNotification => done(resources::reuse::apply(ctx, aws, c).await),
        Kind::SqsQueue | Kind::SqsQueuePolicy => done(resources::sqs::apply(ctx, aws, c).await),
        Kind::SnsTopic | Kind::SnsTopicPolicy | Kind::SnsSubscription => done(resources::sns::apply(ctx, aws, c).await),
        Kind::LogsLogGroup | Kind::LogsSubscriptionFilter => done(resources::logs::apply(ctx, aws, c).await),
        Kind::KmsKeyPolicy => done(resources::kms::apply(aws, c).await),
        Kind::SecretsManagerSecret => done(resources::secretsmanager::apply(ctx, aws, c).await),
        Kind::CloudTrailTrail => done(resources::cloudtrail::apply(ctx, aws, c).await),
        Kind::LambdaFunction | Kind::LambdaPermission => done(resources::lambda::apply(ctx, aws, c).await),
        Kind::OpenSearchDomain | Kind::OpenSearchRoleMapping | Kind::OpenSearchIndexTemplate | Kind::OpenSearchDashboardsObjects => {
            resources::opensearch::apply(ctx, aws, c).await
        }
    };
    r.with_context(|| format!("{} {} [{}] was not applied", c.kind, c.name, c.region))
}

/// What apply reports as it goes: a change started, or finished after some time.
pub enum Event<'a> {
    Started(&'a Change),
    Finished(&'a Change, std::time::Duration),
    /// Not made here (see [`Outcome::Deferred`]).
    Deferred(&'a Change, &'a str),
}

pub async fn apply(ctx: &Ctx, aws: &Aws, plan: &Plan, note: impl Fn(Event<'_>) + Sync) -> anyhow::Result<Applied> {
    let mut out = Applied::default();
    let mut aws = aws.clone();
    for chains in schedule(plan) {
        let results = try_join_all(chains.into_iter().map(|chain| {
            let aws = aws.clone();
            let note = &note;
            async move {
                let mut endpoint: Option<String> = None;
                let (mut done, mut deferred) = (0usize, Vec::new());
                let mut aws = aws;
                for c in &chain {
                    if matches!(c.kind, Kind::OpenSearchRoleMapping | Kind::OpenSearchIndexTemplate | Kind::OpenSearchDashboardsObjects)
                        && aws.search.is_none()
                    {
                        if let Some(ep) = endpoint.as_deref() {
                            // the domain was created or changed just before, in this chain
                            aws.search = Some(domain_client(&aws, ep, &ctx.home)?);
                            aws.fresh_domain = true;
                        } else if let Some(ep) = resources::opensearch::current_endpoint(ctx, &aws).await? {
                            // an adopted domain that needed no change: its endpoint as it is
                            aws.search = Some(domain_client(&aws, &ep, &ctx.home)?);
                        }
                    }
                    note(Event::Started(c));
                    let t0 = std::time::Instant::now();
                    match apply_one(ctx, &aws, c).await? {
                        Outcome::Done => {
                            done += 1;
                            note(Event::Finished(c, t0.elapsed()));
                        }
                        Outcome::Endpoint(ep) => {
                            endpoint = Some(ep);
                            done += 1;
                            note(Event::Finished(c, t0.elapsed()));
                        }
                        Outcome::Deferred(why) => {
                            note(Event::Deferred(c, &why));
                            deferred.push((format!("{} {} [{}]", c.kind, c.name, c.region), why));
                        }
                    }
                }
                anyhow::Ok((done, deferred, endpoint))
            }
        }))
        .await?;
        for (n, deferred, ep) in results {
            out.changed += n;
            out.deferred.extend(deferred);
            if ep.is_some() {
                out.opensearch_endpoint = ep;
            }
        }
        if let Some(ep) = &out.opensearch_endpoint {
            if aws.search.is_none() {
                aws.search = Some(domain_client(&aws, ep, &ctx.home)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::TrailMode;

    #[tokio::test]
    async fn schedule_respects_dependencies() {
        let ctx = resources::test_ctx(TrailMode::PerRegion);
        let plan = resources::plan(&ctx, None).await.unwrap();
        let s = schedule(&plan);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].len(), 2 + 3); // iam, s3, and one sqs chain per region in parallel
        assert_eq!(s[1].len(), 3); // one chain per region
        for chain in &s[1] {
            let kinds: Vec<&str> = chain.iter().map(|c| c.kind.as_str()).collect();
            // the trail's log group and the forwarder's own (`/aws/lambda/…`, before the function can write to it)
            assert_eq!(kinds, ["logs-log-group", "logs-log-group", "sns-topic", "sns-topic-policy", "sns-subscription", "cloudtrail-trail"]);
        }
        assert_eq!(s[3].len(), 3); // one forwarder chain per region
        for chain in &s[3] {
            let kinds: Vec<&str> = chain.iter().map(|c| c.kind.as_str()).collect();
            assert_eq!(kinds, ["lambda-function", "lambda-permission", "logs-subscription-filter"]);
        }
    }
}
