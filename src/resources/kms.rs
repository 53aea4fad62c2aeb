//! KMS: `--kms-key` resolved to a key ARN per region, and the statements each service needs in the key policy.
//!
//! Keys and aliases are regional. The trails write to the bucket with the bucket's (home region) key; each
//! regional resource (topic, queue, log group, dead-letter queue) needs a key of its own region: a multi-Region
//! key (its replica in each region), or one key per region (`--kms-key us-east-1=alias/a,eu-west-1=alias/b`).
//! A single-Region key with resources in other regions is refused.
//!
//! The key policy must let each service use the key — CloudTrail to encrypt log files and publish to an
//! encrypted topic, SNS to deliver to an encrypted queue, CloudWatch Logs to encrypt the log group — each
//! statement limited by `aws:SourceArn` or the encryption context. The plan reads the policy
//! (`kms:GetKeyPolicy`), adds what is missing (a `kms-key-policy` change, applied before anything else), and
//! when the policy cannot be read or changed (another account's key, no permission) init stops before any
//! change and prints the statements to add.

use std::collections::BTreeMap;

use anyhow::anyhow;
use serde_json::{json, Value};

use super::{Aws, Ctx, KmsKeys};
use crate::aws::{code, explain};
use crate::error::usage;
use crate::plan::{Kind, Action, Change};

/// A key policy as found.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Policy(Value),
    /// the policy could not be read (the reason): it cannot be merged, so it cannot be changed by us
    Unreadable(String),
}

/// `arn:<p>:kms:<region>:<account>:key/<id>` → (region, account, id).
pub fn parse_key_arn(arn: &str) -> Option<(String, String, String)> {
    let p: Vec<&str> = arn.splitn(6, ':').collect();
    if p.len() != 6 || p[0] != "arn" || p[2] != "kms" {
        return None;
    }
    let id = p[5].strip_prefix("key/")?;
    Some((p[3].to_string(), p[4].to_string(), id.to_string()))
}

/// The regions whose resources need a key: the home region (bucket, queues, domain) and every trail region
/// (topic, log group, forwarder dead-letter queue).
pub fn regions_needing_keys(home: &str, trail_regions: &[String]) -> Vec<String> {
    let mut v = vec![home.to_string()];
    for r in trail_regions {
        if !v.contains(r) {
            v.push(r.clone());
        }
    }
    v
}

fn advice(regions: &[String]) -> String {
    format!(
        "keys are regional and resources live in {}: pass a multi-Region key (mrk-…, replicated to each of those \
         regions), an alias that exists in each of them (alias/NAME), or one key per region as --kms-key \
         REGION=KEY,REGION=KEY (env TRAILSETUP_KMS_KEY, config key kms_key)",
        regions.join(", ")
    )
}

