//! The few control-plane calls trailsetup signs and sends itself, instead of through a generated SDK client.
//!
//! Four services are called for one to three operations each: EC2 (`DescribeRegions`), Systems Manager (the
//! stack's lock: `PutParameter`, `GetParameter`, `DeleteParameter`), CloudWatch (`GetMetricData` for `status`)
//! and Organizations (`DescribeOrganization`). Their generated crates cost 1,090 s of the CPU time of a cold
//! build (aws-sdk-ec2 655 s alone, then ssm 184, cloudwatch 96, organizations 68: `cargo build --timings`), for
//! six calls. Here each call is what the SDK puts on the wire, signed with `aws-sigv4`, sent with the reqwest
//! client trailsetup already uses for OpenSearch, and its answer read with `aws-smithy-xml` (the SDK's XML reader)
//! or serde_json. What the generated client would do around the call is kept:
//! - **credentials, region, FIPS and dual-stack** come from the shared [`SdkConfig`];
//! - **the endpoint** is chosen as the generated client chooses it: one set in code wins, then the service's own
//!   (`AWS_ENDPOINT_URL_<SERVICE>`, or `endpoint_url` in the profile's `services` section), then
//!   `AWS_ENDPOINT_URL`, then the service's endpoint rules ([`Service::endpoint`], each checked against the test
//!   cases of its rule set as shipped with the SDK crate);
//! - **the protocol**: the Query protocol (form body `Action=…&Version=…`, XML answer: EC2, CloudWatch) or JSON
//!   1.1 (`X-Amz-Target: <prefix>.<Operation>`, JSON answer: SSM, Organizations);
//! - **retries** follow the standard mode: throttling and transient answers (and no answer at all) are retried with
//!   exponential backoff and full jitter, capped at 20 s, up to the config's attempts (AWS SDKs and Tools
//!   Reference Guide, "Retry behavior");
//! - **errors** keep AWS's code and message ([`Error::code`]), and are explained like every other AWS error
//!   ([`Error::explain`] names the IAM permission).

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_xml::decode::{try_data, Document, ScopedDecoder};

/// How a service is called.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// AWS Query: `POST /`, form body with `Action` and `Version`, XML answer
    Query { version: &'static str },
    /// AWS JSON 1.1: `POST /`, `X-Amz-Target: <prefix>.<Operation>`, JSON body and answer
    Json11 { target_prefix: &'static str },
}

/// How a service's endpoint is derived from the region (its endpoint rule set, reduced to what differs).
#[derive(Debug, Clone, Copy)]
enum Rules {
    /// `<prefix>[-fips].<region>.<suffix>`; GovCloud's FIPS endpoint is the plain host (EC2, SSM)
    Regional,
    /// the same, but GovCloud's FIPS endpoints never carry `-fips`, with or without dual-stack (CloudWatch)
    RegionalGovNeverFips,
    /// one endpoint per partition, in its global region, signed for that region (Organizations)
    Global,
}

/// A service trailsetup calls without its SDK crate.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// the SDK's service id, as in `AWS_ENDPOINT_URL_<ID>` and a profile's `services` section
    pub id: &'static str,
    /// the host prefix, which is also the SigV4 signing name
    pub prefix: &'static str,
    pub protocol: Protocol,
    rules: Rules,
}

pub const EC2: Service = Service { id: "EC2", prefix: "ec2", protocol: Protocol::Query { version: "2016-11-15" }, rules: Rules::Regional };
pub const SSM: Service = Service { id: "SSM", prefix: "ssm", protocol: Protocol::Json11 { target_prefix: "AmazonSSM" }, rules: Rules::Regional };
pub const CLOUDWATCH: Service =
    Service { id: "CloudWatch", prefix: "monitoring", protocol: Protocol::Query { version: "2010-08-01" }, rules: Rules::RegionalGovNeverFips };
pub const ORGANIZATIONS: Service = Service {
    id: "Organizations",
    prefix: "organizations",
    protocol: Protocol::Json11 { target_prefix: "AWSOrganizationsV20161128" },
    rules: Rules::Global,
};

