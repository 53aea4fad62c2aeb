//! S3: the log bucket (public access block, encryption, ownership, versioning, tags) and its policy.

use anyhow::{anyhow, Context as _};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};
use serde_json::{json, Value};

use super::{Aws, Ctx, TAG_KEY};
use crate::aws::{code, explain};
use crate::plan::{Kind, Action, Change};

pub fn desired_bucket(ctx: &Ctx) -> Value {
    let enc = match ctx.bucket_kms_key() {
        None => json!({"algorithm": "AES256"}),
        Some(k) => json!({"algorithm": "aws:kms", "kms_key": k}),
    };
    json!({
        "public_access_block": {"block_public_acls": true, "ignore_public_acls": true, "block_public_policy": true, "restrict_public_buckets": true},
        "encryption": enc,
        "object_ownership": "BucketOwnerEnforced",
        "versioning": "Enabled",
        "tags": ctx.tags(),
    })
}

/// Our statements replace theirs by Sid; statements someone else put there are kept (never clobbered).
pub fn merged_policy(ctx: &Ctx, existing: Option<&Value>) -> Value {
    let ours = ctx.bucket_policy();
    let our_sids: Vec<&str> = ours["Statement"].as_array().into_iter().flatten().filter_map(|s| s["Sid"].as_str()).collect();
    let mut statements: Vec<Value> = existing
        .and_then(|e| e["Statement"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s["Sid"].as_str().is_some_and(|sid| our_sids.contains(&sid) || ctx.legacy_sids().iter().any(|l| l == sid)))
        .collect();
    statements.extend(ours["Statement"].as_array().cloned().unwrap_or_default());
    let mut p = ours.clone();
    p["Statement"] = Value::Array(statements);
    p
}

/// The bucket's settings (`None`: no such bucket) and its policy (`Some(None)`: a bucket without policy).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub bucket: Option<Value>,
    pub policy: Option<Option<Value>>,
}

pub fn changes(ctx: &Ctx, o: &Observed) -> Vec<Change> {
    let policy = merged_policy(ctx, o.policy.as_ref().and_then(|p| p.as_ref()));
    let policy_current = match (&o.bucket, &o.policy) {
        (None, _) => None,
        (Some(_), Some(Some(p))) => Some(json!({"policy": p})),
        (Some(_), _) => Some(json!({"policy": null})),
    };
    vec![
        Change::diff(Kind::S3Bucket, &ctx.bucket, &ctx.home, desired_bucket(ctx), o.bucket.clone()),
        Change::diff(Kind::S3BucketPolicy, &ctx.bucket, &ctx.home, json!({"policy": policy}), policy_current),
    ]
}

fn client(ctx: &Ctx, aws: &Aws) -> aws_sdk_s3::Client {
    crate::aws::s3(&aws.at(&ctx.home))
}