/// Resolve `--kms-key` for `regions` (the first is the home region). Online each key is described
/// (`kms:DescribeKey`): aliases become key ARNs, the key must be an enabled symmetric customer managed key.
/// Offline, ARNs are taken as given and an alias stays an alias ARN (`resolved: false`).
pub async fn resolve(spec: &str, partition: &str, account: &str, regions: &[String], aws: Option<&Aws>) -> anyhow::Result<KmsKeys> {
    let home = regions.first().cloned().unwrap_or_default();
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    // A bare alias (`alias/cloudtrail`) is a regional name: users create the same alias in each region ("Aliases
    // in AWS KMS": "an alias is ... in a particular AWS Region"). It is resolved in every region of the plan.
    let bare_alias = !spec.contains('=') && spec.starts_with("alias/");
    if bare_alias {
        for r in regions {
            wanted.insert(r.clone(), spec.to_string());
        }
        if wanted.is_empty() {
            wanted.insert(home.clone(), spec.to_string());
        }
    } else if spec.contains('=') {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (r, k) = part.split_once('=').ok_or_else(|| {
                usage(format!("--kms-key {spec:?}: mix of REGION=KEY and a bare key; {}", advice(regions)))
            })?;
            wanted.insert(r.trim().to_string(), k.trim().to_string());
        }
        let missing: Vec<&String> = regions.iter().filter(|r| !wanted.contains_key(*r)).collect();
        if !missing.is_empty() {
            return Err(usage(format!(
                "--kms-key names no key for {}; {}",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                advice(regions)
            )));
        }
        wanted.retain(|r, _| regions.contains(r));
    } else {
        // one key: its own region, or its replicas when it is a multi-Region key
        let first_region = parse_key_arn(spec).map(|x| x.0).or_else(|| {
            spec.starts_with("arn:").then(|| spec.split(':').nth(3).unwrap_or_default().to_string())
        });
        let region = first_region.unwrap_or_else(|| home.clone());
        wanted.insert(region, spec.to_string());
    }
    let mut keys = BTreeMap::new();
    let mut resolved = true;
    let mut missing_alias: Vec<String> = Vec::new();
    for (r, k) in &wanted {
        match aws {
            Some(a) if bare_alias => match describe(a, r, k).await {
                Ok(arn) => {
                    keys.insert(r.clone(), arn);
                }
                Err(e) if e.to_string().starts_with("--kms-key: no key") => missing_alias.push(r.clone()),
                Err(e) => return Err(e),
            },
            Some(a) => {
                let arn = describe(a, r, k).await?;
                keys.insert(r.clone(), arn);
            }
            None => {
                let arn = offline_arn(partition, account, r, k);
                resolved &= !arn.contains(":alias/");
                keys.insert(r.clone(), arn);
            }
        }
    }
    if !missing_alias.is_empty() {
        return Err(usage(format!(
            "--kms-key {spec}: the alias does not exist in {} (aliases are regional: create it there too, e.g. `aws kms \
             create-alias --alias-name {spec} --target-key-id <key> --region <region>`); {}",
            missing_alias.join(", "),
            advice(regions)
        )));
    }
    // a single key: the other regions get its multi-Region replicas, or it is refused
    if !spec.contains('=') && !bare_alias {
        let (r0, arn0) = keys.iter().next().map(|(a, b)| (a.clone(), b.clone())).ok_or_else(|| anyhow!("no key"))?;
        if r0 != home && !regions.is_empty() {
            // an ARN in another region than the bucket: CloudTrail needs the key in the bucket's region
            if !is_multi_region(&arn0) {
                return Err(usage(format!(
                    "--kms-key {spec} is in {r0}, but the bucket (and so the trail's key) is in {home}: CloudTrail requires \
                     the key and the bucket in the same region; {}",
                    advice(regions)
                )));
            }
        }
        for r in regions {
            if keys.contains_key(r) {
                continue;
            }
            if !is_multi_region(&arn0) {
                let what = if arn0.contains(":alias/") {
                    format!("an alias, which names one key of one region ({arn0}; the same alias in {r} is another key)")
                } else {
                    format!("a single-Region key ({arn0})")
                };
                return Err(usage(format!("--kms-key {spec} is {what}, but resources are also planned in {r}; {}", advice(regions))));
            }
            let replica = replica_arn(&arn0, r);
            if let Some(a) = aws {
                describe(a, r, &replica).await.map_err(|e| {
                    usage(format!(
                        "the multi-Region key {arn0} has no replica in {r} ({e:#}); replicate it there (kms:ReplicateKey) or {}",
                        advice(regions)
                    ))
                })?;
            }
            keys.insert(r.clone(), replica);
        }
        if r0 != home {
            keys.retain(|r, _| regions.contains(r));
        }
    }
    Ok(KmsKeys { given: spec.to_string(), keys, resolved })
}

fn is_multi_region(arn: &str) -> bool {
    parse_key_arn(arn).is_some_and(|(_, _, id)| id.starts_with("mrk-"))
}

/// The ARN of a multi-Region key's replica in `region` (same key id).
pub fn replica_arn(arn: &str, region: &str) -> String {
    let mut p: Vec<&str> = arn.splitn(6, ':').collect();
    if p.len() == 6 {
        p[3] = region;
    }
    p.join(":")
}

fn offline_arn(partition: &str, account: &str, region: &str, k: &str) -> String {
    if k.starts_with("arn:") {
        k.to_string()
    } else if k.starts_with("alias/") {
        format!("arn:{partition}:kms:{region}:{account}:{k}")
    } else {
        format!("arn:{partition}:kms:{region}:{account}:key/{k}")
    }
}