/// The partition of a region, as the endpoint rules know it: (DNS suffix, dual-stack DNS suffix, global region).
fn partition(region: &str) -> (&'static str, Option<&'static str>, &'static str) {
    if region.starts_with("cn-") {
        ("amazonaws.com.cn", Some("api.amazonwebservices.com.cn"), "cn-northwest-1")
    } else if region.starts_with("us-gov-") {
        ("amazonaws.com", Some("api.aws"), "us-gov-west-1")
    } else if region.starts_with("us-isob-") {
        ("sc2s.sgov.gov", None, "us-isob-east-1")
    } else if region.starts_with("us-isof-") {
        ("csp.hci.ic.gov", None, "us-isof-south-1")
    } else if region.starts_with("us-iso-") {
        ("c2s.ic.gov", None, "us-iso-east-1")
    } else if region.starts_with("eu-isoe-") {
        ("cloud.adc-e.uk", None, "eu-isoe-west-1")
    } else if region.starts_with("eusc-") {
        ("amazonaws.eu", None, "eusc-de-east-1")
    } else {
        ("amazonaws.com", Some("api.aws"), "us-east-1")
    }
}

impl Service {
    /// The endpoint by the service's rules for `region`, and the region requests to it are signed for.
    pub fn endpoint(&self, region: &str, fips: bool, dual_stack: bool) -> anyhow::Result<(String, String)> {
        let (dns, dual_dns, global) = partition(region);
        let region = match self.rules {
            Rules::Global => global,
            _ => region,
        };
        let suffix = if dual_stack {
            dual_dns.ok_or_else(|| anyhow!("dual-stack is enabled but {region}'s partition does not support it; unset AWS_USE_DUALSTACK_ENDPOINT"))?
        } else {
            dns
        };
        let gov = region.starts_with("us-gov-");
        let fips_host = match self.rules {
            Rules::Regional => fips && (!gov || dual_stack),
            Rules::RegionalGovNeverFips | Rules::Global => fips && !gov,
        };
        let host = if fips_host { format!("{}-fips", self.prefix) } else { self.prefix.to_string() };
        Ok((format!("https://{host}.{region}.{suffix}"), region.to_string()))
    }

    /// The endpoint the generated client would use, in its order, and the region to sign for.
    fn resolve(&self, cfg: &SdkConfig) -> anyhow::Result<(String, String)> {
        let region = cfg.region().map(|r| r.to_string()).ok_or_else(|| anyhow!("no region; pass --region or set AWS_REGION"))?;
        let configured = if cfg.get_origin("endpoint_url").is_client_config() {
            cfg.endpoint_url().map(String::from)
        } else {
            let key = aws_types::service_config::ServiceConfigKey::builder()
                .service_id(self.id)
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .expect("every field is set");
            cfg.service_config().and_then(|c| c.load_config(key)).or_else(|| cfg.endpoint_url().map(String::from))
        };
        let (rules_url, signing_region) = self.endpoint(&region, cfg.use_fips().unwrap_or(false), cfg.use_dual_stack().unwrap_or(false))?;
        // a configured endpoint (an emulator, a VPC endpoint) is signed for the client's region: the rule sets
        // return it without an auth scheme of their own
        Ok(match configured {
            Some(url) => (url, region),
            None => (rules_url, signing_region),
        })
    }
}

/// AWS's answer to a call that failed, or why there was none.
#[derive(Debug)]
pub enum Error {
    /// the service answered with an error: its HTTP status, code (e.g. `ParameterNotFound`) and message
    Service { status: u16, code: Option<String>, message: String },
    /// no answer (network), or the request could not be made (no credentials)
    Other(anyhow::Error),
}

impl Error {
    /// AWS's error code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Service { code, .. } => code.as_deref(),
            Error::Other(_) => None,
        }
    }

    /// What failed, AWS's code and message, and what to do (the IAM `permission` on a refusal), as
    /// [`crate::aws::explain`] says it for SDK errors.
    pub fn explain(self, what: &str, permission: &str) -> anyhow::Error {
        match self {
            Error::Service { status, code, message } => crate::aws::explain_code(what, code.as_deref().unwrap_or("Unknown"), &message, status, permission),
            Error::Other(e) => anyhow!("{what}: {e:#}"),
        }
    }
}

/// The parameters of one call: form fields (Query) or the JSON body (JSON 1.1).
pub enum Params {
    Form(Vec<(String, String)>),
    Json(serde_json::Value),
}

