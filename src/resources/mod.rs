//! One file per AWS service: observe → diff → apply → verify. This module holds what they share: the
//! context (deterministic names and ARNs from the stack name and account), the policy templates, and the
//! plan builder that walks every resource in dependency order.

pub mod cloudtrail;
pub mod cloudwatch;
pub mod iam;
pub mod kms;
pub mod lambda;
pub mod logs;
pub mod opensearch;
pub mod pricing;
pub mod reuse;
pub mod s3;
pub mod secretsmanager;
pub mod sns;
pub mod sqs;

use std::collections::BTreeMap;

use anyhow::Context as _;
use aws_config::SdkConfig;
use serde_json::{json, Value};

use crate::cli::{OpenSearchAuth, TrailMode};
use crate::plan::{Change, Plan};

pub const TAG_KEY: &str = "trailsetup:stack";

/// Where documents go: a domain we create or adopt, or an existing endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenSearchTarget {
    Domain(String),
    Url(String),
}

/// The customer managed KMS key(s) of `--kms-key`, resolved to key ARNs per region. Keys and aliases are
/// regional: every regional resource (topic, queue, log group, dead-letter queue) is given the key of its own
/// region; trails use the bucket's (home region) key ("AWS KMS concepts → multi-Region keys"; CloudTrail:
/// "the KMS key and the S3 bucket must be in the same AWS Region").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeys {
    /// as the user gave it (`alias/x`, an id, an ARN, or `REGION=KEY,...`)
    pub given: String,
    /// region → key ARN (`arn:…:kms:<region>:<account>:key/<id>`); an alias ARN only offline, when it could
    /// not be resolved (then `resolved` is false and the plan says so)
    pub keys: BTreeMap<String, String>,
    pub resolved: bool,
}

/// Everything a resource needs to know to compute its desired state; no AWS calls.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub stack: String,
    pub account: String,
    pub partition: String,
    /// the caller as STS names it (may be an assumed-role session)
    pub caller_arn: String,
    /// the caller as an IAM principal: a user or role ARN (with its path); an assumed-role session is turned
    /// into its role ("IAM JSON policy elements: Principal" → role sessions). The domain's master user.
    pub principal_arn: String,
    pub home: String,
    pub regions: Vec<String>,
    /// the regions among `regions` (and home) that are opt-in regions (DescribeRegions: `opted-in`)
    pub opt_in_regions: Vec<String>,
    pub trail_mode: TrailMode,
    pub bucket: String,
    pub kms: Option<KmsKeys>,
    /// do not read or write the key policy (`--no-kms-key-policy`): its owner added our statements
    pub kms_policy_external: bool,
    pub retention_days: i32,
    pub opensearch: OpenSearchTarget,
    /// a domain we create: its data nodes (`--domain-instance-type`, `--domain-instance-count`); an adopted domain
    /// keeps its own
    pub domain_size: opensearch::DomainSize,
    /// `--opensearch-auth` as given; `None` = sigv4 for AWS endpoints and domains, else none
    pub opensearch_auth: Option<OpenSearchAuth>,
    pub index_prefix: String,
    /// day or month indices (`opensearch::layout`)
    pub index_granularity: crate::opensearch::layout::Granularity,
    /// IAM roles of ingest workers to map in the domain's fine-grained access control (`--ingest-role`)
    pub ingest_roles: Vec<String>,
    /// `--use-trail`: an existing trail to hang the pipeline from (no trail, bucket, topic or log group of ours)
    pub reuse: Option<reuse::Reuse>,
    /// the forwarder's OpenSearch user and password (`--opensearch-auth basic`, from `TRAILSETUP_OPENSEARCH_USER` /
    /// `_PASSWORD`), written into its Secrets Manager secret; `None` where nothing is written (`status`, `destroy`:
    /// the secret's value is then not read). `Debug` never shows the password.
    pub basic_auth: Option<secretsmanager::BasicAuth>,
}

/// The region that receives global service events (IAM, STS, CloudFront) in each partition ("CloudTrail
/// concepts → global service events": US East (N. Virginia) in the aws partition).
pub fn global_events_region(partition: &str) -> &'static str {
    match partition {
        "aws-cn" => "cn-north-1",
        "aws-us-gov" => "us-gov-west-1",
        _ => "us-east-1",
    }
}

/// Opt-in regions of the aws partition, for `--offline` plans (online, DescribeRegions says which regions are
/// opt-in: `OptInStatus` `opted-in`). "Managing AWS Regions" in the AWS Account Management guide.
pub const OPT_IN_REGIONS: &[&str] = &[
    "af-south-1", "ap-east-1", "ap-east-2", "ap-south-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
    "ap-southeast-6", "ap-southeast-7", "ca-west-1", "eu-central-2", "eu-south-1", "eu-south-2", "il-central-1",
    "me-central-1", "me-south-1", "mx-central-1",
];

