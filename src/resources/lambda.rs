//! Lambda: the CloudWatch Logs → OpenSearch forwarder in each region whose trail writes to CloudWatch Logs
//! (`templates/forwarder/`, zipped here at apply time), its async on-failure destination, and the permission
//! that lets `logs.amazonaws.com` invoke it for our log group only (SourceArn).
//!
//! Idempotency: the zip is deterministic (fixed order, fixed timestamps, stored), so its SHA-256 — what Lambda
//! reports as `CodeSha256`, base64 — only changes when the forwarder's code does.

use crate::plan::check::{found, Check, Level};
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{DestinationConfig, Environment, FunctionCode, OnFailure, Runtime};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{Aws, Ctx, OpenSearchTarget, TAG_KEY};
use crate::aws::{code, explain};
use crate::plan::{Kind, Action, Change};

pub const RUNTIME: &str = "python3.12";
pub const HANDLER: &str = "forwarder.handler";
pub const TIMEOUT_SECS: i32 = 120;
pub const MEMORY_MB: i32 = 256;
/// Lambda's own retries of a failed asynchronous invocation before the on-failure destination.
pub const MAX_RETRY_ATTEMPTS: i32 = 2;
/// Statement id of the invoke permission for CloudWatch Logs.
pub const LOGS_PERMISSION_SID: &str = "trailsetup-cloudwatch-logs";
const READY_WAIT: Duration = Duration::from_secs(180);

const FORWARDER_PY: &str = include_str!("../../templates/forwarder/forwarder.py");
const CTDOC_PY: &str = include_str!("../../templates/forwarder/ctdoc.py");

/// The deployment package: `forwarder.py` and `ctdoc.py` side by side. Deterministic: same order, the zip
/// epoch as every timestamp, fixed permissions, no compression (so no compressor version can change the bytes).
pub fn code_zip() -> anyhow::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (name, body) in [("ctdoc.py", CTDOC_PY), ("forwarder.py", FORWARDER_PY)] {
        w.start_file(name, opts)?;
        w.write_all(body.as_bytes())?;
    }
    Ok(w.finish()?.into_inner())
}

/// Lambda's `CodeSha256`: base64 of the SHA-256 of the zip.
pub fn code_sha256(zip: &[u8]) -> String {
    aws_smithy_types::base64::encode(Sha256::digest(zip))
}

/// The variable that names the basic-auth secret (the forwarder reads the user and password from it).
pub const SECRET_ARN_VAR: &str = "OPENSEARCH_SECRET_ARN";

/// What an environment variable that looks like a password (a function made by an older trailsetup kept
/// `OPENSEARCH_PASSWORD` there) shows in the plan: its value never reaches the plan or its diff.
const REDACTED: &str = "<redacted: a password in the environment, removed by this plan>";

/// What `OPENSEARCH_URL` will be: the `--opensearch-url`, an existing domain's endpoint, or for a domain that does
/// not exist yet a placeholder resolved at apply time.
pub fn opensearch_endpoint(ctx: &Ctx, o: &super::opensearch::Observed) -> String {
    match &ctx.opensearch {
        OpenSearchTarget::Url(u) => u.trim_end_matches('/').to_string(),
        OpenSearchTarget::Domain(d) => o.endpoint.clone().unwrap_or_else(|| placeholder_endpoint(d)),
    }
}

fn placeholder_endpoint(domain: &str) -> String {
    format!("<endpoint of OpenSearch domain {domain}, known after apply>")
}

async fn domain_endpoint(aws: &Aws, region: &str, domain: &str) -> anyhow::Result<Option<String>> {
    let os = aws_sdk_opensearch::Client::new(&aws.at(region));
    match os.describe_domain().domain_name(domain).send().await {
        Ok(r) => Ok(r.domain_status.filter(|s| s.deleted() != Some(true)).and_then(|s| s.endpoint().map(super::opensearch::endpoint_url))),
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(explain(e, &format!("reading OpenSearch domain {domain}"), "es:DescribeDomain")),
    }
}