/// `kms:DescribeKey` in `region`: the key ARN of an id, ARN, alias name or alias ARN; checks that it can serve.
async fn describe(aws: &Aws, region: &str, k: &str) -> anyhow::Result<String> {
    let kms = aws_sdk_kms::Client::new(&aws.at(region));
    let r = kms.describe_key().key_id(k).send().await.map_err(|e| match code(&e).as_deref() {
        Some("NotFoundException") => usage(format!("--kms-key: no key {k} in {region} (keys and aliases are regional)")),
        _ => explain(e, &format!("describing KMS key {k} in {region}"), "kms:DescribeKey"),
    })?;
    let m = r.key_metadata().ok_or_else(|| anyhow!("DescribeKey {k}: empty answer"))?;
    let arn = m.arn().unwrap_or_default().to_string();
    if m.key_manager().map(|x| x.as_str()) == Some("AWS") {
        return Err(usage(format!(
            "--kms-key {k} is an AWS managed key; CloudTrail and SNS need a customer managed key whose policy can name them"
        )));
    }
    if m.key_spec().is_some_and(|s| s.as_str() != "SYMMETRIC_DEFAULT") {
        return Err(usage(format!("--kms-key {k} is not a symmetric encryption key (SYMMETRIC_DEFAULT)")));
    }
    if m.key_state().is_some_and(|s| s.as_str() != "Enabled") {
        return Err(usage(format!(
            "--kms-key {k} is {}; enable it first",
            m.key_state().map(|s| s.as_str().to_string()).unwrap_or_default()
        )));
    }
    Ok(arn)
}

fn service_suffix(partition: &str) -> &'static str {
    if partition == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" }
}

