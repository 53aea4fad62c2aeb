//! SigV4 for the requests trailsetup signs itself: OpenSearch (`es`/`aoss`, and the Dashboards proxy) and EC2's
//! `DescribeRegions` Query call ([`super::ec2`]).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign as sigv4_sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

/// Sign one request in place (`Authorization`, `X-Amz-Date`, `X-Amz-Security-Token` when the credentials carry a
/// session token): `uri` is signed exactly as it is sent, `host` is the `Host` header, `headers` are signed as
/// they are. `content_sha256_header` also sends the payload's hash as `x-amz-content-sha256` (OpenSearch Service
/// requires it for signed bodies; EC2 does not read it).
#[allow(clippy::too_many_arguments)]
pub fn sign(
    headers: &mut http::HeaderMap,
    method: &str,
    uri: &str,
    host: &str,
    body: SignableBody<'_>,
    service: &str,
    region: &str,
    credentials: Credentials,
    content_sha256_header: bool,
) -> anyhow::Result<()> {
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    if content_sha256_header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()?
        .into();
    let mut hs: Vec<(&str, &str)> = vec![("host", host)];
    for (k, v) in headers.iter().filter(|(k, _)| *k != http::header::HOST) {
        hs.push((k.as_str(), v.to_str().unwrap_or_default()));
    }
    let req = SignableRequest::new(method, uri, hs.into_iter(), body)?;
    let (instructions, _) = sigv4_sign(req, &params)?.into_parts();
    let (new_headers, _params) = instructions.into_parts();
    for h in new_headers {
        headers.insert(http::HeaderName::from_bytes(h.name().as_bytes())?, http::HeaderValue::from_str(h.value())?);
    }
    Ok(())
}