/// observe: `None` when the bucket does not exist; an error when it exists but is not the caller's.
pub async fn observe(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Observed> {
    let s3 = client(ctx, aws);
    let b = &ctx.bucket;
    match s3.head_bucket().bucket(b).send().await {
        Ok(_) => {}
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            match (code(&e).as_deref(), status) {
                (Some("NotFound") | Some("NoSuchBucket"), _) | (_, Some(404)) => return Ok(Observed::default()),
                // HeadBucket answers 403 both for a bucket of another account and for a caller without
                // s3:ListBucket (S3 API Reference, HeadBucket): the caller's own bucket list tells them apart
                (_, Some(403)) => {
                    return Err(if owned(&s3, b).await? {
                        explain(e, &format!("checking bucket {b}"), "s3:ListBucket")
                    } else {
                        taken(b)
                    })
                }
                _ => return Err(explain(e, &format!("checking bucket {b}"), "s3:ListBucket")),
            }
        }
    }
    // It exists: is it ours? (A bucket of another account is not in our ListBuckets.)
    if !owned(&s3, b).await? {
        return Err(taken(b));
    }
    let pab = match s3.get_public_access_block().bucket(b).send().await {
        Ok(r) => r.public_access_block_configuration().map(|c| {
            json!({"block_public_acls": c.block_public_acls().unwrap_or(false), "ignore_public_acls": c.ignore_public_acls().unwrap_or(false),
                   "block_public_policy": c.block_public_policy().unwrap_or(false), "restrict_public_buckets": c.restrict_public_buckets().unwrap_or(false)})
        }),
        Err(e) if code(&e).as_deref() == Some("NoSuchPublicAccessBlockConfiguration") => None,
        Err(e) => return Err(explain(e, &format!("reading the public access block of {b}"), "s3:GetBucketPublicAccessBlock")),
    };
    let enc = match s3.get_bucket_encryption().bucket(b).send().await {
        Ok(r) => r
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first().cloned())
            .and_then(|r| r.apply_server_side_encryption_by_default().cloned())
            .map(|d| match d.kms_master_key_id() {
                Some(k) if d.sse_algorithm() == &ServerSideEncryption::AwsKms => json!({"algorithm": "aws:kms", "kms_key": k}),
                _ => json!({"algorithm": d.sse_algorithm().as_str()}),
            }),
        Err(e) if code(&e).as_deref() == Some("ServerSideEncryptionConfigurationNotFoundError") => None,
        Err(e) => return Err(explain(e, &format!("reading the encryption of {b}"), "s3:GetEncryptionConfiguration")),
    };
    let own = match s3.get_bucket_ownership_controls().bucket(b).send().await {
        Ok(r) => r
            .ownership_controls()
            .and_then(|c| c.rules().first().map(|r| r.object_ownership().as_str().to_string())),
        Err(e) if code(&e).as_deref() == Some("OwnershipControlsNotFoundError") => None,
        Err(e) => return Err(explain(e, &format!("reading the ownership controls of {b}"), "s3:GetBucketOwnershipControls")),
    };
    let ver = match s3.get_bucket_versioning().bucket(b).send().await {
        Ok(r) => r.status().map(|s| s.as_str().to_string()),
        // some S3 emulators answer 200 with another XML root element, which the SDK cannot parse: read <Status>
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 200) => e
            .raw_response()
            .and_then(|r| r.body().bytes())
            .map(String::from_utf8_lossy)
            .and_then(|body| {
                let start = body.find("<Status>")? + "<Status>".len();
                let end = body[start..].find("</Status>")? + start;
                Some(body[start..end].to_string())
            }),
        Err(e) => return Err(explain(e, &format!("reading the versioning of {b}"), "s3:GetBucketVersioning")),
    };
    let tag = match s3.get_bucket_tagging().bucket(b).send().await {
        Ok(r) => r.tag_set().iter().find(|t| t.key() == TAG_KEY).map(|t| t.value().to_string()),
        Err(e) if code(&e).as_deref() == Some("NoSuchTagSet") => None,
        Err(e) => return Err(explain(e, &format!("reading the tags of {b}"), "s3:GetBucketTagging")),
    };
    let policy = match s3.get_bucket_policy().bucket(b).send().await {
        Ok(r) => r.policy().map(super::parse_policy).transpose()?,
        Err(e) if code(&e).as_deref() == Some("NoSuchBucketPolicy") => None,
        Err(e) => return Err(explain(e, &format!("reading the policy of {b}"), "s3:GetBucketPolicy")),
    };
    let current = json!({
        "public_access_block": pab,
        "encryption": enc,
        "object_ownership": own,
        "versioning": ver,
        "tags": match tag { Some(t) => json!({TAG_KEY: t}), None => json!({}) },
    });
    Ok(Observed { bucket: Some(current), policy: Some(policy) })
}

/// Is `b` among the caller's buckets (ListBuckets lists only the buckets the caller's account owns)?
async fn owned(s3: &aws_sdk_s3::Client, b: &str) -> anyhow::Result<bool> {
    let mine = s3.list_buckets().send().await.map_err(|e| explain(e, "listing buckets", "s3:ListAllMyBuckets"))?;
    Ok(mine.buckets().iter().any(|x| x.name() == Some(b)))
}

