//! EC2 `DescribeRegions`, the one EC2 call trailsetup makes, sent as a SigV4-signed Query request.
//!
//! `aws-sdk-ec2` generates a client for EC2's ~750 operations: it was 655 s of the 1,676 s a cold build spent on
//! SDK crates, for this single call. Here the call is what the SDK sends on the wire — `POST /` with
//! `Action=DescribeRegions&Version=2016-11-15&AllRegions=true` — signed with `aws-sigv4`, sent with the reqwest
//! client trailsetup already uses for OpenSearch, and its answer read with `aws-smithy-xml`, the SDK's own XML
//! reader. What the SDK client would have done around the call is kept:
//! - **credentials, region, FIPS and dual-stack** come from the shared [`SdkConfig`];
//! - **the endpoint** is chosen as the generated client chooses it: an endpoint set in code (`--endpoint-url`)
//!   wins, then `AWS_ENDPOINT_URL_EC2` / a profile's `services` section, then `AWS_ENDPOINT_URL`, then EC2's
//!   endpoint rules ([`default_endpoint`], checked against the rule set's own test cases);
//! - **retries** follow the SDK's standard mode: transient (5xx, connection) and throttling answers are retried
//!   with exponential backoff and full jitter, capped at 20 s, up to the config's attempts (AWS SDKs and Tools
//!   Reference Guide, "Retry behavior");
//! - **errors** are EC2's `<Response><Errors><Error><Code>…` document (EC2 API Reference, "Error codes for the
//!   Amazon EC2 API"), explained like every other AWS error ([`crate::aws::explain_code`]).

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_xml::decode::{try_data, Document};

/// What the EC2 API Reference's `DescribeRegions` gives per region (its `Region` type) that trailsetup reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// `opt-in-not-required`, `opted-in` or `not-opted-in`
    pub opt_in_status: String,
}

/// The Query API version every EC2 request names (EC2 API Reference, "Common query parameters": `Version`).
const API_VERSION: &str = "2016-11-15";
const WHAT: &str = "listing the account's regions (EC2 DescribeRegions)";

