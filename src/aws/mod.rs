//! AWS client construction (profile, region, endpoint, retries) and error classification.

pub mod ec2;
pub mod eventual;
pub mod rpc;
pub mod sigv4;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::settings::Common;

/// Standard retries, up to 6 attempts. AWS recommends standard mode for all workloads: adaptive mode adds a
/// client-side rate limiter that may delay even first attempts, and suits only a client of one throttled resource
/// (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html). Measured here: adaptive mode
/// held 16 concurrent SendMessageBatch calls to about 7 a second.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(6)
}

/// Shared SDK config: `--profile`/`AWS_PROFILE`, `--region`/`AWS_REGION`, `--endpoint-url`/`AWS_ENDPOINT_URL`,
/// standard retries.
pub async fn sdk_config(common: &Common) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry_config());
    if let Some(p) = &common.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &common.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &common.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

/// rustls's process-wide crypto provider: aws-lc-rs, the one the AWS SDK links (reqwest and the Dashboards proxy
/// are built without a provider of their own). Idempotent: an `Err` only means one is installed already.
pub fn ensure_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The same config for another region.
pub fn in_region(cfg: &SdkConfig, region: &str) -> SdkConfig {
    cfg.to_builder().region(Region::new(region.to_string())).build()
}

/// S3 client; path-style addressing when an endpoint override is set (emulators, S3-compatible stores).
pub fn s3(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    let mut b = aws_sdk_s3::config::Builder::from(cfg);
    if cfg.endpoint_url().is_some() {
        b = b.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

/// The AWS error code of an SDK error, if the service sent one.
pub fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<String> {
    match e {
        SdkError::ServiceError(s) => s.err().code().map(String::from),
        _ => None,
    }
}

/// Turn an SDK error into a message that says what failed, AWS's code and message, and what to do.
///
/// `permission` is the IAM action the call needs; [`crate::permissions`] checks that every one named here is
/// declared. A refusal is recognised by its code or by HTTP 403 alone: some endpoints (moto, for one) answer a
/// JSON-protocol call with a Query-style XML error the SDK cannot parse, whose code and message are then read
/// from the body.
pub fn explain<E>(e: SdkError<E, HttpResponse>, what: &str, permission: &str) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, msg, status) = match &e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let mut code = s.err().code().unwrap_or("Unknown").to_string();
            let mut msg = s.err().message().unwrap_or_default().to_string();
            if code == "Unknown" {
                let body = s.raw().body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                if let (Some(c), m) = rpc::parse_error(&body, None) {
                    code = c;
                    if msg.is_empty() {
                        msg = m;
                    }
                }
            }
            (code, msg, status)
        }
        SdkError::DispatchFailure(d) => {
            return anyhow::anyhow!(
                "{what}: could not reach AWS ({d:?}); check the network, --region and --endpoint-url/AWS_ENDPOINT_URL"
            )
        }
        SdkError::TimeoutError(_) => return anyhow::anyhow!("{what}: timed out talking to AWS; check the network and retry"),
        // an error answer the SDK could not parse (an endpoint answering a JSON-protocol call in XML): read its
        // code and message from the body, and know a refusal by its status
        SdkError::ResponseError(r) if r.raw().status().as_u16() >= 400 => {
            let body = r.raw().body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            let (code, msg) = rpc::parse_error(&body, None);
            (code.unwrap_or_else(|| "Unknown".into()), msg, r.raw().status().as_u16())
        }
        other => return anyhow::anyhow!("{what}: {}", aws_smithy_types::error::display::DisplayErrorContext(other)),
    };
    explain_code(what, &code, &msg, status, permission)
}

/// [`explain`] for an answer read without the SDK ([`ec2`]): AWS's code and message, and what to do.
pub fn explain_code(what: &str, code: &str, msg: &str, status: u16, permission: &str) -> anyhow::Error {
    let mut hint = hint_for(code, permission);
    if hint.is_empty() && status == 403 {
        hint = hint_for("AccessDenied", permission);
    }
    anyhow::anyhow!("{what}: {code}: {msg}{hint}")
}


/// The words of [`hint_for`]'s answer to a refusal, by which [`is_refusal`] knows one.
const REFUSAL_HINT: &str = "the caller needs the IAM permission";

/// Is this error (from [`explain`]) a refusal: a permission the caller lacks, which retrying will not change?
pub fn is_refusal(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains(REFUSAL_HINT)
}