impl Ctx {
    /// (region, trail name) of every trail.
    pub fn trails(&self) -> Vec<(String, String)> {
        if self.reuse.is_some() {
            return Vec::new();
        }
        match self.trail_mode {
            TrailMode::MultiRegion => vec![(self.home.clone(), self.stack.clone())],
            TrailMode::PerRegion => self.regions.iter().map(|r| (r.clone(), format!("{}-{r}", self.stack))).collect(),
        }
    }
    /// Regions that hold a trail (and its topic and log group).
    pub fn trail_regions(&self) -> Vec<String> {
        self.trails().into_iter().map(|t| t.0).collect()
    }
    /// Does the trail of `region` record global service events? A multi-region trail always; per-region, only
    /// the trail in the partition's global-events region (us-east-1), where those events are delivered.
    pub fn records_global_events(&self, region: &str) -> bool {
        self.trail_mode == TrailMode::MultiRegion || region == global_events_region(&self.partition)
    }
    /// A warning when no trail records IAM/STS/CloudFront events (per-region mode without us-east-1).
    pub fn global_events_warning(&self) -> Option<String> {
        let g = global_events_region(&self.partition);
        (!self.trail_regions().iter().any(|r| self.records_global_events(r))).then(|| {
            format!(
                "no trail records global service events (IAM, STS, CloudFront): CloudTrail delivers them to {g} only, \
                 and {g} is not among the regions; add {g} to --regions or use --trail-mode multi-region"
            )
        })
    }
    pub fn is_opt_in(&self, region: &str) -> bool {
        self.opt_in_regions.iter().any(|r| r == region)
    }
    /// The key ARN for resources in `region` (`None`: SSE-S3 / SQS-managed / service-owned encryption).
    pub fn kms_key_for(&self, region: &str) -> Option<String> {
        self.kms.as_ref().and_then(|k| k.keys.get(region).cloned())
    }
    /// The key of the bucket, hence of every trail.
    pub fn bucket_kms_key(&self) -> Option<String> {
        self.kms_key_for(&self.home)
    }
    pub fn trail_arn(&self, region: &str, name: &str) -> String {
        format!("arn:{}:cloudtrail:{region}:{}:trail/{name}", self.partition, self.account)
    }
    pub fn trail_arns(&self) -> Vec<String> {
        self.trails().iter().map(|(r, n)| self.trail_arn(r, n)).collect()
    }
    pub fn trail_arns_in(&self, region: &str) -> Vec<String> {
        self.trails().iter().filter(|(r, _)| r == region).map(|(r, n)| self.trail_arn(r, n)).collect()
    }
    pub fn topic_name(&self) -> String {
        format!("{}-cloudtrail", self.stack)
    }
    pub fn topic_arn(&self, region: &str) -> String {
        format!("arn:{}:sns:{region}:{}:{}", self.partition, self.account, self.topic_name())
    }
    /// The topics that notify our queue: ours, or the reused trail's.
    pub fn topic_arns(&self) -> Vec<String> {
        self.notification_topics().into_iter().map(|t| t.1).collect()
    }
    /// (region, ARN) of every topic that notifies our queue.
    pub fn notification_topics(&self) -> Vec<(String, String)> {
        match &self.reuse {
            Some(r) => r.topic_arn.iter().map(|t| (reuse::arn_parts(t).map(|x| x.0).unwrap_or_default(), t.clone())).collect(),
            None => self.trail_regions().iter().map(|r| (r.clone(), self.topic_arn(r))).collect(),
        }
    }
    /// The reused trail's bucket when it notifies our queue itself (no topic): (bucket ARN, owner account if known).
    pub fn notification_bucket(&self) -> Option<(String, Option<String>)> {
        let r = self.reuse.as_ref().filter(|r| r.topic_arn.is_none())?;
        Some((format!("arn:{}:s3:::{}", self.partition, r.bucket), r.bucket_owned.then(|| self.account.clone())))
    }
    /// The key prefix our readers may read: `AWSLogs/`, or this account's logs in a reused trail's bucket.
    pub fn read_prefix(&self) -> String {
        match &self.reuse {
            Some(r) => r.account_prefix(&self.account),
            None => "AWSLogs/".into(),
        }
    }
    /// The object patterns our readers may GET: under [`Ctx::read_prefix`]; for an organization trail whose
    /// organization id is unknown, this account's folder in both layouts (`<root><account>/` and
    /// `<root>o-*/<account>/`), never the whole `AWSLogs/` of the organization. (S3 resource wildcards span `/`:
    /// `o-*` may stand for anything, but CloudTrail keys hold `/<account>/` only as the account folder.)
    pub fn read_objects(&self) -> Vec<String> {
        match &self.reuse {
            Some(r) if r.organization && r.org_id.is_none() => {
                let root = r.logs_root();
                vec![format!("{root}{}/*", self.account), format!("{root}o-*/{}/*", self.account)]
            }
            _ => vec![format!("{}*", self.read_prefix())],
        }
    }
    /// The `s3:prefix` values our readers may list: the read prefix and below; for an organization trail of
    /// unknown id, the root itself and the organization folders (names of keys, not their content: the lister
    /// discovers the organization's folder), and this account's folder.
    pub fn list_prefixes(&self) -> Vec<String> {
        match &self.reuse {
            Some(r) if r.organization && r.org_id.is_none() => {
                let root = r.logs_root();
                vec![root.clone(), format!("{root}{}/*", self.account), format!("{root}o-*")]
            }
            _ => vec![self.read_prefix(), format!("{}*", self.read_prefix())],
        }
    }
    /// The key the log files are encrypted with: ours, or the reused trail's.
    pub fn log_files_key(&self) -> Option<String> {
        match &self.reuse {
            Some(r) => r.kms_key.clone(),
            None => self.bucket_kms_key(),
        }
    }
    /// The SNS service principals that deliver our topics to the home-region queue: `sns.amazonaws.com`, and
    /// `sns.<region>.amazonaws.com` for a topic in an opt-in region other than the queue's (SNS developer guide,
    /// "Cross-region delivery": opt-in region → default region needs the regional principal).
    pub fn sns_principals(&self) -> Vec<String> {
        let mut p = vec!["sns.amazonaws.com".to_string()];
        for (r, _) in self.notification_topics() {
            let s = self.sns_principal_for(&r);
            if !p.contains(&s) {
                p.push(s);
            }
        }
        p
    }
    /// [`Ctx::sns_principals`] as a policy's `Service` value: a string when there is one.
    pub fn sns_principal_value(&self) -> Value {
        let p = self.sns_principals();
        if p.len() == 1 { json!(p[0]) } else { json!(p) }
    }
    pub fn queue_name(&self) -> String {
        format!("{}-notifications", self.stack)
    }
    pub fn dlq_name(&self) -> String {
        format!("{}-notifications-dlq", self.stack)
    }
    pub fn queue_arn(&self, name: &str) -> String {
        format!("arn:{}:sqs:{}:{}:{name}", self.partition, self.home, self.account)
    }
    /// Our trail's log group, or the reused trail's (the one the forwarder subscribes to).
    pub fn log_group(&self) -> String {
        match self.reuse.as_ref().and_then(|r| r.log_group()) {
            Some((_, _, name)) => name,
            None => format!("/aws/cloudtrail/{}", self.stack),
        }
    }
    /// The log group as CloudTrail's `CloudWatchLogsLogGroupArn` names it (with `:*`).
    pub fn log_group_arn(&self, region: &str) -> String {
        format!("{}:*", self.log_group_arn_bare(region))
    }
    /// The log group's ARN without `:*`: the value of the `kms:EncryptionContext:aws:logs:arn` context.
    pub fn log_group_arn_bare(&self, region: &str) -> String {
        if let Some(a) = self.reuse.as_ref().and_then(|r| r.log_group_arn.as_deref()) {
            return a.strip_suffix(":*").unwrap_or(a).to_string();
        }
        format!("arn:{}:logs:{region}:{}:log-group:{}", self.partition, self.account, self.log_group())
    }
    pub fn logs_role(&self) -> String {
        format!("{}-cloudtrail-logs", self.stack)
    }
    pub fn logs_role_arn(&self) -> String {
        format!("arn:{}:iam::{}:role/{}", self.partition, self.account, self.logs_role())
    }
    pub fn ingest_policy(&self) -> String {
        format!("{}-ingest-worker", self.stack)
    }
    pub fn ingest_policy_arn(&self) -> String {
        format!("arn:{}:iam::{}:policy/{}", self.partition, self.account, self.ingest_policy())
    }
    pub fn tags(&self) -> Value {
        json!({ TAG_KEY: self.stack })
    }
    /// The stack in a statement id: `prod-audit` → `ProdAudit` (statement ids are alphanumeric).
    pub fn stack_sid(&self) -> String {
        stack_sid(&self.stack)
    }
    /// Our statement id for `purpose` in a policy other stacks (or people) may share — a key policy, a domain's
    /// access policy, a bucket policy: `Trailsetup<Purpose><Stack>`, so that two stacks on one key, domain or
    /// bucket each keep their own statements, and `destroy` removes only its own.
    pub fn sid(&self, purpose: &str) -> String {
        format!("Trailsetup{purpose}{}", self.stack_sid())
    }
    /// Is `sid` one of this stack's statements: `Trailsetup<Purpose><Stack>` for one of our purposes, or the
    /// same without the stack (the ids of versions before statements named their stack; replaced by the next
    /// `init`, removed by `destroy`).
    pub fn legacy_sids(&self) -> Vec<String> {
        SID_PURPOSES.iter().map(|p| format!("Trailsetup{p}")).collect()
    }
    pub fn owns_sid(&self, sid: &str) -> bool {
        let Some(rest) = sid.strip_prefix("Trailsetup") else { return false };
        let rest = rest.strip_suffix(self.stack_sid().as_str()).unwrap_or(rest);
        SID_PURPOSES.contains(&rest) || rest.starts_with("TopicsSend")
    }
    /// The region of the OpenSearch endpoint: a domain's is the home region; an AWS endpoint URL names its own.
    pub fn opensearch_region(&self) -> String {
        match &self.opensearch {
            OpenSearchTarget::Domain(_) => self.home.clone(),
            OpenSearchTarget::Url(u) => aws_endpoint(u).map(|x| x.1).unwrap_or_else(|| self.home.clone()),
        }
    }
    /// The role of the domain's fine-grained access control that our writers are mapped to.
    pub fn writer_role(&self) -> String {
        format!("{}-writer", self.stack)
    }