/// Call `operation` of `svc` with `params`; the answer's body (XML for Query, JSON for JSON 1.1).
pub async fn call(cfg: &SdkConfig, svc: &Service, operation: &str, params: Params) -> Result<String, Error> {
    let (endpoint, signing_region) = svc.resolve(cfg).map_err(Error::Other)?;
    let url = url::Url::parse(&endpoint).with_context(|| format!("the {} endpoint {endpoint:?} is not a URL", svc.id)).map_err(Error::Other)?;
    let mut headers = http::HeaderMap::new();
    let body = match (svc.protocol, params) {
        (Protocol::Query { version }, Params::Form(fields)) => {
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-www-form-urlencoded"));
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", operation).append_pair("Version", version);
            for (k, v) in &fields {
                form.append_pair(k, v);
            }
            form.finish()
        }
        (Protocol::Json11 { target_prefix }, Params::Json(v)) => {
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-amz-json-1.1"));
            headers.insert("x-amz-target", http::HeaderValue::from_str(&format!("{target_prefix}.{operation}")).map_err(|e| Error::Other(e.into()))?);
            v.to_string()
        }
        _ => return Err(Error::Other(anyhow!("{} {operation}: parameters of the wrong protocol", svc.id))),
    };
    let client = http_client().map_err(|e| Error::Other(anyhow!("{e}")))?;
    let attempts = cfg.retry_config().map(|r| r.max_attempts()).unwrap_or(3).max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = send(client, cfg, svc, &url, &signing_region, headers.clone(), &body).await;
        let retry = match &outcome {
            Ok(_) => false,
            Err(Sent::Answer(Error::Service { status, code, .. })) => is_retryable(*status, code.as_deref()),
            Err(Sent::Answer(Error::Other(_))) => false,
            Err(Sent::NoAnswer(_)) => true,
        };
        if !retry || attempt >= attempts {
            return outcome.map_err(|e| match e {
                Sent::Answer(e) => e,
                Sent::NoAnswer(e) => Error::Other(anyhow!(
                    "could not reach AWS at {url} ({e}); check the network, --region and --endpoint-url/AWS_ENDPOINT_URL"
                )),
            });
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// One HTTP client for every call of the process (its connection pool and roots are built once: the lock polls).
fn http_client() -> Result<&'static reqwest::Client, &'static str> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::aws::ensure_tls_provider();
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60))
                .user_agent(concat!("trailsetup/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| e.as_str())
}

enum Sent {
    Answer(Error),
    /// the request got no answer (connect, TLS, timeout): retried
    NoAnswer(reqwest::Error),
}

async fn send(
    client: &reqwest::Client,
    cfg: &SdkConfig,
    svc: &Service,
    url: &url::Url,
    signing_region: &str,
    mut headers: http::HeaderMap,
    body: &str,
) -> Result<String, Sent> {
    let credentials = cfg
        .credentials_provider()
        .ok_or_else(|| Sent::Answer(Error::Other(anyhow!("no AWS credentials; set AWS_PROFILE / --profile"))))?
        .provide_credentials()
        .await
        .map_err(|e| Sent::Answer(Error::Other(anyhow!("no AWS credentials ({e}); set AWS_PROFILE / --profile, or refresh them (aws sso login)"))))?;
    let host = crate::opensearch::client::host_header(url);
    let signable = aws_sigv4::http_request::SignableBody::Bytes(body.as_bytes());
    crate::aws::sigv4::sign(&mut headers, "POST", url.as_str(), &host, signable, svc.prefix, signing_region, credentials, false)
        .map_err(|e| Sent::Answer(Error::Other(anyhow!("could not sign the request: {e:#}"))))?;
    let resp = client.post(url.clone()).headers(headers).body(body.to_string()).send().await.map_err(Sent::NoAnswer)?;
    let status = resp.status();
    let error_type = resp.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(String::from);
    let text = resp.text().await.map_err(Sent::NoAnswer)?;
    if status.is_success() {
        return Ok(text);
    }
    let (code, message) = parse_error(&text, error_type.as_deref());
    Err(Sent::Answer(Error::Service { status: status.as_u16(), code, message }))
}

/// The standard retry mode's classes: throttling codes and transient answers (AWS SDKs and Tools Reference
/// Guide, "Retry behavior"; the codes are those the SDKs' standard retry classifiers list).
fn is_retryable(status: u16, code: Option<&str>) -> bool {
    const THROTTLING: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    ];
    const TRANSIENT: &[&str] = &["RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"];
    matches!(status, 500 | 502 | 503 | 504) || code.is_some_and(|c| THROTTLING.contains(&c) || TRANSIENT.contains(&c))
}