/// What to do about an AWS error code.
pub fn hint_for(code: &str, permission: &str) -> String {
    match code {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError" | "Forbidden" => {
            format!("\n  → {REFUSAL_HINT} {permission} (`trailsetup permissions --for COMMAND` prints the policy; docs/init.md, \"IAM permissions\")")
        }
        "ExpiredToken" | "ExpiredTokenException" | "InvalidClientTokenId" | "UnrecognizedClientException" | "SignatureDoesNotMatch" => {
            "\n  → the AWS credentials are invalid or expired; refresh them (aws sso login, or --profile)".into()
        }
        "NoSuchBucket" => "\n  → check --bucket (or run `trailsetup init` first so the state file names it)".into(),
        "BucketAlreadyExists" => "\n  → that bucket name belongs to another account; pass another --bucket".into(),
        "OptInRequired" | "InvalidRegion" | "UnrecognizedRegion" => {
            "\n  → that region is not enabled for this account; drop it from --regions or enable it".into()
        }
        _ => String::new(),
    }
}

/// The same config with the credentials of `role`, assumed with STS (refreshed before they expire): how
/// `backfill` and `ingest` read a log archive bucket of another account (`--source-role`). The role's trust
/// policy must admit the caller, and the caller needs `sts:AssumeRole` on it ("Granting a user permissions to
/// switch roles").
pub async fn with_role(cfg: &SdkConfig, role: &str) -> SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role).session_name("trailsetup-reader").configure(cfg).build().await;
    cfg.to_builder().credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider)).build()
}

/// Who is calling, from STS (never iam:GetUser, which fails under roles).
pub async fn identity(cfg: &aws_config::SdkConfig) -> anyhow::Result<(String, String, String)> {
    let r = aws_sdk_sts::Client::new(cfg)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| crate::aws::explain(e, "finding out who is calling (STS GetCallerIdentity)", "sts:GetCallerIdentity"))?;
    let account = r.account().unwrap_or_default().to_string();
    let arn = r.arn().unwrap_or_default().to_string();
    let partition = arn.split(':').nth(1).filter(|p| !p.is_empty()).unwrap_or("aws").to_string();
    Ok((account, partition, arn))
}

/// Regions enabled for the account (opt-in status respected), in the caller's partition only; and which of them
/// are opt-in regions (status `opted-in`).
pub async fn enabled_regions(cfg: &aws_config::SdkConfig, partition: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let all = ec2::describe_regions(cfg).await?;
    let ours: Vec<&ec2::Region> = all.iter().filter(|r| partition_of_region(&r.name) == partition).collect();
    let mut v: Vec<String> =
        ours.iter().filter(|r| matches!(r.opt_in_status.as_str(), "opt-in-not-required" | "opted-in")).map(|r| r.name.clone()).collect();
    v.sort();
    let opted: Vec<String> = ours.iter().filter(|r| r.opt_in_status == "opted-in").map(|r| r.name.clone()).collect();
    Ok((v, opted))
}


/// The partition a region belongs to, by its name.
pub fn partition_of_region(r: &str) -> &'static str {
    if r.starts_with("cn-") {
        "aws-cn"
    } else if r.starts_with("us-gov-") {
        "aws-us-gov"
    } else if r.starts_with("us-isob-") {
        "aws-iso-b"
    } else if r.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}


use crate::permissions as perm;
/// The IAM actions of this module's calls (assembled by `trailsetup permissions`). sts:GetCallerIdentity needs
/// no permission and has no resource ("Actions, resources, and condition keys for AWS Security Token Service",
/// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssecuritytokenservice.html); ec2:DescribeRegions has no resource type ("... for Amazon EC2",
/// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html): both `*`.
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("sts:GetCallerIdentity", perm::Res::Any, perm::ALL),
    perm::p("ec2:DescribeRegions", perm::Res::Any, perm::INIT_DESTROY),
];

#[cfg(test)]
mod tests {
    use aws_config::retry::RetryMode;

    /// AWS SDKs and Tools reference, "Retry behavior"
    /// (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html): standard mode is the
    /// recommendation for all workloads; adaptive mode can delay initial requests.
    #[test]
    fn retries_are_standard_mode() {
        let r = super::retry_config();
        assert_eq!(r.mode(), RetryMode::Standard);
        assert_eq!(r.max_attempts(), 6);
    }
}