/// The statements the key of `region` needs, each limited to our resources.
pub fn required_statements(ctx: &Ctx, region: &str) -> Vec<Value> {
    let mut v = Vec::new();
    let (p, a) = (&ctx.partition, &ctx.account);
    if region == ctx.home && !ctx.trail_arns().is_empty() {
        // "Configure AWS KMS key policies for CloudTrail": encrypt log files, limited to our trails, and the
        // CloudTrail encryption context of this account's trails
        v.push(json!({"Sid": ctx.sid("CloudTrailEncryptLogs"), "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "kms:GenerateDataKey*", "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": ctx.trail_arns()},
                          "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": format!("arn:{p}:cloudtrail:*:{a}:trail/*")}}}));
        // the same page: with an S3 Bucket Key on the bucket (we enable it), creating or updating a trail with
        // SSE-KMS needs kms:Decrypt
        v.push(json!({"Sid": ctx.sid("CloudTrailDecrypt"), "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": ctx.trail_arns()}}}));
        v.push(json!({"Sid": ctx.sid("CloudTrailDescribeKey"), "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "kms:DescribeKey", "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": ctx.trail_arns()}}}));
    }
    if region == ctx.home && !ctx.topic_arns().is_empty() {
        // SQS "Key management": SNS must generate and decrypt data keys to deliver to an encrypted queue
        v.push(json!({"Sid": ctx.sid("SnsToQueue"), "Effect": "Allow",
            "Principal": {"Service": ctx.sns_principal_value()}, "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*",
            "Condition": {"ArnEquals": {"aws:SourceArn": ctx.topic_arns()}}}));
    }
    if let (true, Some((bucket_arn, owner))) = (region == ctx.home, ctx.notification_bucket()) {
        // S3 user guide, "Amazon S3 Event Notifications" → an encrypted SQS destination: the key policy lets
        // s3.amazonaws.com generate and decrypt data keys, limited to the bucket
        let mut cond = json!({"ArnLike": {"aws:SourceArn": bucket_arn}});
        if let Some(a) = owner {
            cond["StringEquals"] = json!({"aws:SourceAccount": a});
        }
        v.push(json!({"Sid": ctx.sid("BucketToQueue"), "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"}, "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*",
            "Condition": cond}));
    }
    if ctx.trail_regions().iter().any(|r| r == region) {
        // SNS "Enable compatibility between event sources from AWS services and encrypted topics": CloudTrail
        // publishing to the encrypted topic of this region
        v.push(json!({"Sid": ctx.sid("CloudTrailToTopic"), "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": ctx.trail_arns_in(region)}}}));
        // "Encrypt log data in CloudWatch Logs using AWS Key Management Service": the regional logs principal,
        // limited to our log group by the encryption context
        v.push(json!({"Sid": ctx.sid("CloudWatchLogs"), "Effect": "Allow",
            "Principal": {"Service": format!("logs.{region}.{}", service_suffix(p))},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"], "Resource": "*",
            "Condition": {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": ctx.log_group_arn_bare(region)}}}));
    }
    v
}

/// Statements as a policy document (what the plan shows when it cannot merge them into the key's policy).
fn doc(statements: Vec<Value>) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Our statements replace the ones with the same Sid (and those of an older trailsetup, whose ids did not name
/// the stack: `legacy`); the key's other statements, other stacks' among them, are kept.
pub fn merged(existing: &Value, ours: &[Value], legacy: &[String]) -> Value {
    let sids: Vec<&str> = ours.iter().filter_map(|s| s["Sid"].as_str()).collect();
    let mut st = super::statements(existing);
    st.retain(|s| !s["Sid"].as_str().is_some_and(|x| sids.contains(&x) || legacy.iter().any(|l| l == x)));
    st.extend(ours.iter().cloned());
    let mut p = existing.clone();
    if p.get("Version").is_none() {
        p["Version"] = json!("2012-10-17");
    }
    p["Statement"] = Value::Array(st);
    p
}

/// Does the key policy let IAM policies grant use of the key (the account root as principal)? Without it the
/// ingest-worker and forwarder policies' kms: statements have no effect ("Default key policy").
pub fn delegates_to_iam(policy: &Value, partition: &str, account: &str) -> bool {
    let root = format!("arn:{partition}:iam::{account}:root");
    let sts = super::statements(policy);
    sts.iter().any(|s| {
        let principals: Vec<String> = match &s["Principal"]["AWS"] {
            Value::String(x) => vec![x.clone()],
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        };
        let actions: Vec<String> = match &s["Action"] {
            Value::String(x) => vec![x.clone()],
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        };
        s["Effect"] == "Allow"
            && principals.iter().any(|p| *p == root || p == account)
            && actions.iter().any(|a| a == "kms:*" || a == "kms:Decrypt")
    })
}

/// Each key with the region it serves.
/// The keys whose policy needs statements of ours (a key that only encrypts a forwarder's dead-letter queue
/// needs none: the forwarder's IAM policy grants its use, under the key policy's usual IAM delegation).
fn keys(ctx: &Ctx) -> Vec<(String, String)> {
    ctx.kms
        .as_ref()
        .map(|k| k.keys.iter().filter(|(r, _)| !required_statements(ctx, r).is_empty()).map(|(r, a)| (r.clone(), a.clone())).collect())
        .unwrap_or_default()
}

pub async fn observe(ctx: &Ctx, aws: &Aws) -> anyhow::Result<BTreeMap<String, Observed>> {
    if ctx.kms_policy_external {
        return Ok(BTreeMap::new());
    }
    let found = futures::future::join_all(keys(ctx).into_iter().map(|(region, arn)| async move {
        if let Some((_, acct, _)) = parse_key_arn(&arn) {
            if acct != ctx.account {
                return (arn, Observed::Unreadable(format!("the key belongs to account {acct}; only its owner can change its policy")));
            }
        }
        let kms = aws_sdk_kms::Client::new(&aws.at(&region));
        let r = kms.get_key_policy().key_id(&arn).policy_name("default").send().await;
        let o = match r {
            Ok(r) => match r.policy().map(super::parse_policy) {
                Some(Ok(p)) => Observed::Policy(p),
                Some(Err(e)) => Observed::Unreadable(format!("{e:#}")),
                None => Observed::Unreadable("GetKeyPolicy returned no policy".into()),
            },
            Err(e) => Observed::Unreadable(format!("{:#}", explain(e, &format!("reading the key policy of {arn}"), "kms:GetKeyPolicy"))),
        };
        (arn, o)
    }))
    .await;
    Ok(found.into_iter().collect())
}

pub fn changes(ctx: &Ctx, o: &BTreeMap<String, Observed>) -> Vec<Change> {
    let mut out = Vec::new();
    for (region, arn) in keys(ctx) {
        if arn.contains(":alias/") {
            // offline and unresolved: no policy to name yet
            out.push(Change {
                action: Action::Update,
                kind: Kind::KmsKeyPolicy,
                name: arn.clone(),
                region: region.clone(),
                details: json!({"key_arn": arn, "policy_statements": doc(required_statements(ctx, &region)), "unresolved_alias": true}),
                current: None,
            });
            continue;
        }
        let ours = required_statements(ctx, &region);
        let change = if ctx.kms_policy_external {
            Change {
                action: Action::NoOp,
                kind: Kind::KmsKeyPolicy,
                name: arn.clone(),
                region: region.clone(),
                details: json!({"key_arn": arn, "policy_statements": doc(ours), "external": true}),
                current: None,
            }
        } else {
            match o.get(&arn) {
                None => Change {
                    action: Action::Update,
                    kind: Kind::KmsKeyPolicy,
                    name: arn.clone(),
                    region: region.clone(),
                    details: json!({"key_arn": arn, "policy_statements": doc(ours)}),
                    current: None,
                },
                Some(Observed::Unreadable(why)) => Change {
                    action: Action::NoOp,
                    kind: Kind::KmsKeyPolicy,
                    name: arn.clone(),
                    region: region.clone(),
                    details: json!({"key_arn": arn, "policy_statements": doc(ours), "unreadable": why}),
                    current: None,
                },
                Some(Observed::Policy(p)) => Change::diff(
                    Kind::KmsKeyPolicy,
                    arn.clone(),
                    region.clone(),
                    json!({"key_arn": arn, "policy": merged(p, &ours, &ctx.legacy_sids())}),
                    Some(json!({"key_arn": arn, "policy": p})),
                ),
            }
        };
        out.push(change);
    }
    out
}

/// Warnings about the keys: a policy that does not delegate to IAM.
pub fn warnings(ctx: &Ctx, o: &BTreeMap<String, Observed>) -> Vec<String> {
    o.iter()
        .filter_map(|(arn, x)| match x {
            Observed::Policy(p) if !delegates_to_iam(p, &ctx.partition, &ctx.account) => Some(format!(
                "the policy of key {arn} does not let IAM policies grant its use (no statement for arn:{}:iam::{}:root): the \
                 ingest-worker and forwarder policies' kms: statements have no effect until the key owner allows them",
                ctx.partition, ctx.account
            )),
            _ => None,
        })
        .collect()
}

/// The refusal when a key policy cannot be read: what to add, where, and how to go on.
pub fn unreadable_error(plan: &crate::plan::Plan) -> Option<anyhow::Error> {
    let blocked: Vec<&Change> = plan.changes.iter().filter(|c| c.kind == "kms-key-policy" && c.details.get("unreadable").is_some()).collect();
    if blocked.is_empty() {
        return None;
    }
    let mut msg = String::from("the KMS key policy cannot be read here, so trailsetup cannot add what the services need; nothing was changed.\n");
    for c in blocked {
        msg.push_str(&format!(
            "\nKey {} ({}): {}\nAdd these statements to its key policy:\n{}\n",
            c.name,
            c.region,
            c.details["unreadable"].as_str().unwrap_or_default(),
            serde_json::to_string_pretty(&c.details["policy_statements"]["Statement"]).unwrap_or_default()
        ));
    }
    msg.push_str(
        "\nThen rerun with --no-kms-key-policy (env TRAILSETUP_NO_KMS_KEY_POLICY=1, config key no_kms_key_policy), or grant \
         kms:GetKeyPolicy and kms:PutKeyPolicy on the key to let trailsetup add them.",
    );
    Some(anyhow!(msg))
}

pub async fn apply(aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let kms = aws_sdk_kms::Client::new(&aws.at(&c.region));
    let policy = c.details["policy"].to_string();
    kms.put_key_policy()
        .key_id(&c.name)
        .policy_name("default")
        .policy(policy)
        .send()
        .await
        .map_err(|e| {
            let add = serde_json::to_string_pretty(&c.details["policy"]["Statement"]).unwrap_or_default();
            explain(e, &format!("updating the key policy of {}", c.name), "kms:PutKeyPolicy")
                .context(format!("the key policy must hold (merged with its own statements):\n{add}\nor add our statements yourself and pass --no-kms-key-policy"))
        })?;
    Ok(())
}


use crate::permissions as perm;
/// With `--kms-key` ("... for AWS Key Management Service", https://docs.aws.amazon.com/service-authorization/latest/reference/list_awskeymanagementservice.html: key). The key
/// is the user's: any key of the account, the policy is printed before the key is chosen.
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::with(&[perm::Feature::Kms], "kms:DescribeKey", perm::Res::Keys, perm::OBSERVE),
    perm::with(&[perm::Feature::Kms], "kms:GetKeyPolicy", perm::Res::Keys, perm::OBSERVE),
    perm::with(&[perm::Feature::Kms], "kms:PutKeyPolicy", perm::Res::Keys, perm::INIT_DESTROY),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolution_offline() {
        let regions = vec!["us-east-1".to_string(), "eu-west-1".to_string()];
        // one single-Region key, resources in two regions: refused
        let e = resolve("arn:aws:kms:us-east-1:123456789012:key/abc", "aws", "123456789012", &regions, None).await.unwrap_err();
        assert!(e.to_string().contains("multi-Region key"), "{e}");
        // a bare alias: a regional name, resolved in each region (offline: the alias ARN of each region,
        // unresolved); an alias ARN names one region's alias and is refused like a single-Region key
        let k = resolve("alias/logs", "aws", "123456789012", &regions, None).await.unwrap();
        assert!(!k.resolved);
        assert_eq!(k.keys["eu-west-1"], "arn:aws:kms:eu-west-1:123456789012:alias/logs");
        assert_eq!(k.keys["us-east-1"], "arn:aws:kms:us-east-1:123456789012:alias/logs");
        assert!(resolve("arn:aws:kms:us-east-1:123456789012:alias/logs", "aws", "123456789012", &regions, None).await.is_err());
        // a multi-Region key: its replica in each region
        let k = resolve("arn:aws:kms:us-east-1:123456789012:key/mrk-1234", "aws", "123456789012", &regions, None).await.unwrap();
        assert_eq!(k.keys["eu-west-1"], "arn:aws:kms:eu-west-1:123456789012:key/mrk-1234");
        // one key per region
        let k = resolve("us-east-1=arn:aws:kms:us-east-1:123456789012:key/a,eu-west-1=arn:aws:kms:eu-west-1:123456789012:key/b", "aws", "123456789012", &regions, None)
            .await
            .unwrap();
        assert_eq!(k.keys.len(), 2);
        assert!(resolve("us-east-1=arn:aws:kms:us-east-1:123456789012:key/a", "aws", "123456789012", &regions, None).await.is_err());
        // one region: an alias is fine offline, marked unresolved
        let k = resolve("alias/logs", "aws", "123456789012", &regions[..1], None).await.unwrap();
        assert!(!k.resolved);
        assert_eq!(k.keys["us-east-1"], "arn:aws:kms:us-east-1:123456789012:alias/logs");
        // a key in another region than the bucket: refused
        assert!(resolve("arn:aws:kms:eu-west-1:123456789012:key/a", "aws", "123456789012", &regions[..1], None).await.is_err());
    }

    #[test]
    fn merge_keeps_theirs_and_detects_delegation() {
        let theirs = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"}]});
        let m = merged(&theirs, &[json!({"Sid": "TrailsetupX", "Effect": "Allow"})], &[]);
        assert_eq!(m["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(merged(&m, &[json!({"Sid": "TrailsetupX", "Effect": "Allow"})], &[]), m);
        assert!(delegates_to_iam(&theirs, "aws", "123456789012"));
        assert!(!delegates_to_iam(&json!({"Statement": []}), "aws", "123456789012"));
    }
}