fn taken(b: &str) -> anyhow::Error {
    crate::error::usage(format!(
        "the bucket {b:?} exists but is not this account's: the name is taken by another account (S3 bucket names are \
         global), or S3 refused HeadBucket because the caller lacks s3:ListBucket on it\n  → pass another --bucket \
         (env TRAILSETUP_BUCKET, config key bucket), or grant s3:ListBucket"
    ))
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let s3 = client(ctx, aws);
    let b = &ctx.bucket;
    match c.kind.as_str() {
        "s3-bucket" => {
            if c.action == Action::Create {
                let mut req = s3.create_bucket().bucket(b).object_ownership(ObjectOwnership::BucketOwnerEnforced);
                if ctx.home != "us-east-1" {
                    req = req.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(ctx.home.as_str()))
                            .build(),
                    );
                }
                match req.send().await {
                    Ok(_) => {}
                    Err(e) if code(&e).as_deref() == Some("BucketAlreadyOwnedByYou") => {}
                    Err(e) if code(&e).as_deref() == Some("BucketAlreadyExists") => return Err(taken(b)),
                    Err(e) => return Err(explain(e, &format!("creating bucket {b}"), "s3:CreateBucket")),
                }
            }
            s3.put_public_access_block()
                .bucket(b)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .ignore_public_acls(true)
                        .block_public_policy(true)
                        .restrict_public_buckets(true)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| explain(e, &format!("blocking public access on {b}"), "s3:PutBucketPublicAccessBlock"))?;
            let mut def = ServerSideEncryptionByDefault::builder();
            let key = ctx.bucket_kms_key();
            def = match &key {
                None => def.sse_algorithm(ServerSideEncryption::Aes256),
                Some(k) => def.sse_algorithm(ServerSideEncryption::AwsKms).kms_master_key_id(k),
            };
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(def.build().context("encryption rule")?)
                .bucket_key_enabled(key.is_some())
                .build();
            s3.put_bucket_encryption()
                .bucket(b)
                .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build().context("encryption")?)
                .send()
                .await
                .map_err(|e| explain(e, &format!("setting default encryption on {b}"), "s3:PutEncryptionConfiguration"))?;
            s3.put_bucket_ownership_controls()
                .bucket(b)
                .ownership_controls(
                    OwnershipControls::builder()
                        .rules(OwnershipControlsRule::builder().object_ownership(ObjectOwnership::BucketOwnerEnforced).build().context("ownership")?)
                        .build()
                        .context("ownership")?,
                )
                .send()
                .await
                .map_err(|e| explain(e, &format!("setting object ownership on {b}"), "s3:PutBucketOwnershipControls"))?;
            s3.put_bucket_versioning()
                .bucket(b)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
                )
                .send()
                .await
                .map_err(|e| explain(e, &format!("enabling versioning on {b}"), "s3:PutBucketVersioning"))?;
            // tags: keep the bucket's other tags
            let mut tags: Vec<Tag> = match s3.get_bucket_tagging().bucket(b).send().await {
                Ok(r) => r.tag_set().iter().filter(|t| t.key() != TAG_KEY).cloned().collect(),
                Err(_) => Vec::new(),
            };
            tags.push(Tag::builder().key(TAG_KEY).value(&ctx.stack).build().context("tag")?);
            s3.put_bucket_tagging()
                .bucket(b)
                .tagging(Tagging::builder().set_tag_set(Some(tags)).build().context("tagging")?)
                .send()
                .await
                .map_err(|e| explain(e, &format!("tagging {b}"), "s3:PutBucketTagging"))?;
        }
        "s3-bucket-policy" => {
            let p = c.details["policy"].to_string();
            s3.put_bucket_policy()
                .bucket(b)
                .policy(p)
                .send()
                .await
                .map_err(|e| explain(e, &format!("setting the policy of {b}"), "s3:PutBucketPolicy"))?;
        }
        other => return Err(anyhow!("s3 cannot apply {other}")),
    }
    Ok(())
}

/// destroy: our statements out of the bucket policy (the whole policy when none is left), or the bucket, emptied
/// of every object version and delete marker first.
pub async fn delete(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let s3 = client(ctx, aws);
    let b = &ctx.bucket;
    if c.kind == crate::plan::Kind::S3BucketPolicy {
        return match &c.details["policy"] {
            Value::Null => s3.delete_bucket_policy().bucket(b).send().await.map(|_| ())
                .map_err(|e| explain(e, &format!("deleting the policy of {b}"), "s3:DeleteBucketPolicy")),
            p => s3.put_bucket_policy().bucket(b).policy(p.to_string()).send().await.map(|_| ())
                .map_err(|e| explain(e, &format!("setting the policy of {b}"), "s3:PutBucketPolicy")),
        };
    }
    // each round deletes what it listed, so the next listing starts over (bounded by the bucket's size)
    loop {
        let page = match s3.list_object_versions().bucket(b).send().await {
            Ok(p) => p,
            Err(e) if code(&e).as_deref() == Some("NoSuchBucket") => return Ok(()),
            Err(e) => return Err(explain(e, &format!("listing the object versions of {b}"), "s3:ListBucketVersions")),
        };
        let mut ids: Vec<aws_sdk_s3::types::ObjectIdentifier> = Vec::new();
        for v in page.versions() {
            ids.push(aws_sdk_s3::types::ObjectIdentifier::builder().key(v.key().unwrap_or_default()).set_version_id(v.version_id().map(String::from)).build()?);
        }
        for m in page.delete_markers() {
            ids.push(aws_sdk_s3::types::ObjectIdentifier::builder().key(m.key().unwrap_or_default()).set_version_id(m.version_id().map(String::from)).build()?);
        }
        if ids.is_empty() {
            break;
        }
        for chunk in ids.chunks(1000) {
            let del = aws_sdk_s3::types::Delete::builder().set_objects(Some(chunk.to_vec())).quiet(true).build()?;
            let r = s3.delete_objects().bucket(b).delete(del).send().await
                .map_err(|e| explain(e, &format!("emptying {b}"), "s3:DeleteObjectVersion"))?;
            // a 200 answer may still refuse some keys, each with its own code (S3 API Reference, DeleteObjects);
            // deleting an object needs s3:DeleteObject, a version of it also s3:DeleteObjectVersion
            if let Some(err) = r.errors().first() {
                let versions = match err.version_id().filter(|v| !v.is_empty() && *v != "null") {
                    Some(_) => " (an object version: s3:DeleteObjectVersion is needed too)",
                    None => "",
                };
                let what = format!("emptying {b}: {} of {} deletions refused, the first {:?}{versions}", r.errors().len(), chunk.len(), err.key().unwrap_or_default());
                return Err(crate::aws::explain_code(&what, err.code().unwrap_or("Unknown"), err.message().unwrap_or_default(), 200, "s3:DeleteObject"));
            }
        }
    }
    match s3.delete_bucket().bucket(b).send().await {
        Ok(_) => Ok(()),
        Err(e) if code(&e).as_deref() == Some("NoSuchBucket") => Ok(()),
        Err(e) => Err(explain(e, &format!("deleting bucket {b}"), "s3:DeleteBucket")),
    }
}