/// The standard URL of a queue that may not exist yet (the real one is looked up at apply time).
fn expected_queue_url(ctx: &Ctx, region: &str, name: &str) -> String {
    let suffix = if ctx.partition == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://sqs.{region}.{suffix}/{}/{name}", ctx.account)
}

/// `secret_arn`: the basic-auth secret's ARN, or its placeholder before it exists (used with basic auth only).
pub fn desired_function(ctx: &Ctx, region: &str, opensearch_url: &str, secret_arn: &str, dlq_url: &str, code_sha: &str) -> Value {
    let mut env = Map::new();
    env.insert("OPENSEARCH_URL".into(), json!(opensearch_url));
    env.insert("OPENSEARCH_AUTH".into(), json!(ctx.forwarder_auth()));
    if ctx.forwarder_auth() == "sigv4" {
        // SigV4 is scoped to the domain's region, not the function's own (a per-region forwarder in eu-west-1
        // writing to a us-east-1 domain is refused with "Credential should be scoped to a valid region")
        env.insert("OPENSEARCH_REGION".into(), json!(ctx.opensearch_region()));
    }
    env.insert("INDEX_PREFIX".into(), json!(ctx.index_prefix));
    env.insert("INDEX_GRANULARITY".into(), json!(ctx.index_granularity.as_str()));
    env.insert("DLQ_URL".into(), json!(dlq_url));
    if ctx.forwarder_auth() == "basic" {
        // the user and password stay in Secrets Manager; the function reads them at cold start
        env.insert(SECRET_ARN_VAR.into(), json!(secret_arn));
    }
    json!({
        "runtime": RUNTIME,
        "handler": HANDLER,
        "role": ctx.forwarder_role_arn(),
        "code_sha256": code_sha,
        "timeout": TIMEOUT_SECS,
        "memory_mb": MEMORY_MB,
        "environment": env,
        "on_failure_destination": ctx.queue_arn_in(region, &ctx.forwarder_dlq_name()),
        "maximum_retry_attempts": MAX_RETRY_ATTEMPTS,
        "tags": ctx.tags(),
    })
}

pub fn desired_permission(ctx: &Ctx, region: &str) -> Value {
    json!({
        "statement_id": LOGS_PERMISSION_SID,
        "action": "lambda:InvokeFunction",
        "principal": "logs.amazonaws.com",
        "source_arn": ctx.log_group_arn(region),
        "source_account": ctx.account,
    })
}

fn client(aws: &Aws, region: &str) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&aws.at(region))
}

async fn observe_function(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Option<Value>> {
    let lambda = client(aws, region);
    let name = ctx.forwarder_name();
    let f = match lambda.get_function().function_name(&name).send().await {
        Ok(f) => f,
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading function {name} in {region}"), "lambda:GetFunction")),
    };
    let c = f.configuration().ok_or_else(|| anyhow!("GetFunction {name} in {region}: no configuration"))?;
    let env: Map<String, Value> = c
        .environment()
        .and_then(|e| e.variables())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), if k.to_ascii_uppercase().contains("PASSWORD") { json!(REDACTED) } else { json!(v) }))
                .collect()
        })
        .unwrap_or_default();
    let tag = f.tags().and_then(|t| t.get(TAG_KEY)).map(|t| json!({TAG_KEY: t})).unwrap_or(json!({}));
    let (on_failure, retries) = match lambda.get_function_event_invoke_config().function_name(&name).send().await {
        Ok(r) => (
            r.destination_config().and_then(|d| d.on_failure()).and_then(|o| o.destination()).map(String::from),
            r.maximum_retry_attempts(),
        ),
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => (None, None),
        Err(e) => {
            return Err(explain(
                e,
                &format!("reading the async invoke settings of function {name} in {region}"),
                "lambda:GetFunctionEventInvokeConfig",
            ))
        }
    };
    Ok(Some(json!({
        "runtime": c.runtime().map(|r| r.as_str()),
        "handler": c.handler(),
        "role": c.role(),
        "code_sha256": c.code_sha256(),
        "timeout": c.timeout(),
        "memory_mb": c.memory_size(),
        "environment": env,
        "on_failure_destination": on_failure,
        "maximum_retry_attempts": retries,
        "tags": tag,
    })))
}