/// Exponential backoff with full jitter, `rand(0..1) × 2^attempt` seconds capped at 20 s (the standard retry
/// mode's formula), scaled by `TRAILSETUP_RETRY_SCALE` like every other wait (a test switch).
fn backoff(attempt: u32) -> Duration {
    let scale = super::eventual::scale();
    let base = 2f64.powi(attempt.min(10) as i32).min(20.0);
    Duration::from_secs_f64(fastrand::f64() * base * scale)
}

/// AWS's error code and message, from any of its error bodies: JSON (`__type`, or the `x-amzn-ErrorType` header;
/// `message` or `Message`), EC2's `<Response><Errors><Error>`, the Query protocol's `<ErrorResponse><Error>`.
/// A body that is none of these (a proxy's page) gives no code and its first 200 characters.
pub(crate) fn parse_error(body: &str, error_type: Option<&str>) -> (Option<String>, String) {
    // `aws.protocoltests#Code:http://…` and `com.amazonaws.ssm#ParameterNotFound` both mean the part after `#`,
    // before `:` (the AWS JSON protocols' error type rule)
    let clean = |t: &str| t.rsplit('#').next().unwrap_or(t).split(':').next().unwrap_or(t).trim().to_string();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let code = error_type.map(clean).or_else(|| v.get("__type").and_then(|t| t.as_str()).map(clean)).filter(|c| !c.is_empty());
        let message = v.get("message").or_else(|| v.get("Message")).and_then(|m| m.as_str()).unwrap_or_default().to_string();
        if code.is_some() {
            return (code, message);
        }
    }
    fn code_and_message(error: &mut ScopedDecoder) -> Option<(Option<String>, String)> {
        let [code, message] = xml_fields(error, ["Code", "Message"]).ok()?;
        Some((code, message.unwrap_or_default()))
    }
    fn find_error(el: &mut ScopedDecoder) -> Option<(Option<String>, String)> {
        while let Some(mut child) = el.next_tag() {
            if child.start_el().matches("Error") {
                return code_and_message(&mut child);
            }
            if child.start_el().matches("Errors") {
                if let Some(found) = find_error(&mut child) {
                    return Some(found);
                }
            }
        }
        None
    }
    let mut doc = Document::new(body);
    let from_xml = doc.root_element().ok().and_then(|mut root| {
        if root.start_el().matches("Error") {
            // S3's shape, a root <Error>
            code_and_message(&mut root)
        } else {
            find_error(&mut root)
        }
    });
    match from_xml {
        Some((Some(code), message)) => (Some(code), message),
        _ => (error_type.map(clean).filter(|c| !c.is_empty()), body.chars().take(200).collect()),
    }
}

/// The text of every `<tag>` under the path `path` of an XML answer, e.g. `["regionInfo", "item"]`: the caller's
/// `read` gets each matching element and reads its fields.
pub fn xml_items<T>(xml: &str, root: &str, path: &[&str], mut read: impl FnMut(&mut ScopedDecoder) -> anyhow::Result<Option<T>>) -> anyhow::Result<Vec<T>> {
    fn walk<T>(el: &mut ScopedDecoder, path: &[&str], out: &mut Vec<T>, read: &mut dyn FnMut(&mut ScopedDecoder) -> anyhow::Result<Option<T>>) -> anyhow::Result<()> {
        while let Some(mut child) = el.next_tag() {
            if !child.start_el().matches(path[0]) {
                continue;
            }
            if path.len() == 1 {
                if let Some(t) = read(&mut child)? {
                    out.push(t);
                }
            } else {
                walk(&mut child, &path[1..], out, read)?;
            }
        }
        Ok(())
    }
    let mut doc = Document::new(xml);
    let mut top = doc.root_element()?;
    if !top.start_el().matches(root) {
        anyhow::bail!("expected {root}, got {:?}", top.start_el().local());
    }
    let mut out = Vec::new();
    walk(&mut top, path, &mut out, &mut read)?;
    Ok(out)
}