/// Every region of the partition with its opt-in status (`AllRegions=true`: also those not enabled).
pub async fn describe_regions(cfg: &SdkConfig) -> anyhow::Result<Vec<Region>> {
    let region = cfg.region().map(|r| r.to_string()).ok_or_else(|| anyhow!("{WHAT}: no region; pass --region or set AWS_REGION"))?;
    let endpoint = endpoint(cfg, &region)?;
    let url = url::Url::parse(&endpoint).with_context(|| format!("{WHAT}: the EC2 endpoint {endpoint:?} is not a URL"))?;
    let url = url.join("/").unwrap_or(url);
    let body = format!("Action=DescribeRegions&Version={API_VERSION}&AllRegions=true");
    super::ensure_tls_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("trailsetup/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let attempts = cfg.retry_config().map(|r| r.max_attempts()).unwrap_or(3).max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = send(&client, cfg, &url, &region, &body).await;
        let retry = match &outcome {
            Ok(Answer { status, code, .. }) => is_retryable(*status, code.as_deref()),
            Err(Failure::Transport(_)) => true,
            Err(Failure::Final(_)) => false,
        };
        if !retry || attempt >= attempts {
            return match outcome {
                Ok(a) if a.status.is_success() => parse_regions(&a.body).with_context(|| format!("{WHAT}: EC2's answer could not be read")),
                Ok(a) => Err(crate::aws::explain_code(WHAT, a.code.as_deref().unwrap_or("Unknown"), &a.message, a.status.as_u16(), "ec2:DescribeRegions")),
                Err(Failure::Transport(e)) => Err(anyhow!(
                    "{WHAT}: could not reach AWS at {url} ({e}); check the network, --region and --endpoint-url/AWS_ENDPOINT_URL"
                )),
                Err(Failure::Final(e)) => Err(e),
            };
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
}

struct Answer {
    status: reqwest::StatusCode,
    body: String,
    code: Option<String>,
    message: String,
}

enum Failure {
    /// the request never got an answer (connect, TLS, timeout): retried
    Transport(reqwest::Error),
    /// no point in asking again (no credentials, a request that cannot be built)
    Final(anyhow::Error),
}

async fn send(client: &reqwest::Client, cfg: &SdkConfig, url: &url::Url, region: &str, body: &str) -> Result<Answer, Failure> {
    let credentials = cfg
        .credentials_provider()
        .ok_or_else(|| Failure::Final(anyhow!("{WHAT}: no AWS credentials; set AWS_PROFILE / --profile")))?
        .provide_credentials()
        .await
        .map_err(|e| Failure::Final(anyhow!("{WHAT}: no AWS credentials ({e}); set AWS_PROFILE / --profile, or refresh them (aws sso login)")))?;
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-www-form-urlencoded"));
    let host = crate::opensearch::client::host_header(url);
    let signable = aws_sigv4::http_request::SignableBody::Bytes(body.as_bytes());
    crate::aws::sigv4::sign(&mut headers, "POST", url.as_str(), &host, signable, "ec2", region, credentials, false)
        .map_err(|e| Failure::Final(anyhow!("{WHAT}: could not sign the request: {e:#}")))?;
    let resp = client.post(url.clone()).headers(headers).body(body.to_string()).send().await.map_err(Failure::Transport)?;
    let status = resp.status();
    let text = resp.text().await.map_err(Failure::Transport)?;
    let (code, message) = if status.is_success() { (None, String::new()) } else { parse_error(&text) };
    Ok(Answer { status, body: text, code, message })
}

/// The standard retry mode's classes: throttling codes and transient answers (AWS SDKs and Tools Reference
/// Guide, "Retry behavior"; the codes are those the SDKs' standard retry classifiers list).
fn is_retryable(status: reqwest::StatusCode, code: Option<&str>) -> bool {
    const THROTTLING: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    ];
    const TRANSIENT: &[&str] = &["RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"];
    if status.is_success() {
        return false;
    }
    matches!(status.as_u16(), 500 | 502 | 503 | 504) || code.is_some_and(|c| THROTTLING.contains(&c) || TRANSIENT.contains(&c))
}

/// Exponential backoff with full jitter, `rand(0..1) × 2^attempt` seconds capped at 20 s (the standard retry
/// mode's formula), scaled by `TRAILSETUP_RETRY_SCALE` like every other wait (a test switch).
fn backoff(attempt: u32) -> Duration {
    let scale = std::env::var("TRAILSETUP_RETRY_SCALE").ok().and_then(|v| v.parse::<f64>().ok()).filter(|s| *s >= 0.0).unwrap_or(1.0);
    let base = 2f64.powi(attempt.min(10) as i32).min(20.0);
    Duration::from_secs_f64(fastrand::f64() * base * scale)
}

/// The endpoint the generated EC2 client would use, in its order: one set in code, the service's own
/// (`AWS_ENDPOINT_URL_EC2`, or `endpoint_url` in the profile's `services` section), the global one, EC2's rules.
fn endpoint(cfg: &SdkConfig, region: &str) -> anyhow::Result<String> {
    let configured = if cfg.get_origin("endpoint_url").is_client_config() {
        cfg.endpoint_url().map(String::from)
    } else {
        let key = aws_types::service_config::ServiceConfigKey::builder()
            .service_id("EC2")
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("every field is set");
        cfg.service_config().and_then(|c| c.load_config(key)).or_else(|| cfg.endpoint_url().map(String::from))
    };
    match configured {
        Some(e) => Ok(e),
        None => default_endpoint(region, cfg.use_fips().unwrap_or(false), cfg.use_dual_stack().unwrap_or(false)),
    }
}

/// EC2's endpoint rules (the rule set `aws-sdk-ec2` is generated from): `ec2` or `ec2-fips`, in the partition's
/// DNS suffix or its dual-stack one; GovCloud's FIPS endpoint without dual-stack is the plain `ec2.` host.
pub fn default_endpoint(region: &str, fips: bool, dual_stack: bool) -> anyhow::Result<String> {
    let partition = crate::aws::partition_of_region(region);
    let (dns, dual_dns) = match partition {
        "aws-cn" => ("amazonaws.com.cn", Some("api.amazonwebservices.com.cn")),
        "aws-us-gov" => ("amazonaws.com", Some("api.aws")),
        "aws-iso" => ("c2s.ic.gov", None),
        "aws-iso-b" => ("sc2s.sgov.gov", None),
        _ => ("amazonaws.com", Some("api.aws")),
    };
    let suffix = if dual_stack {
        dual_dns.ok_or_else(|| anyhow!("{WHAT}: dual-stack is enabled but the {partition} partition does not support it; unset AWS_USE_DUALSTACK_ENDPOINT"))?
    } else {
        dns
    };
    let host = match (fips, dual_stack) {
        (true, false) if partition == "aws-us-gov" => "ec2",
        (true, _) => "ec2-fips",
        (false, _) => "ec2",
    };
    Ok(format!("https://{host}.{region}.{suffix}"))
}

/// The regions of a `DescribeRegionsResponse` (`regionInfo` → `item` → `regionName`, `optInStatus`, in any order).
fn parse_regions(xml: &str) -> anyhow::Result<Vec<Region>> {
    let mut doc = Document::new(xml);
    let mut root = doc.root_element()?;
    if !root.start_el().matches("DescribeRegionsResponse") {
        anyhow::bail!("expected DescribeRegionsResponse, got {:?}", root.start_el().local());
    }
    let mut out = Vec::new();
    while let Some(mut tag) = root.next_tag() {
        if !tag.start_el().matches("regionInfo") {
            continue;
        }
        while let Some(mut item) = tag.next_tag() {
            if !item.start_el().matches("item") {
                continue;
            }
            let (mut name, mut opt_in) = (None, None);
            while let Some(mut field) = item.next_tag() {
                if field.start_el().matches("regionName") {
                    name = Some(try_data(&mut field)?.into_owned());
                } else if field.start_el().matches("optInStatus") {
                    opt_in = Some(try_data(&mut field)?.into_owned());
                }
            }
            if let Some(name) = name {
                out.push(Region { name, opt_in_status: opt_in.unwrap_or_default() });
            }
        }
    }
    Ok(out)
}

/// EC2's error document: `<Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors>…`; a body
/// that is not one (a proxy's HTML page) gives no code.
fn parse_error(xml: &str) -> (Option<String>, String) {
    let read = || -> anyhow::Result<(Option<String>, String)> {
        let mut doc = Document::new(xml);
        let mut root = doc.root_element()?;
        let (mut code, mut message) = (None, String::new());
        while let Some(mut errors) = root.next_tag() {
            if !errors.start_el().matches("Errors") {
                continue;
            }
            while let Some(mut error) = errors.next_tag() {
                if !error.start_el().matches("Error") {
                    continue;
                }
                while let Some(mut field) = error.next_tag() {
                    if field.start_el().matches("Code") {
                        code = Some(try_data(&mut field)?.into_owned());
                    } else if field.start_el().matches("Message") {
                        message = try_data(&mut field)?.into_owned();
                    }
                }
                return Ok((code, message));
            }
        }
        Ok((code, message))
    };
    match read() {
        Ok((Some(code), message)) => (Some(code), message),
        _ => (None, xml.chars().take(200).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test cases of EC2's endpoint rule set (shipped with `aws-sdk-ec2` 1.274 as
    /// `config/endpoint.rs`): region, FIPS, dual-stack → URL.
    #[test]
    fn endpoints_follow_ec2_rule_set_test_cases() {
        let cases = [
            ("af-south-1", false, false, "https://ec2.af-south-1.amazonaws.com"),
            ("ap-south-1", false, true, "https://ec2.ap-south-1.api.aws"),
            ("ca-central-1", true, false, "https://ec2-fips.ca-central-1.amazonaws.com"),
            ("eu-west-1", false, true, "https://ec2.eu-west-1.api.aws"),
            ("us-east-1", false, false, "https://ec2.us-east-1.amazonaws.com"),
            ("us-east-1", true, false, "https://ec2-fips.us-east-1.amazonaws.com"),
            ("us-east-1", false, true, "https://ec2.us-east-1.api.aws"),
            ("us-east-1", true, true, "https://ec2-fips.us-east-1.api.aws"),
            ("cn-north-1", false, false, "https://ec2.cn-north-1.amazonaws.com.cn"),
            ("cn-north-1", true, true, "https://ec2-fips.cn-north-1.api.amazonwebservices.com.cn"),
            ("cn-north-1", true, false, "https://ec2-fips.cn-north-1.amazonaws.com.cn"),
            ("cn-north-1", false, true, "https://ec2.cn-north-1.api.amazonwebservices.com.cn"),
            ("us-gov-east-1", false, false, "https://ec2.us-gov-east-1.amazonaws.com"),
            ("us-gov-east-1", true, true, "https://ec2-fips.us-gov-east-1.api.aws"),
            ("us-gov-east-1", true, false, "https://ec2.us-gov-east-1.amazonaws.com"),
            ("us-gov-east-1", false, true, "https://ec2.us-gov-east-1.api.aws"),
            ("us-iso-east-1", false, false, "https://ec2.us-iso-east-1.c2s.ic.gov"),
            ("us-iso-east-1", true, false, "https://ec2-fips.us-iso-east-1.c2s.ic.gov"),
            ("us-isob-east-1", false, false, "https://ec2.us-isob-east-1.sc2s.sgov.gov"),
            ("us-isob-east-1", true, false, "https://ec2-fips.us-isob-east-1.sc2s.sgov.gov"),
        ];
        for (region, fips, dual, want) in cases {
            assert_eq!(default_endpoint(region, fips, dual).unwrap(), want, "{region} fips={fips} dual={dual}");
        }
        // the rule set's error for a partition without dual-stack
        assert!(default_endpoint("us-iso-east-1", false, true).unwrap_err().to_string().contains("dual-stack"));
    }

    /// The EC2 API Reference's DescribeRegions example answer (fields in AWS's order), and moto's (optInStatus
    /// before regionName).
    #[test]
    fn reads_regions_in_any_field_order() {
        let aws = r#"<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
   <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
   <regionInfo>
      <item><regionName>us-east-1</regionName><regionEndpoint>ec2.us-east-1.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item>
      <item><regionName>af-south-1</regionName><regionEndpoint>ec2.af-south-1.amazonaws.com</regionEndpoint><optInStatus>not-opted-in</optInStatus></item>
   </regionInfo>
</DescribeRegionsResponse>"#;
        let moto = r#"<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>x</requestId><regionInfo>
<item><regionEndpoint>ec2.me-south-1.amazonaws.com</regionEndpoint><optInStatus>opted-in</optInStatus><regionName>me-south-1</regionName></item>
</regionInfo></DescribeRegionsResponse>"#;
        assert_eq!(
            parse_regions(aws).unwrap(),
            vec![
                Region { name: "us-east-1".into(), opt_in_status: "opt-in-not-required".into() },
                Region { name: "af-south-1".into(), opt_in_status: "not-opted-in".into() }
            ]
        );
        assert_eq!(parse_regions(moto).unwrap(), vec![Region { name: "me-south-1".into(), opt_in_status: "opted-in".into() }]);
        assert!(parse_regions("<Response><Errors/></Response>").is_err());
    }

    /// EC2 API Reference, "Error codes for the Amazon EC2 API": the error document's shape.
    #[test]
    fn reads_ec2_error_documents() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>"#;
        assert_eq!(parse_error(body), (Some("UnauthorizedOperation".into()), "You are not authorized to perform this operation.".into()));
        let (code, msg) = parse_error("<html>bad gateway</html>");
        assert_eq!(code, None);
        assert!(msg.contains("bad gateway"));
    }

    #[test]
    fn throttling_and_transient_answers_are_retried_refusals_are_not() {
        use reqwest::StatusCode as S;
        assert!(is_retryable(S::SERVICE_UNAVAILABLE, None));
        assert!(is_retryable(S::BAD_REQUEST, Some("RequestLimitExceeded")));
        assert!(!is_retryable(S::FORBIDDEN, Some("UnauthorizedOperation")));
        assert!(!is_retryable(S::BAD_REQUEST, Some("AuthFailure")));
        assert!(!is_retryable(S::OK, None));
        for attempt in 1..12 {
            assert!(backoff(attempt) <= Duration::from_secs(20));
        }
    }
}