async fn observe_permission(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Option<Value>> {
    let lambda = client(aws, region);
    let name = ctx.forwarder_name();
    let p = match lambda.get_policy().function_name(&name).send().await {
        Ok(p) => p,
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading the policy of function {name} in {region}"), "lambda:GetPolicy")),
    };
    let doc = super::parse_policy(p.policy().unwrap_or("{}"))?;
    let statements = super::statements(&doc);
    let Some(st) = statements.iter().find(|s| s["Sid"] == LOGS_PERMISSION_SID) else { return Ok(None) };
    let principal = match &st["Principal"] {
        Value::Object(m) => m.get("Service").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    // condition keys are case-insensitive; Lambda writes `AWS:SourceArn`
    let cond = |op: &str, key: &str| -> Value {
        st["Condition"][op]
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone()))
            .unwrap_or(Value::Null)
    };
    Ok(Some(json!({
        "statement_id": st["Sid"],
        "action": st["Action"],
        "principal": principal,
        "source_arn": cond("ArnLike", "aws:SourceArn"),
        "source_account": cond("StringEquals", "aws:SourceAccount"),
    })))
}

/// The function in a region, as found: its dead-letter queue's URL, the function, its invoke permission.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub dlq_url: Option<String>,
    pub function: Option<Value>,
    pub permission: Option<Value>,
}

pub async fn observe(ctx: &Ctx, aws: &Aws, region: &str) -> anyhow::Result<Observed> {
    let dlq = ctx.forwarder_dlq_name();
    let (dlq_url, function, permission) = futures::try_join!(
        super::sqs::queue_url_in(aws, region, &dlq),
        observe_function(ctx, aws, region),
        observe_permission(ctx, aws, region),
    )?;
    Ok(Observed { dlq_url, function, permission })
}

/// The function and its invoke permission in `region`.
pub fn changes(ctx: &Ctx, region: &str, opensearch_url: &str, secret_arn: &str, o: &Observed) -> anyhow::Result<Vec<Change>> {
    let sha = code_sha256(&code_zip()?);
    let dlq_url = o.dlq_url.clone().unwrap_or_else(|| expected_queue_url(ctx, region, &ctx.forwarder_dlq_name()));
    let name = ctx.forwarder_name();
    Ok(vec![
        Change::diff(Kind::LambdaFunction, &name, region, desired_function(ctx, region, opensearch_url, secret_arn, &dlq_url, &sha), o.function.clone()),
        Change::diff(Kind::LambdaPermission, &name, region, desired_permission(ctx, region), o.permission.clone()),
    ])
}