/// The text of each direct child of `el` named in `names`, in that order (a field absent is `None`).
pub fn xml_fields<const N: usize>(el: &mut ScopedDecoder, names: [&str; N]) -> anyhow::Result<[Option<String>; N]> {
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    while let Some(mut field) = el.next_tag() {
        if let Some(i) = names.iter().position(|n| field.start_el().matches(n)) {
            out[i] = Some(try_data(&mut field)?.into_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test cases of each service's endpoint rule set, as shipped with its SDK crate (`config/endpoint.rs` of
    /// aws-sdk-ec2 1.274, aws-sdk-ssm, aws-sdk-cloudwatch 1.140, aws-sdk-organizations): region, FIPS, dual-stack →
    /// URL (and, for Organizations, the signing region).
    #[test]
    fn endpoints_follow_each_rule_set_test_cases() {
        let cases: &[(&Service, &str, bool, bool, &str)] = &[
            (&EC2, "af-south-1", false, false, "https://ec2.af-south-1.amazonaws.com"),
            (&EC2, "ap-south-1", false, true, "https://ec2.ap-south-1.api.aws"),
            (&EC2, "ca-central-1", true, false, "https://ec2-fips.ca-central-1.amazonaws.com"),
            (&EC2, "us-east-1", false, false, "https://ec2.us-east-1.amazonaws.com"),
            (&EC2, "us-east-1", true, false, "https://ec2-fips.us-east-1.amazonaws.com"),
            (&EC2, "us-east-1", false, true, "https://ec2.us-east-1.api.aws"),
            (&EC2, "us-east-1", true, true, "https://ec2-fips.us-east-1.api.aws"),
            (&EC2, "cn-north-1", false, false, "https://ec2.cn-north-1.amazonaws.com.cn"),
            (&EC2, "cn-north-1", true, true, "https://ec2-fips.cn-north-1.api.amazonwebservices.com.cn"),
            (&EC2, "cn-north-1", true, false, "https://ec2-fips.cn-north-1.amazonaws.com.cn"),
            (&EC2, "cn-north-1", false, true, "https://ec2.cn-north-1.api.amazonwebservices.com.cn"),
            (&EC2, "us-gov-east-1", false, false, "https://ec2.us-gov-east-1.amazonaws.com"),
            (&EC2, "us-gov-east-1", true, true, "https://ec2-fips.us-gov-east-1.api.aws"),
            (&EC2, "us-gov-east-1", true, false, "https://ec2.us-gov-east-1.amazonaws.com"),
            (&EC2, "us-gov-east-1", false, true, "https://ec2.us-gov-east-1.api.aws"),
            (&EC2, "us-iso-east-1", false, false, "https://ec2.us-iso-east-1.c2s.ic.gov"),
            (&EC2, "us-iso-east-1", true, false, "https://ec2-fips.us-iso-east-1.c2s.ic.gov"),
            (&EC2, "us-isob-east-1", false, false, "https://ec2.us-isob-east-1.sc2s.sgov.gov"),
            (&EC2, "us-isob-east-1", true, false, "https://ec2-fips.us-isob-east-1.sc2s.sgov.gov"),
            (&SSM, "eu-west-1", false, false, "https://ssm.eu-west-1.amazonaws.com"),
            (&SSM, "us-west-2", true, false, "https://ssm-fips.us-west-2.amazonaws.com"),
            (&SSM, "us-east-1", true, true, "https://ssm-fips.us-east-1.api.aws"),
            (&SSM, "us-east-1", false, true, "https://ssm.us-east-1.api.aws"),
            (&SSM, "cn-northwest-1", false, false, "https://ssm.cn-northwest-1.amazonaws.com.cn"),
            (&SSM, "cn-north-1", true, true, "https://ssm-fips.cn-north-1.api.amazonwebservices.com.cn"),
            (&SSM, "us-gov-west-1", true, false, "https://ssm.us-gov-west-1.amazonaws.com"),
            (&SSM, "us-gov-east-1", true, true, "https://ssm-fips.us-gov-east-1.api.aws"),
            (&SSM, "us-gov-east-1", false, true, "https://ssm.us-gov-east-1.api.aws"),
            (&SSM, "us-iso-east-1", true, false, "https://ssm-fips.us-iso-east-1.c2s.ic.gov"),
            (&SSM, "us-isob-east-1", false, false, "https://ssm.us-isob-east-1.sc2s.sgov.gov"),
            (&CLOUDWATCH, "us-east-1", true, true, "https://monitoring-fips.us-east-1.api.aws"),
            (&CLOUDWATCH, "us-east-1", true, false, "https://monitoring-fips.us-east-1.amazonaws.com"),
            (&CLOUDWATCH, "us-east-1", false, true, "https://monitoring.us-east-1.api.aws"),
            (&CLOUDWATCH, "us-east-1", false, false, "https://monitoring.us-east-1.amazonaws.com"),
            (&CLOUDWATCH, "cn-northwest-1", true, true, "https://monitoring-fips.cn-northwest-1.api.amazonwebservices.com.cn"),
            (&CLOUDWATCH, "cn-northwest-1", false, false, "https://monitoring.cn-northwest-1.amazonaws.com.cn"),
            (&CLOUDWATCH, "eusc-de-east-1", true, false, "https://monitoring-fips.eusc-de-east-1.amazonaws.eu"),
            (&CLOUDWATCH, "eusc-de-east-1", false, false, "https://monitoring.eusc-de-east-1.amazonaws.eu"),
            (&CLOUDWATCH, "us-iso-east-1", true, false, "https://monitoring-fips.us-iso-east-1.c2s.ic.gov"),
            (&CLOUDWATCH, "us-isob-east-1", false, false, "https://monitoring.us-isob-east-1.sc2s.sgov.gov"),
            (&CLOUDWATCH, "eu-isoe-west-1", true, false, "https://monitoring-fips.eu-isoe-west-1.cloud.adc-e.uk"),
            (&CLOUDWATCH, "us-isof-south-1", false, false, "https://monitoring.us-isof-south-1.csp.hci.ic.gov"),
            (&CLOUDWATCH, "us-gov-west-1", true, true, "https://monitoring.us-gov-west-1.api.aws"),
            (&CLOUDWATCH, "us-gov-west-1", true, false, "https://monitoring.us-gov-west-1.amazonaws.com"),
            (&CLOUDWATCH, "us-gov-west-1", false, true, "https://monitoring.us-gov-west-1.api.aws"),
            (&ORGANIZATIONS, "us-east-1", true, true, "https://organizations-fips.us-east-1.api.aws"),
            (&ORGANIZATIONS, "us-east-1", true, false, "https://organizations-fips.us-east-1.amazonaws.com"),
            (&ORGANIZATIONS, "us-east-1", false, true, "https://organizations.us-east-1.api.aws"),
            (&ORGANIZATIONS, "us-east-1", false, false, "https://organizations.us-east-1.amazonaws.com"),
            (&ORGANIZATIONS, "cn-northwest-1", true, false, "https://organizations-fips.cn-northwest-1.amazonaws.com.cn"),
            (&ORGANIZATIONS, "cn-northwest-1", false, true, "https://organizations.cn-northwest-1.api.amazonwebservices.com.cn"),
            (&ORGANIZATIONS, "us-iso-east-1", true, false, "https://organizations-fips.us-iso-east-1.c2s.ic.gov"),
            (&ORGANIZATIONS, "us-isob-east-1", false, false, "https://organizations.us-isob-east-1.sc2s.sgov.gov"),
            (&ORGANIZATIONS, "eu-isoe-west-1", false, false, "https://organizations.eu-isoe-west-1.cloud.adc-e.uk"),
            (&ORGANIZATIONS, "us-gov-west-1", true, true, "https://organizations.us-gov-west-1.api.aws"),
            (&ORGANIZATIONS, "us-gov-west-1", true, false, "https://organizations.us-gov-west-1.amazonaws.com"),
            (&ORGANIZATIONS, "us-gov-west-1", false, false, "https://organizations.us-gov-west-1.amazonaws.com"),
        ];
        for (svc, region, fips, dual, want) in cases {
            let (url, signing) = svc.endpoint(region, *fips, *dual).unwrap();
            assert_eq!(url, *want, "{} {region} fips={fips} dual={dual}", svc.id);
            assert_eq!(&signing, region, "{} signs for the endpoint's region", svc.id);
        }
        // Organizations is global: any region of a partition goes to its global region, signed for it
        assert_eq!(ORGANIZATIONS.endpoint("eu-west-1", false, false).unwrap(), ("https://organizations.us-east-1.amazonaws.com".into(), "us-east-1".into()));
        assert_eq!(
            ORGANIZATIONS.endpoint("cn-north-1", false, false).unwrap(),
            ("https://organizations.cn-northwest-1.amazonaws.com.cn".into(), "cn-northwest-1".into())
        );
        assert_eq!(ORGANIZATIONS.endpoint("us-gov-east-1", false, false).unwrap().1, "us-gov-west-1");
        // the rule sets' error for a partition without dual-stack
        assert!(EC2.endpoint("us-iso-east-1", false, true).unwrap_err().to_string().contains("dual-stack"));
    }

    /// Every test case of the four rule sets (tests/endpoint_cases.tsv, extracted from the crates by
    /// scripts/endpoint_cases.sh): service, region, FIPS, dual-stack → URL.
    #[test]
    fn endpoints_match_every_case_of_the_rule_sets() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/endpoint_cases.tsv");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut n = 0;
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let svc = match f[0] {
                "ec2" => &EC2,
                "ssm" => &SSM,
                "cloudwatch" => &CLOUDWATCH,
                "organizations" => &ORGANIZATIONS,
                other => panic!("unknown service {other}"),
            };
            let (fips, dual) = (f[2] == "True", f[3] == "True");
            assert_eq!(svc.endpoint(f[1], fips, dual).unwrap().0, f[4], "{line}");
            n += 1;
        }
        assert!(n >= 137, "{n} cases");
    }

    /// The error bodies of each protocol: EC2 API Reference, "Error codes for the Amazon EC2 API"; the Query
    /// protocol's `ErrorResponse` (CloudWatch API Reference, "Common Errors"); AWS JSON 1.1 (`__type`, possibly
    /// qualified, or the `x-amzn-ErrorType` header); an XML answer to a JSON call (moto does this); a proxy page.
    #[test]
    fn reads_every_protocols_error_body() {
        let ec2 = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>"#;
        assert_eq!(parse_error(ec2, None), (Some("UnauthorizedOperation".into()), "You are not authorized to perform this operation.".into()));
        let query = r#"<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: x is not authorized to perform: cloudwatch:GetMetricData</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
        assert_eq!(parse_error(query, None).0.as_deref(), Some("AccessDenied"));
        let json = r#"{"__type":"com.amazonaws.ssm#ParameterNotFound","message":"Parameter /trailsetup/x/lock not found."}"#;
        assert_eq!(parse_error(json, None), (Some("ParameterNotFound".into()), "Parameter /trailsetup/x/lock not found.".into()));
        assert_eq!(parse_error(r#"{"Message":"no"}"#, Some("AWSOrganizationsNotInUseException:http://internal")).0.as_deref(), Some("AWSOrganizationsNotInUseException"));
        let s3ish = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>denied</Message></Error>";
        assert_eq!(parse_error(s3ish, None), (Some("AccessDenied".into()), "denied".into()));
        let (code, msg) = parse_error("<html>bad gateway</html>", None);
        assert_eq!(code, None);
        assert!(msg.contains("bad gateway"));
    }

    #[test]
    fn throttling_and_transient_answers_are_retried_refusals_are_not() {
        assert!(is_retryable(503, None));
        assert!(is_retryable(400, Some("RequestLimitExceeded")));
        assert!(is_retryable(400, Some("ThrottlingException")));
        assert!(!is_retryable(403, Some("UnauthorizedOperation")));
        assert!(!is_retryable(400, Some("ParameterAlreadyExists")));
        for attempt in 1..12 {
            assert!(backoff(attempt) <= Duration::from_secs(20));
        }
    }

    #[test]
    fn reads_items_and_fields_at_a_path() {
        let xml = r#"<R xmlns="x"><a><item><n>1</n><m>one</m></item><item><m>two</m><n>2</n></item><other/></a></R>"#;
        let got = xml_items(xml, "R", &["a", "item"], |el| {
            let [n, m] = xml_fields(el, ["n", "m"])?;
            Ok(Some((n.unwrap_or_default(), m.unwrap_or_default())))
        })
        .unwrap();
        assert_eq!(got, vec![("1".into(), "one".into()), ("2".into(), "two".into())]);
        assert!(xml_items(xml, "Other", &["a"], |_| Ok(Some(()))).is_err());
    }
}