use crate::permissions as perm;
/// "Actions, resources, and condition keys for Amazon S3" (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html): bucket actions on the
/// bucket, object actions on `bucket/*`; s3:ListAllMyBuckets has no resource type (`*`).
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("s3:ListAllMyBuckets", perm::Res::Any, perm::OBSERVE),
    perm::p("s3:ListBucket", perm::Res::Bucket, perm::OBSERVE),
    perm::p("s3:GetBucketPolicy", perm::Res::Bucket, perm::OBSERVE),
    perm::p("s3:GetBucketPublicAccessBlock", perm::Res::Bucket, perm::OBSERVE),
    perm::p("s3:GetEncryptionConfiguration", perm::Res::Bucket, perm::OBSERVE),
    perm::p("s3:GetBucketOwnershipControls", perm::Res::Bucket, perm::OBSERVE),
    perm::p("s3:GetBucketVersioning", perm::Res::Bucket, perm::OBSERVE),
    perm::p("s3:GetBucketTagging", perm::Res::Bucket, perm::OBSERVE),
    perm::p("s3:CreateBucket", perm::Res::Bucket, perm::INIT),
    perm::p("s3:PutBucketPolicy", perm::Res::Bucket, perm::INIT_DESTROY),
    perm::p("s3:PutBucketPublicAccessBlock", perm::Res::Bucket, perm::INIT),
    perm::p("s3:PutEncryptionConfiguration", perm::Res::Bucket, perm::INIT),
    perm::p("s3:PutBucketOwnershipControls", perm::Res::Bucket, perm::INIT),
    perm::p("s3:PutBucketVersioning", perm::Res::Bucket, perm::INIT),
    perm::p("s3:PutBucketTagging", perm::Res::Bucket, perm::INIT),
    perm::p("s3:DeleteBucketPolicy", perm::Res::Bucket, perm::DESTROY),
    perm::p("s3:DeleteBucket", perm::Res::Bucket, perm::DESTROY),
    perm::p("s3:ListBucketVersions", perm::Res::Bucket, perm::DESTROY),
    perm::p("s3:DeleteObjectVersion", perm::Res::BucketObjects, perm::DESTROY),
    perm::p("s3:DeleteObject", perm::Res::BucketObjects, perm::DESTROY),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::TrailMode;

    #[test]
    fn adopted_policy_is_merged() {
        let ctx = crate::resources::test_ctx(TrailMode::MultiRegion);
        let theirs = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Theirs", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "s3:GetObject", "Resource": "*"},
            {"Sid": "TrailsetupCloudTrailWriteOther", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "another stack's"},
            {"Sid": "TrailsetupCloudTrailWrite", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "old"}]});
        let m = merged_policy(&ctx, Some(&theirs));
        let sids: Vec<&str> = m["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap()).collect();
        // another stack's statements on a shared bucket stay; the id without a stack (an older trailsetup's) goes
        assert_eq!(sids, ["Theirs", "TrailsetupCloudTrailWriteOther", "TrailsetupCloudTrailAclCheckTrailsetup", "TrailsetupCloudTrailWriteTrailsetup", "TrailsetupDenyInsecureTransportTrailsetup"]);
    }
}