/// Poll until the function accepts changes and invocations (State not Pending, LastUpdateStatus not InProgress).
async fn wait_ready(lambda: &aws_sdk_lambda::Client, name: &str, region: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let c = lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .map_err(|e| explain(e, &format!("reading function {name} in {region}"), "lambda:GetFunctionConfiguration"))?;
        let pending = c.state().is_some_and(|s| s.as_str() == "Pending");
        let updating = c.last_update_status().is_some_and(|s| s.as_str() == "InProgress");
        if !pending && !updating {
            return Ok(());
        }
        if start.elapsed() > READY_WAIT {
            return Err(anyhow!(
                "function {name} in {region} was still being created/updated after {}s; run init again to finish",
                READY_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The environment as planned, with what apply learned: the queue's URL, the domain's endpoint, the secret's ARN.
fn environment(details: &Value, opensearch_url: String, dlq_url: String, secret_arn: Option<String>) -> Environment {
    let mut b = Environment::builder();
    for (k, v) in details["environment"].as_object().into_iter().flatten() {
        let v = match k.as_str() {
            "OPENSEARCH_URL" => opensearch_url.clone(),
            "DLQ_URL" => dlq_url.clone(),
            SECRET_ARN_VAR => secret_arn.clone().unwrap_or_default(),
            _ => v.as_str().map(String::from).unwrap_or_else(|| v.to_string()),
        };
        b = b.variables(k, v);
    }
    b.build()
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let lambda = client(aws, &c.region);
    let name = &c.name;
    let r = &c.region;
    match c.kind.as_str() {
        "lambda-function" => {
            // what the plan could only guess: the queue's real URL, a new domain's endpoint
            let dlq_url = super::sqs::queue_url_in(aws, r, &ctx.forwarder_dlq_name())
                .await?
                .ok_or_else(|| anyhow!("the forwarder's dead-letter queue {} in {r} does not exist", ctx.forwarder_dlq_name()))?;
            let mut os_url = c.details["environment"]["OPENSEARCH_URL"].as_str().unwrap_or_default().to_string();
            if let OpenSearchTarget::Domain(d) = &ctx.opensearch {
                if os_url.starts_with('<') {
                    os_url = domain_endpoint(aws, &ctx.home, d)
                        .await?
                        .ok_or_else(|| anyhow!("OpenSearch domain {d} has no endpoint yet; run init again once it has one"))?;
                }
            }
            // a secret created earlier in this run: its ARN now
            let mut secret_arn = c.details["environment"][SECRET_ARN_VAR].as_str().map(String::from);
            if secret_arn.as_deref().is_some_and(|a| a.starts_with('<')) {
                secret_arn = Some(super::secretsmanager::secret_arn(ctx, aws).await?.ok_or_else(|| {
                    anyhow!("secret {} does not exist in {}; run init again", ctx.secret_name(), ctx.home)
                })?);
            }
            let env = environment(&c.details, os_url, dlq_url, secret_arn);
            let role = c.details["role"].as_str().unwrap_or_default().to_string();
            let zip = code_zip()?;
            let want_sha = code_sha256(&zip);
            let mut created = false;
            if c.action == Action::Create {
                // a new role takes a few seconds to be assumable by Lambda: that answer is waited out
                let create = || {
                    lambda
                        .create_function()
                        .function_name(name)
                        .runtime(Runtime::from(RUNTIME))
                        .handler(HANDLER)
                        .role(&role)
                        .code(FunctionCode::builder().zip_file(Blob::new(zip.clone())).build())
                        .timeout(TIMEOUT_SECS)
                        .memory_size(MEMORY_MB)
                        .environment(env.clone())
                        .description("trailsetup: CloudWatch Logs subscription -> OpenSearch _bulk")
                        .tags(TAG_KEY, &ctx.stack)
                        .send()
                };
                match crate::aws::eventual::retry("CreateFunction", &format!("function {name} in {r}"), create).await {
                    Ok(_) => created = true,
                    Err(e) if code(&e).as_deref() == Some("ResourceConflictException") => {}
                    Err(e) => return Err(explain(e, &format!("creating function {name} in {r}"), "lambda:CreateFunction")),
                }
                wait_ready(&lambda, name, r).await?;
            }
            if !created {
                let cur_sha = c.current.as_ref().and_then(|v| v["code_sha256"].as_str()).map(String::from);
                if cur_sha.as_deref() != Some(want_sha.as_str()) {
                    lambda
                        .update_function_code()
                        .function_name(name)
                        .zip_file(Blob::new(zip))
                        .send()
                        .await
                        .map_err(|e| explain(e, &format!("updating the code of function {name} in {r}"), "lambda:UpdateFunctionCode"))?;
                    wait_ready(&lambda, name, r).await?;
                }
                lambda
                    .update_function_configuration()
                    .function_name(name)
                    .runtime(Runtime::from(RUNTIME))
                    .handler(HANDLER)
                    .role(&role)
                    .timeout(TIMEOUT_SECS)
                    .memory_size(MEMORY_MB)
                    .environment(env)
                    .send()
                    .await
                    .map_err(|e| explain(e, &format!("configuring function {name} in {r}"), "lambda:UpdateFunctionConfiguration"))?;
                wait_ready(&lambda, name, r).await?;
                lambda
                    .tag_resource()
                    .resource(ctx.forwarder_function_arn(r))
                    .tags(TAG_KEY, &ctx.stack)
                    .send()
                    .await
                    .map_err(|e| explain(e, &format!("tagging function {name} in {r}"), "lambda:TagResource"))?;
            }
            let dest = DestinationConfig::builder()
                .on_failure(OnFailure::builder().destination(ctx.queue_arn_in(r, &ctx.forwarder_dlq_name())).build())
                .build();
            // Lambda checks that the role may send to the destination: its policy was attached moments ago
            let put = || {
                lambda
                    .put_function_event_invoke_config()
                    .function_name(name)
                    .maximum_retry_attempts(MAX_RETRY_ATTEMPTS)
                    .destination_config(dest.clone())
                    .send()
            };
            crate::aws::eventual::retry("PutFunctionEventInvokeConfig", &format!("function {name} in {r}"), put)
                .await
                .map_err(|e| {
                    explain(e, &format!("setting the on-failure destination of function {name} in {r}"), "lambda:PutFunctionEventInvokeConfig")
                })?;
        }
        "lambda-permission" => {
            if c.action == Action::Update {
                match lambda.remove_permission().function_name(name).statement_id(LOGS_PERMISSION_SID).send().await {
                    Ok(_) => {}
                    Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => {}
                    Err(e) => return Err(explain(e, &format!("replacing the permission of function {name} in {r}"), "lambda:RemovePermission")),
                }
            }
            let d = &c.details;
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            match lambda
                .add_permission()
                .function_name(name)
                .statement_id(s("statement_id"))
                .action(s("action"))
                .principal(s("principal"))
                .source_arn(s("source_arn"))
                .source_account(s("source_account"))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if code(&e).as_deref() == Some("ResourceConflictException") => {}
                Err(e) => {
                    return Err(explain(e, &format!("letting CloudWatch Logs invoke function {name} in {r}"), "lambda:AddPermission"))
                }
            }
        }
        other => return Err(anyhow!("lambda cannot apply {other}")),
    }
    Ok(())
}

/// destroy: the invoke permission, or the function (its event invoke config goes with it).
pub async fn delete(_ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let lambda = client(aws, &c.region);
    let r = &c.region;
    let res = if c.kind == crate::plan::Kind::LambdaPermission {
        lambda.remove_permission().function_name(&c.name).statement_id(LOGS_PERMISSION_SID).send().await.map(|_| ())
            .map_err(|e| (code(&e), explain(e, &format!("removing the permission of function {} in {r}", c.name), "lambda:RemovePermission")))
    } else {
        lambda.delete_function().function_name(&c.name).send().await.map(|_| ())
            .map_err(|e| (code(&e), explain(e, &format!("deleting function {} in {r}", c.name), "lambda:DeleteFunction")))
    };
    match res {
        Ok(()) => Ok(()),
        Err((Some(code), _)) if code == "ResourceNotFoundException" => Ok(()),
        Err((_, e)) => Err(e),
    }
}


// --- status ---

pub async fn check(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let mut out = Vec::new();
    for r in ctx.forwarder_regions() {
        let lambda = aws_sdk_lambda::Client::new(&aws.at(&r));
        match lambda.get_function_configuration().function_name(ctx.forwarder_name()).send().await {
            Ok(c) => {
                let state = c.state().map(|s| s.as_str().to_string()).unwrap_or_else(|| "Active".into());
                out.push(if state == "Active" {
                    found("forwarder", ctx.forwarder_name(), &r, Level::Ok, "active", "")
                } else {
                    found("forwarder", ctx.forwarder_name(), &r, Level::Fail, format!("state {state}: {}", c.state_reason().unwrap_or_default()), "run `trailsetup init`")
                });
            }
            Err(e) if crate::aws::code(&e).as_deref() == Some("ResourceNotFoundException") => {} // the resource check says it is missing
            Err(e) => out.push(found("forwarder", ctx.forwarder_name(), &r, Level::Fail, format!("{:#}", crate::aws::explain(e, "reading the forwarder", "lambda:GetFunctionConfiguration")), "")),
        }
    }
    out
}



use crate::permissions as perm;
/// "... for AWS Lambda" (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html): every action used here is on the function. With a domain,
/// the forwarder's endpoint comes from es:DescribeDomain (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonopensearchservice.html: domain).
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("lambda:GetFunction", perm::Res::Function, perm::OBSERVE),
    perm::p("lambda:GetFunctionEventInvokeConfig", perm::Res::Function, perm::OBSERVE),
    perm::p("lambda:GetPolicy", perm::Res::Function, perm::OBSERVE),
    perm::p("lambda:GetFunctionConfiguration", perm::Res::Function, &[perm::Cmd::Init, perm::Cmd::Status]),
    perm::p("lambda:CreateFunction", perm::Res::Function, perm::INIT),
    perm::p("lambda:UpdateFunctionCode", perm::Res::Function, perm::INIT),
    perm::p("lambda:UpdateFunctionConfiguration", perm::Res::Function, perm::INIT),
    perm::p("lambda:TagResource", perm::Res::Function, perm::INIT),
    perm::p("lambda:PutFunctionEventInvokeConfig", perm::Res::Function, perm::INIT),
    perm::p("lambda:AddPermission", perm::Res::Function, perm::INIT),
    perm::p("lambda:RemovePermission", perm::Res::Function, perm::INIT_DESTROY),
    perm::p("lambda:DeleteFunction", perm::Res::Function, perm::DESTROY),
    perm::with(&[perm::Feature::Domain], "es:DescribeDomain", perm::Res::Domain, perm::INIT),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_is_deterministic_and_holds_both_files() {
        let a = code_zip().unwrap();
        let b = code_zip().unwrap();
        assert_eq!(a, b);
        assert_eq!(code_sha256(&a), code_sha256(&b));
        assert_eq!(code_sha256(&a).len(), 44);
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        let names: Vec<String> = z.file_names().map(String::from).collect();
        assert_eq!(names, ["ctdoc.py", "forwarder.py"]);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut z.by_name("forwarder.py").unwrap(), &mut s).unwrap();
        assert!(s.contains("def handler("));
    }

    #[test]
    fn desired_function_environment() {
        let ctx = super::super::test_ctx(crate::cli::TrailMode::PerRegion);
        let d = desired_function(&ctx, "eu-west-1", "http://127.0.0.1:9200", "<secret>", "https://q", "abc");
        assert_eq!(d["environment"]["OPENSEARCH_AUTH"], "none");
        assert!(d["environment"].get(SECRET_ARN_VAR).is_none());
        assert_eq!(d["environment"]["INDEX_PREFIX"], "cloudtrail");
        assert_eq!(d["on_failure_destination"], "arn:aws:sqs:eu-west-1:123456789012:trailsetup-forwarder-dlq");
        let p = desired_permission(&ctx, "eu-west-1");
        assert_eq!(p["source_arn"], "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/cloudtrail/trailsetup:*");
    }

    #[test]
    fn basic_auth_environment_names_the_secret_only() {
        let mut ctx = super::super::test_ctx(crate::cli::TrailMode::MultiRegion);
        ctx.opensearch_auth = Some(crate::cli::OpenSearchAuth::Basic);
        ctx.basic_auth = Some(super::super::secretsmanager::BasicAuth::new("writer", "correct horse battery staple"));
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:trailsetup/opensearch-basic-auth-AbCdEf";
        let d = desired_function(&ctx, "us-east-1", "https://search.example.com", arn, "https://q", "abc");
        let keys: Vec<&str> = d["environment"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["DLQ_URL", "INDEX_GRANULARITY", "INDEX_PREFIX", "OPENSEARCH_AUTH", "OPENSEARCH_SECRET_ARN", "OPENSEARCH_URL"]);
        assert_eq!(d["environment"]["OPENSEARCH_AUTH"], "basic");
        assert_eq!(d["environment"][SECRET_ARN_VAR], arn);
        assert!(!d.to_string().contains("horse"));
        // the placeholder of a secret made by this apply is replaced by its ARN
        let mut planned = d.clone();
        planned["environment"][SECRET_ARN_VAR] = json!("<ARN of secret trailsetup/opensearch-basic-auth, known after apply>");
        let env = environment(&planned, "https://search.example.com".into(), "https://q2".into(), Some(arn.into()));
        let vars = env.variables().unwrap();
        assert_eq!((vars[SECRET_ARN_VAR].as_str(), vars["DLQ_URL"].as_str()), (arn, "https://q2"));
        assert_eq!(vars.len(), 6);
    }
}