    // --- the CloudWatch Logs → OpenSearch forwarder (one function per region whose trail writes to CloudWatch Logs) ---

    /// Regions with a trail log group, hence a forwarder: the home region (multi-region) or every trail region.
    pub fn forwarder_regions(&self) -> Vec<String> {
        match &self.reuse {
            Some(r) => r.forwarder_region().into_iter().collect(),
            None => self.trail_regions(),
        }
    }
    /// The roles that write documents and are mapped in fine-grained access control: the forwarder's (when
    /// there is a forwarder) and the ingest workers'.
    pub fn writer_roles(&self) -> Vec<String> {
        let mut v: Vec<String> = if self.forwarder_regions().is_empty() { Vec::new() } else { vec![self.forwarder_role_arn()] };
        v.extend(self.ingest_roles.iter().cloned());
        v
    }
    /// Regions whose resources are encrypted with `--kms-key`: home, trail and forwarder regions.
    pub fn key_regions(&self) -> Vec<String> {
        let mut v = vec![self.home.clone()];
        for r in self.trail_regions().into_iter().chain(self.forwarder_regions()) {
            if !v.contains(&r) {
                v.push(r);
            }
        }
        v
    }
    /// Name of the function (in each region), of its role and of its managed policy.
    pub fn forwarder_name(&self) -> String {
        format!("{}-forwarder", self.stack)
    }
    pub fn forwarder_role_arn(&self) -> String {
        format!("arn:{}:iam::{}:role/{}", self.partition, self.account, self.forwarder_name())
    }
    pub fn forwarder_policy_arn(&self) -> String {
        format!("arn:{}:iam::{}:policy/{}", self.partition, self.account, self.forwarder_name())
    }
    pub fn forwarder_dlq_name(&self) -> String {
        format!("{}-forwarder-dlq", self.stack)
    }
    pub fn queue_arn_in(&self, region: &str, name: &str) -> String {
        format!("arn:{}:sqs:{region}:{}:{name}", self.partition, self.account)
    }
    pub fn forwarder_function_arn(&self, region: &str) -> String {
        format!("arn:{}:lambda:{region}:{}:function:{}", self.partition, self.account, self.forwarder_name())
    }
    /// The function's own log group (`/aws/lambda/<function>`), as an ARN covering its streams.
    pub fn forwarder_log_group_arn(&self, region: &str) -> String {
        format!("arn:{}:logs:{region}:{}:log-group:/aws/lambda/{}:*", self.partition, self.account, self.forwarder_name())
    }
    /// `OPENSEARCH_AUTH` of the forwarder: as given, else sigv4 for a domain or an AWS endpoint, else none.
    pub fn forwarder_auth(&self) -> &'static str {
        match self.opensearch_auth {
            Some(OpenSearchAuth::Sigv4) => "sigv4",
            Some(OpenSearchAuth::Basic) => "basic",
            Some(OpenSearchAuth::None) => "none",
            None => match &self.opensearch {
                OpenSearchTarget::Domain(_) => "sigv4",
                OpenSearchTarget::Url(u) if aws_endpoint(u).is_some() => "sigv4",
                OpenSearchTarget::Url(_) => "none",
            },
        }
    }
    /// The `es:` resource our documents go to: `domain/<domain>/<prefix>*`; `None` when the sink is not an
    /// Amazon OpenSearch Service domain signed with SigV4 (no `es:` statement then).
    pub fn forwarder_index_arn(&self) -> Option<String> {
        if self.forwarder_auth() != "sigv4" {
            return None;
        }
        let (region, domain) = match &self.opensearch {
            OpenSearchTarget::Domain(d) => (self.home.clone(), d.clone()),
            OpenSearchTarget::Url(u) => {
                let (svc, region, domain) = aws_endpoint(u)?;
                if svc != "es" {
                    return None;
                }
                (region, domain.unwrap_or_else(|| "*".into()))
            }
        };
        Some(format!("arn:{}:es:{region}:{}:domain/{domain}/{}*", self.partition, self.account, self.index_prefix))
    }
    pub fn forwarder_trust_policy(&self) -> Value {
        render(FORWARDER_TRUST, &self.vars(&[]))
    }
    /// Does the forwarder sign in with a user and password (hence read them from its secret)?
    pub fn uses_secret(&self) -> bool {
        self.forwarder_auth() == "basic" && !self.forwarder_regions().is_empty()
    }
    /// The forwarder's basic-auth secret, in the home region.
    pub fn secret_name(&self) -> String {
        format!("{}/opensearch-basic-auth", self.stack)
    }
    /// The secret's ARN in a policy before the secret exists: Secrets Manager appends `-` and six random characters
    /// to the name, and `??????` matches exactly those ("Permissions reference for Secrets Manager"; "Limiting
    /// access to specific secrets": `*` would also match `<name>-<anything>-xxxxxx`).
    pub fn secret_arn_pattern(&self) -> String {
        format!("arn:{}:secretsmanager:{}:{}:secret:{}-??????", self.partition, self.home, self.account, self.secret_name())
    }
    /// The forwarder's policy before its secret exists (the secret's ARN as [`Ctx::secret_arn_pattern`]).
    pub fn forwarder_policy(&self) -> Value {
        self.forwarder_policy_with(None)
    }
    /// The forwarder's policy; `secret_arn`: the secret's real ARN once it exists.
    pub fn forwarder_policy_with(&self, secret_arn: Option<&str>) -> Value {
        let regions = self.forwarder_regions();
        let logs: Vec<String> = regions.iter().map(|r| self.forwarder_log_group_arn(r)).collect();
        let dlqs: Vec<String> = regions.iter().map(|r| self.queue_arn_in(r, &self.forwarder_dlq_name())).collect();
        let index = self.forwarder_index_arn();
        let mut p = render(
            FORWARDER_POLICY,
            &self.vars(&[
                ("FunctionLogGroupArns", json!(logs)),
                ("ForwarderDlqArns", json!(dlqs)),
                ("IndexArn", json!(index.clone().unwrap_or_default())),
            ]),
        );
        if let Some(st) = p["Statement"].as_array_mut() {
            if index.is_none() {
                st.retain(|s| s["Sid"] != "IndexDocuments");
            }
            // the dead-letter queues are encrypted with the key of their region: sending needs it
            let keys: Vec<String> = regions.iter().filter_map(|r| self.kms_key_for(r)).collect();
            if !keys.is_empty() {
                st.push(kms_statement("EncryptDeadLetters", json!(["kms:GenerateDataKey", "kms:Decrypt"]), &keys));
            }
            // basic auth: read the one secret that holds the user and password, nothing else ("Use Secrets Manager
            // secrets in Lambda functions": the execution role needs secretsmanager:GetSecretValue on the secret)
            if self.uses_secret() {
                let arn = secret_arn.map(String::from).unwrap_or_else(|| self.secret_arn_pattern());
                st.push(json!({"Sid": "ReadOpenSearchSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}));
                // encrypted with the home region's key: decrypt through Secrets Manager only, for this secret
                // ("Secret encryption and decryption in AWS Secrets Manager": kms:ViaService, SecretARN context)
                if let Some(k) = self.kms_key_for(&self.home) {
                    let mut s = kms_statement("DecryptOpenSearchSecret", json!("kms:Decrypt"), &[k]);
                    s["Condition"]["StringEquals"]["kms:ViaService"] = json!(format!("secretsmanager.{}.amazonaws.com", self.home));
                    s["Condition"]["StringLike"]["kms:EncryptionContext:SecretARN"] = json!(arn);
                    st.push(s);
                }
            }
        }
        p
    }

    // --- policies (policies/*.json, placeholders filled) ---

    pub fn bucket_policy(&self) -> Value {
        render(BUCKET_POLICY, &self.vars(&[]))
    }
    pub fn topic_policy(&self, region: &str) -> Value {
        // only the trail(s) of this region publish here
        render(TOPIC_POLICY, &self.vars(&[("TopicArn", json!(self.topic_arn(region))), ("TrailArns", json!(self.trail_arns_in(region)))]))
    }
    /// One statement per topic, as the SNS developer guide asks ("Subscribing an Amazon SQS queue to an Amazon SNS
    /// topic": one `Statement` per topic, limited by `aws:SourceArn`), each naming the SNS principal of the
    /// topic's region: `sns.<region>.amazonaws.com` for an opt-in region ("Cross-region delivery").
    pub fn queue_policy(&self) -> Value {
        let mut statements: Vec<Value> = Vec::new();
        for (r, topic) in self.notification_topics() {
            let p = render(
                QUEUE_POLICY,
                &self.vars(&[("TopicSid", json!(region_sid(&r))), ("SnsPrincipal", json!(self.sns_principal_for(&r))), ("TopicArn", json!(topic))]),
            );
            statements.extend(self::statements(&p));
        }
        // "Walkthrough: Configuring a bucket for notifications (SNS topic or SQS queue)": the bucket by
        // aws:SourceArn and, when known, its owner by aws:SourceAccount (bucket ARNs name no account)
        if let Some((bucket_arn, owner)) = self.notification_bucket() {
            let mut cond = json!({"ArnLike": {"aws:SourceArn": bucket_arn}});
            if let Some(a) = owner {
                cond["StringEquals"] = json!({"aws:SourceAccount": a});
            }
            statements.push(json!({"Sid": self.sid("BucketSend"), "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage", "Resource": self.queue_arn(&self.queue_name()), "Condition": cond}));
        }
        json!({"Version": "2012-10-17", "Statement": statements})
    }
    /// The SNS service principal that delivers a topic of `region` to the home-region queue.
    pub fn sns_principal_for(&self, region: &str) -> String {
        if region != self.home && self.is_opt_in(region) {
            format!("sns.{region}.amazonaws.com")
        } else {
            "sns.amazonaws.com".to_string()
        }
    }
    /// The es: resources ingest workers (backfill, ingest) use: `GET /` (ping), the index template, and
    /// `_bulk`/documents under `<prefix>*`. `None` when the sink is not an Amazon OpenSearch domain with SigV4.
    pub fn ingest_es_resources(&self) -> Option<Value> {
        let index = self.forwarder_index_arn()?;
        let domain = index.rsplit_once('/').map(|x| x.0.to_string()).unwrap_or_default();
        Some(json!({
            "write": [index],
            "read": [format!("{domain}/"), format!("{domain}/_index_template/{}", crate::opensearch::template::name(&self.index_prefix))],
            "template": format!("{domain}/_index_template/{}", crate::opensearch::template::name(&self.index_prefix)),
        }))
    }
    pub fn ingest_worker_policy(&self) -> Value {
        let objects: Vec<String> = self.read_objects().iter().map(|o| format!("arn:{}:s3:::{}/{o}", self.partition, self.bucket)).collect();
        let objects = if objects.len() == 1 { json!(objects[0]) } else { json!(objects) };
        let mut p = render(
            INGEST_POLICY,
            &self.vars(&[("ReadObjects", objects), ("ListPrefixes", json!(self.list_prefixes())), ("IngestPolicy", json!(self.ingest_policy()))]),
        );
        if let Some(st) = p["Statement"].as_array_mut() {
            // the log files are encrypted with the bucket's key (ours, or the reused trail's), the queue with
            // the home region's
            let mut keys: Vec<String> = self.log_files_key().into_iter().collect();
            if let Some(k) = self.kms_key_for(&self.home).filter(|k| !keys.contains(k)) {
                keys.push(k);
            }
            if !keys.is_empty() {
                st.push(kms_statement("DecryptLogs", json!("kms:Decrypt"), &keys));
            }
            // a log archive bucket of another account, read through a role there ("Granting a user permissions
            // to switch roles": sts:AssumeRole on the role)
            if let Some(role) = self.reuse.as_ref().and_then(|r| r.source_role.clone()) {
                st.push(json!({"Sid": "AssumeSourceRole", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role}));
            }
            if let Some(es) = self.ingest_es_resources() {
                st.push(json!({"Sid": "IndexDocuments", "Effect": "Allow", "Action": ["es:ESHttpPost", "es:ESHttpPut"],
                    "Resource": es["write"]}));
                st.push(json!({"Sid": "CheckDomainAndTemplate", "Effect": "Allow", "Action": ["es:ESHttpGet", "es:ESHttpHead"],
                    "Resource": es["read"]}));
                st.push(json!({"Sid": "InstallTemplate", "Effect": "Allow", "Action": "es:ESHttpPut", "Resource": es["template"]}));
            }
        }
        p
    }
    /// Trust of the role CloudTrail assumes to deliver to CloudWatch Logs: `cloudtrail.amazonaws.com`, no
    /// condition (CloudTrail User Guide, "Role policy document for CloudTrail to use CloudWatch Logs for
    /// monitoring": confused-deputy conditions do not apply to this role).
    pub fn logs_trust_policy(&self) -> Value {
        render(LOGS_TRUST, &self.vars(&[]))
    }
    /// `logs:CreateLogStream`/`logs:PutLogEvents` on the streams CloudTrail creates in our log group:
    /// `<account>_CloudTrail_<region>*` (one stream per region whose events the trail records: all regions for
    /// a multi-region trail, its own region for a per-region trail).
    pub fn logs_permissions_policy(&self) -> Value {
        let arns: Vec<String> = self
            .trail_regions()
            .iter()
            .map(|r| {
                let stream = match self.trail_mode {
                    TrailMode::MultiRegion => format!("{}_CloudTrail_*", self.account),
                    TrailMode::PerRegion => format!("{}_CloudTrail_{r}*", self.account),
                };
                format!("{}:log-stream:{stream}", self.log_group_arn_bare(r))
            })
            .collect();
        render(LOGS_PERMISSIONS, &self.vars(&[("LogStreamArns", json!(arns))]))
    }
    /// The principals the domain's access policy admits: the caller (IAM master user), the forwarder and the
    /// ingest workers' roles.
    pub fn opensearch_principals(&self) -> Vec<String> {
        let mut v = vec![self.principal_arn.clone()];
        v.extend(self.writer_roles());
        v.dedup();
        v
    }
    pub fn opensearch_access_policy(&self, domain: &str) -> Value {
        render(
            OPENSEARCH_POLICY,
            &self.vars(&[
                ("Principals", json!(self.opensearch_principals())),
                ("Domain", json!(domain)),
                ("Region", json!(self.home)),
            ]),
        )
    }

    fn vars(&self, extra: &[(&str, Value)]) -> Vec<(String, Value)> {
        let mut v = vec![
            ("Partition".to_string(), json!(self.partition)),
            ("StackSid".to_string(), json!(self.stack_sid())),
            ("Account".to_string(), json!(self.account)),
            ("Bucket".to_string(), json!(self.bucket)),
            ("TrailArns".to_string(), json!(self.trail_arns())),
            ("TopicArns".to_string(), json!(self.topic_arns())),
            ("QueueArn".to_string(), json!(self.queue_arn(&self.queue_name()))),
            ("DlqArn".to_string(), json!(self.queue_arn(&self.dlq_name()))),
        ];
        for (k, val) in extra {
            v.retain(|(n, _)| n != k);
            v.push((k.to_string(), val.clone()));
        }
        v
    }
}

pub const BUCKET_POLICY: &str = include_str!("../../policies/bucket-policy.json");
pub const TOPIC_POLICY: &str = include_str!("../../policies/topic-policy.json");
pub const QUEUE_POLICY: &str = include_str!("../../policies/queue-policy.json");
pub const INGEST_POLICY: &str = include_str!("../../policies/ingest-worker-policy.json");
pub const LOGS_TRUST: &str = include_str!("../../policies/cloudtrail-logs-trust.json");
pub const LOGS_PERMISSIONS: &str = include_str!("../../policies/cloudtrail-logs-permissions.json");
pub const OPENSEARCH_POLICY: &str = include_str!("../../policies/opensearch-access-policy.json");
pub const FORWARDER_TRUST: &str = include_str!("../../policies/forwarder-trust.json");
pub const FORWARDER_POLICY: &str = include_str!("../../policies/forwarder-policy.json");

/// An Amazon OpenSearch endpoint URL → (service `es`/`aoss`, region, domain name when the host says it:
/// `search-<domain>-<id>.<region>.es.amazonaws.com`).
pub fn aws_endpoint(url: &str) -> Option<(&'static str, String, Option<String>)> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.to_string();
    let (svc, region) = crate::opensearch::client::aws_host_hint(&host)?;
    let first = host.split('.').next().unwrap_or_default();
    let domain = first
        .strip_prefix("search-")
        .or_else(|| first.strip_prefix("vpc-"))
        .and_then(|rest| rest.rsplit_once('-').map(|(d, _id)| d.to_string()))
        .filter(|d| !d.is_empty());
    Some((svc, region, domain))
}

/// A policy's statements as a list (`Statement` may be one object or an array).
pub fn statements(policy: &Value) -> Vec<Value> {
    match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        Value::Object(o) => vec![Value::Object(o.clone())],
        _ => Vec::new(),
    }
}

/// Every purpose of a statement trailsetup puts into a policy it does not own alone (see [`Ctx::sid`]).
pub const SID_PURPOSES: &[&str] = &[
    "CloudTrailAclCheck",
    "CloudTrailWrite",
    "DenyInsecureTransport",
    "Access",
    "CloudTrailEncryptLogs",
    "CloudTrailDecrypt",
    "CloudTrailDescribeKey",
    "SnsToQueue",
    "BucketToQueue",
    "CloudTrailToTopic",
    "CloudWatchLogs",
    "BucketSend",
    "CloudTrailPublish",
];

/// `prod-audit` → `ProdAudit`: each part after a `-` starts upper-case.
pub fn stack_sid(stack: &str) -> String {
    region_sid(stack)
}

/// `eu-west-1` → `EuWest1` (statement ids are alphanumeric).
pub fn region_sid(region: &str) -> String {
    region
        .split('-')
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// An IAM statement allowing `actions` on the given keys. Key ARNs only: an alias ARN is never the Resource of
/// a kms: data-plane action ("Using aliases to control access to KMS keys"); offline, an unresolved alias is
/// named by the `kms:ResourceAliases` condition instead.
pub fn kms_statement(sid: &str, actions: Value, keys: &[String]) -> Value {
    let (aliases, arns): (Vec<&String>, Vec<&String>) = keys.iter().partition(|k| k.contains(":alias/"));
    if arns.is_empty() && !aliases.is_empty() {
        let names: Vec<String> = aliases.iter().filter_map(|a| a.split_once(":alias/").map(|x| format!("alias/{}", x.1))).collect();
        let prefix = aliases[0].split_once(":alias/").map(|x| x.0).unwrap_or_default();
        return json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": format!("{prefix}:key/*"),
            "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": names}}});
    }
    json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": arns})
}

/// Fill a policy template: a string that is exactly `${Var}` becomes the variable's JSON value (so a list
/// stays a list); `${Var}` inside a longer string is replaced by the variable's text.
pub fn render(template: &str, vars: &[(String, Value)]) -> Value {
    // The templates are compiled in and covered by unit tests, so they always parse.
    let v: Value = serde_json::from_str(template).unwrap_or(Value::Null);
    fill(&v, vars)
}

fn fill(v: &Value, vars: &[(String, Value)]) -> Value {
    match v {
        Value::String(s) => {
            for (k, val) in vars {
                if *s == format!("${{{k}}}") {
                    return val.clone();
                }
            }
            let mut out = s.clone();
            for (k, val) in vars {
                let text = match val {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                out = out.replace(&format!("${{{k}}}"), &text);
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, vars)).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), fill(x, vars))).collect()),
        other => other.clone(),
    }
}

/// A policy document as AWS returns it: JSON, or URL-encoded JSON (IAM).
pub fn parse_policy(s: &str) -> anyhow::Result<Value> {
    if let Ok(v) = serde_json::from_str(s) {
        return Ok(v);
    }
    let decoded: String = url::form_urlencoded::parse(format!("p={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    serde_json::from_str(&decoded).context("policy document is not JSON")
}

/// AWS clients per region, built from one shared config.
#[derive(Clone)]
pub struct Aws {
    pub cfg: SdkConfig,
    /// the OpenSearch endpoint's client, when one is known (`--opensearch-url`)
    pub search: Option<crate::opensearch::client::Client>,
    /// the domain was created or changed moments ago in this apply: its security plugin may still refuse
    /// (401/403/503) for a few minutes
    pub fresh_domain: bool,
}

impl Aws {
    pub fn at(&self, region: &str) -> SdkConfig {
        crate::aws::in_region(&self.cfg, region)
    }
}

/// What observation found, per resource; `Default` (nothing found) is the offline plan's view. Plans are
/// built from this by the pure [`changes`], so tests build plans for adopted resources without AWS.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub iam: iam::Observed,
    pub s3: s3::Observed,
    pub sqs: sqs::Observed,
    /// region → the forwarder's dead-letter queue
    pub forwarder_dlqs: BTreeMap<String, Option<Value>>,
    /// region → the trail's log group
    pub log_groups: BTreeMap<String, Option<Value>>,
    /// region → the forwarder's own log group (`/aws/lambda/<name>-forwarder`)
    pub forwarder_log_groups: BTreeMap<String, Option<Value>>,
    /// region → topic, its policy and subscription
    pub topics: BTreeMap<String, Option<sns::Observed>>,
    /// trail name → trail
    pub trails: BTreeMap<String, Option<Value>>,
    pub opensearch: opensearch::Observed,
    /// region → forwarder function and its invoke permission
    pub functions: BTreeMap<String, lambda::Observed>,
    /// region → the log group's subscription filter to the forwarder
    pub subscription_filters: BTreeMap<String, Option<Value>>,
    /// key ARN → its key policy
    pub key_policies: BTreeMap<String, kms::Observed>,
    /// the reused trail's topic subscription, bucket notification and log group filters
    pub reuse: reuse::Observed,
    /// the forwarder's basic-auth secret
    pub secret: secretsmanager::Observed,
}

/// Observe every resource (read calls only), all at once: one round trip of latency per resource chain
/// instead of one per resource.
pub async fn observe(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Observed> {
    let fw_regions = ctx.forwarder_regions();
    let trail_regions = ctx.trail_regions();
    let dlqs = futures::future::try_join_all(fw_regions.iter().map(|r| async move {
        anyhow::Ok((r.clone(), sqs::observe_forwarder_dlq(ctx, aws, r).await?))
    }));
    let per_region = futures::future::try_join_all(trail_regions.iter().map(|r| async move {
        let (l, t, c) = futures::try_join!(logs::observe(ctx, aws, r), sns::observe(ctx, aws, r), cloudtrail::observe_region(ctx, aws, r))?;
        anyhow::Ok((r.clone(), l, t, c))
    }));
    let forwarders = futures::future::try_join_all(fw_regions.iter().map(|r| async move {
        let (f, s, g) = futures::try_join!(lambda::observe(ctx, aws, r), logs::observe_subscription(ctx, aws, r), logs::observe_forwarder(ctx, aws, r))?;
        anyhow::Ok((r.clone(), f, s, g))
    }));
    let s3 = async {
        match ctx.reuse {
            Some(_) => anyhow::Ok(s3::Observed::default()),
            None => s3::observe(ctx, aws).await,
        }
    };
    let (iam, s3, sqs, dlqs, per_region, search, forwarders, keys, reused, secret) = futures::try_join!(
        iam::observe(ctx, aws),
        s3,
        sqs::observe(ctx, aws),
        dlqs,
        per_region,
        opensearch::observe(ctx, aws),
        forwarders,
        kms::observe(ctx, aws),
        reuse::observe(ctx, aws),
        secretsmanager::observe(ctx, aws),
    )?;
    let mut o = Observed { iam, s3, sqs, opensearch: search, key_policies: keys, reuse: reused, secret, ..Default::default() };
    o.forwarder_dlqs = dlqs.into_iter().collect();
    for (r, l, t, c) in per_region {
        o.log_groups.insert(r.clone(), l);
        o.topics.insert(r, t);
        o.trails.extend(c);
    }
    for (r, f, s, g) in forwarders {
        o.forwarder_log_groups.insert(r.clone(), g);
        o.functions.insert(r.clone(), f);
        o.subscription_filters.insert(r, s);
    }
    Ok(o)
}

/// The plan from what was observed: pure, in dependency order.
pub fn changes(ctx: &Ctx, o: &Observed) -> anyhow::Result<Plan> {
    let mut c: Vec<Change> = Vec::new();
    c.extend(kms::changes(ctx, &o.key_policies));
    // the secret before the forwarder's policy, which names its ARN (apply: same chain, in this order)
    c.extend(secretsmanager::changes(ctx, &o.secret));
    c.extend(iam::changes(ctx, &o.iam, o.secret.arn.as_deref()));
    if ctx.reuse.is_none() {
        c.extend(s3::changes(ctx, &o.s3));
    }
    c.extend(sqs::changes(ctx, &o.sqs));
    for r in ctx.forwarder_regions() {
        c.extend(sqs::forwarder_dlq_changes(ctx, &r, o.forwarder_dlqs.get(&r).cloned().flatten()));
        c.extend(logs::forwarder_changes(ctx, &r, o.forwarder_log_groups.get(&r).cloned().flatten()));
    }
    for r in ctx.trail_regions() {
        c.extend(logs::changes(ctx, &r, o.log_groups.get(&r).cloned().flatten()));
        c.extend(sns::changes(ctx, &r, o.topics.get(&r).cloned().flatten()));
        c.extend(cloudtrail::changes(ctx, &r, &o.trails));
    }
    c.extend(reuse::changes(ctx, &o.reuse)?);
    c.extend(opensearch::changes(ctx, &o.opensearch));
    let endpoint = lambda::opensearch_endpoint(ctx, &o.opensearch);
    let secret_arn = secretsmanager::arn_or_placeholder(ctx, &o.secret);
    for r in ctx.forwarder_regions() {
        let f = o.functions.get(&r).cloned().unwrap_or_default();
        c.extend(lambda::changes(ctx, &r, &endpoint, &secret_arn, &f)?);
        c.extend(logs::subscription_changes(ctx, &r, o.subscription_filters.get(&r).cloned().flatten()));
    }
    Ok(Plan::new(c))
}

/// Build the whole plan. With `aws`, observe each resource (read calls only); without (offline), every
/// resource is planned as a create.
pub async fn plan(ctx: &Ctx, aws: Option<&Aws>) -> anyhow::Result<Plan> {
    let o = match aws {
        Some(a) => observe(ctx, a).await?,
        None => Observed::default(),
    };
    changes(ctx, &o)
}

#[cfg(test)]
pub(crate) fn test_ctx(mode: TrailMode) -> Ctx {
    Ctx {
        stack: "trailsetup".into(),
        account: "123456789012".into(),
        partition: "aws".into(),
        caller_arn: "arn:aws:iam::123456789012:user/admin".into(),
        principal_arn: "arn:aws:iam::123456789012:user/admin".into(),
        home: "us-east-1".into(),
        regions: vec!["us-east-1".into(), "us-west-2".into(), "eu-west-1".into()],
        opt_in_regions: vec![],
        trail_mode: mode,
        bucket: "trailsetup-123456789012-us-east-1".into(),
        kms: None,
        kms_policy_external: false,
        retention_days: 90,
        opensearch: OpenSearchTarget::Url("http://127.0.0.1:9200".into()),
        domain_size: Default::default(),
        opensearch_auth: None,
        index_prefix: "cloudtrail".into(),
        index_granularity: crate::opensearch::layout::Granularity::Day,
        ingest_roles: vec![],
        reuse: None,
        basic_auth: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_fill() {
        for t in [BUCKET_POLICY, TOPIC_POLICY, QUEUE_POLICY, INGEST_POLICY, LOGS_TRUST, LOGS_PERMISSIONS, OPENSEARCH_POLICY, FORWARDER_TRUST, FORWARDER_POLICY] {
            serde_json::from_str::<Value>(t).unwrap();
        }
        let c = test_ctx(TrailMode::PerRegion);
        let p = c.bucket_policy();
        assert!(!p.to_string().contains("${"), "{p}");
        assert_eq!(p["Statement"][0]["Condition"]["StringEquals"]["aws:SourceArn"].as_array().unwrap().len(), 3);
        let t = c.topic_policy("us-west-2");
        assert_eq!(
            t["Statement"][0]["Condition"]["StringEquals"]["aws:SourceArn"],
            json!(["arn:aws:cloudtrail:us-west-2:123456789012:trail/trailsetup-us-west-2"])
        );
        for p in [c.queue_policy(), c.ingest_worker_policy(), c.logs_trust_policy(), c.logs_permissions_policy(), c.opensearch_access_policy("d"), c.forwarder_trust_policy(), c.forwarder_policy()] {
            assert!(!p.to_string().contains("${"), "{p}");
        }
    }

    #[test]
    fn forwarder_policy_names_our_indices_only() {
        let mut c = test_ctx(TrailMode::PerRegion);
        // a non-AWS endpoint: no es: statement
        assert_eq!(c.forwarder_auth(), "none");
        let p = c.forwarder_policy();
        assert!(!p.to_string().contains("es:ESHttp"), "{p}");
        assert_eq!(p["Statement"][1]["Resource"].as_array().unwrap().len(), 3);
        c.opensearch = OpenSearchTarget::Domain("logs".into());
        assert_eq!(c.forwarder_policy()["Statement"][2]["Resource"], "arn:aws:es:us-east-1:123456789012:domain/logs/cloudtrail*");
        c.opensearch = OpenSearchTarget::Url("https://search-my-logs-abc123.eu-west-1.es.amazonaws.com".into());
        assert_eq!(c.forwarder_auth(), "sigv4");
        assert_eq!(c.forwarder_index_arn().unwrap(), "arn:aws:es:eu-west-1:123456789012:domain/my-logs/cloudtrail*");
        c.opensearch_auth = Some(OpenSearchAuth::Basic);
        assert_eq!(c.forwarder_index_arn(), None);
    }

    #[test]
    fn basic_auth_forwarder_reads_one_secret() {
        let mut c = test_ctx(TrailMode::MultiRegion);
        assert!(!c.uses_secret());
        c.opensearch_auth = Some(OpenSearchAuth::Basic);
        assert!(c.uses_secret());
        let sts = statements(&c.forwarder_policy());
        let read = sts.iter().find(|s| s["Sid"] == "ReadOpenSearchSecret").unwrap();
        assert_eq!(read["Action"], "secretsmanager:GetSecretValue");
        assert_eq!(read["Resource"], "arn:aws:secretsmanager:us-east-1:123456789012:secret:trailsetup/opensearch-basic-auth-??????");
        assert!(sts.iter().all(|s| s["Sid"] != "DecryptOpenSearchSecret"), "the AWS managed key needs no statement");
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:trailsetup/opensearch-basic-auth-AbCdEf";
        c.kms = Some(KmsKeys { given: "k".into(), keys: [("us-east-1".to_string(), "arn:aws:kms:us-east-1:123456789012:key/1".to_string())].into(), resolved: true });
        let sts = statements(&c.forwarder_policy_with(Some(arn)));
        assert_eq!(sts.iter().find(|s| s["Sid"] == "ReadOpenSearchSecret").unwrap()["Resource"], arn);
        let dec = sts.iter().find(|s| s["Sid"] == "DecryptOpenSearchSecret").unwrap();
        assert_eq!(dec["Action"], "kms:Decrypt");
        assert_eq!(dec["Resource"], json!(["arn:aws:kms:us-east-1:123456789012:key/1"]));
        assert_eq!(dec["Condition"], json!({"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:SecretARN": arn}}));
        // no forwarder (a reused trail without log group): no secret
        c.reuse = Some(reuse::Reuse { name: "t".into(), ..Default::default() });
        assert!(!c.uses_secret());
    }

    #[test]
    fn iam_encoded_policy_parses() {
        let enc = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(parse_policy(enc).unwrap()["Version"], "2012-10-17");
    }
}
