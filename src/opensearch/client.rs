//! A small OpenSearch HTTP client: one reqwest client, auth by SigV4 (`es`/`aoss`), basic or none.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use reqwest::{Method, StatusCode};

use crate::cli::OpenSearchAuth;

#[derive(Clone)]
pub enum Auth {
    None,
    Basic { user: String, password: String },
    SigV4 { service: String, region: String, credentials: SharedCredentialsProvider },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::Basic { user, .. } => write!(f, "basic ({user})"),
            Auth::SigV4 { service, region, .. } => write!(f, "sigv4 ({service}, {region})"),
        }
    }
}

impl Auth {
    pub fn kind(&self) -> OpenSearchAuth {
        match self {
            Auth::None => OpenSearchAuth::None,
            Auth::Basic { .. } => OpenSearchAuth::Basic,
            Auth::SigV4 { .. } => OpenSearchAuth::Sigv4,
        }
    }
}

/// The SigV4 service and region an AWS endpoint host implies: `search-x.us-east-1.es.amazonaws.com` → (es,
/// us-east-1); `x.us-east-1.aoss.amazonaws.com` → (aoss, us-east-1).
pub fn aws_host_hint(host: &str) -> Option<(&'static str, String)> {
    let parts: Vec<&str> = host.split('.').collect();
    let n = parts.len();
    if n >= 4 && parts[n - 2] == "amazonaws" {
        let svc = parts[n - 3];
        let region = parts[n - 4].to_string();
        return match svc {
            "es" => Some(("es", region)),
            "aoss" => Some(("aoss", region)),
            _ => None,
        };
    }
    if n >= 5 && parts[n - 3] == "amazonaws" && parts[n - 2] == "com" && parts[n - 1] == "cn" {
        return match parts[n - 4] {
            "es" => Some(("es", parts[n - 5].to_string())),
            "aoss" => Some(("aoss", parts[n - 5].to_string())),
            _ => None,
        };
    }
    None
}

/// Parse an OpenSearch endpoint as the user gave it. Credentials in the URL (`https://user:pw@host`) are refused:
/// they would be printed, stored in the state file and the checkpoint, and copied into the forwarder's
/// environment. The error shows the URL with them removed.
pub fn parse_url(url: &str) -> anyhow::Result<url::Url> {
    let u = url::Url::parse(url).map_err(|e| {
        crate::error::usage(format!(
            "--opensearch-url {:?} is not a URL ({e}); expected e.g. https://search-x.us-east-1.es.amazonaws.com",
            redact_url(url)
        ))
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(crate::error::usage(format!("--opensearch-url must be http(s), got {:?}", redact_url(url))));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(crate::error::usage(format!(
            "--opensearch-url {} carries credentials: remove them from the URL and pass --opensearch-auth basic with \
             TRAILSETUP_OPENSEARCH_USER and TRAILSETUP_OPENSEARCH_PASSWORD in the environment",
            redact_url(url)
        )));
    }
    Ok(u)
}

/// A URL for display: any `user:password@` is replaced by `***@` (also for text that does not parse).
pub fn redact_url(url: &str) -> String {
    if let Ok(mut u) = url::Url::parse(url) {
        if !u.username().is_empty() || u.password().is_some() {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
        }
        return u.to_string();
    }
    // not a URL: cut anything between "//" and the last '@' of the authority
    match (url.find("//"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 2], &url[at..]),
        _ => url.to_string(),
    }
}

/// 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[derive(Clone)]
pub struct Client {
    pub base: url::Url,
    http: reqwest::Client,
    auth: Arc<Auth>,
    /// `--ca-bundle` as read (PEM), for another HTTP client of the same endpoint (the Dashboards proxy)
    ca_pem: Option<Arc<Vec<u8>>>,
    timeout: Duration,
    /// the same client without redirects, made on first use
    no_redirect: Arc<std::sync::OnceLock<reqwest::Client>>,
}

/// One reqwest client for an endpoint: its timeouts, the extra CA certificates (already validated), and whether
/// it follows redirects.
fn http_client(ca_pem: Option<&[u8]>, timeout: Duration, redirects: bool) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .user_agent(concat!("trailsetup/", env!("CARGO_PKG_VERSION")));
    if !redirects {
        b = b.redirect(reqwest::redirect::Policy::none());
    }
    if let Some(pem) = ca_pem {
        for c in reqwest::Certificate::from_pem_bundle(pem)? {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b.build()?)
}

/// A response with its headers ([`Client::request`]).
pub struct FullResponse {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl FullResponse {
    pub fn text(&self) -> String {
        Response { status: self.status, retry_after: None, body: self.body.clone() }.text()
    }
}

/// The `Host` header (and SigV4's host) of a URL: the host, with the port when it is not the scheme's default.
pub fn host_header(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or_default().to_string();
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

pub struct Response {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: bytes::Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let s = s.trim();
        if s.len() > 600 { format!("{}…", &s[..s.floor_char_boundary(600)]) } else { s.to_string() }
    }
}

impl Client {
    pub fn new(url: &str, auth: Auth, ca_bundle: Option<&Path>, timeout: Duration) -> anyhow::Result<Client> {
        let mut base = parse_url(url)?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        crate::aws::ensure_tls_provider();
        let mut ca_pem = None;
        if let Some(p) = ca_bundle {
            let pem = std::fs::read(p).with_context(|| format!("reading --ca-bundle {}", p.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| crate::error::usage(format!("--ca-bundle {}: not a PEM bundle ({e})", p.display())))?;
            if certs.is_empty() {
                return Err(crate::error::usage(format!("--ca-bundle {}: no PEM certificate in it", p.display())));
            }
            ca_pem = Some(Arc::new(pem));
        }
        let http = http_client(ca_pem.as_deref().map(Vec::as_slice), timeout, true)?;
        Ok(Client { base, http, auth: Arc::new(auth), ca_pem, timeout, no_redirect: Default::default() })
    }

    /// The same connection pool and auth for another base URL of the same deployment (its Dashboards).
    pub fn with_base(&self, url: &str) -> anyhow::Result<Client> {
        let mut base = parse_url(url)?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Client { base, ..self.clone() })
    }

    /// [`Client::request`] without following redirects: a 3xx answer is returned as it is, with its headers.
    pub async fn request_no_redirect(&self, method: Method, path: &str, mut headers: http::HeaderMap, body: bytes::Bytes) -> anyhow::Result<FullResponse> {
        let http = match self.no_redirect.get() {
            Some(h) => h.clone(),
            None => {
                let h = http_client(self.ca_pem(), self.timeout, false)?;
                self.no_redirect.get_or_init(|| h).clone()
            }
        };
        let url = self.base.join(path.trim_start_matches('/')).context("building request URL")?;
        self.authorize(&method, url.as_str(), &host_header(&url), &mut headers, &body).await?;
        let resp = http.request(method, url).headers(headers).body(body).send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok(FullResponse { status, headers, body })
    }

    /// The extra CA certificates (`--ca-bundle`, PEM) this client trusts.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref().map(Vec::as_slice)
    }

    /// The timeout of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The endpoint for messages (it never holds credentials: `parse_url` refuses them).
    pub fn base_redacted(&self) -> String {
        redact_url(self.base.as_str())
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.base)
    }

    /// Send one request; `gzip` says the body is already gzip-compressed.
    pub async fn send(&self, method: Method, path: &str, body: bytes::Bytes, content_type: &str, gzip: bool) -> anyhow::Result<Response> {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_str(content_type)?);
        if gzip {
            headers.insert(http::header::CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
        }
        let r = self.request(method, path, headers, body).await?;
        let retry_after = r
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Ok(Response { status: r.status, retry_after, body: r.body })
    }

    /// Send one request with these headers (signed with them, SigV4 over exactly `body`), and return the answer
    /// with its headers. Redirects are followed as reqwest does.
    pub async fn request(&self, method: Method, path: &str, mut headers: http::HeaderMap, body: bytes::Bytes) -> anyhow::Result<FullResponse> {
        let url = self.base.join(path.trim_start_matches('/')).context("building request URL")?;
        self.authorize(&method, url.as_str(), &host_header(&url), &mut headers, &body).await?;
        let resp = self.http.request(method, url).headers(headers).body(body).send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok(FullResponse { status, headers, body })
    }

    /// Add this client's credentials to one request: a SigV4 signature over `method`, `uri` (sent as it is),
    /// `host`, `headers` and exactly `body` (credentials fetched from the provider now, so they refresh), or the
    /// basic `Authorization` header, or nothing.
    pub async fn authorize(&self, method: &Method, uri: &str, host: &str, headers: &mut http::HeaderMap, body: &[u8]) -> anyhow::Result<()> {
        match &*self.auth {
            Auth::None => {}
            Auth::Basic { user, password } => {
                use base64::Engine as _;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let mut v = http::HeaderValue::from_str(&format!("Basic {token}"))?;
                v.set_sensitive(true);
                headers.insert(http::header::AUTHORIZATION, v);
            }
            Auth::SigV4 { service, region, credentials } => {
                let body = aws_sigv4::http_request::SignableBody::Bytes(body);
                sign_raw(headers, method, uri, host, body, service, region, credentials).await?
            }
        }
        Ok(())
    }

    /// [`Client::authorize`] for a body that is not in memory: SigV4 signs `body_sha256` (its SHA-256, lowercase
    /// hex, sent as `x-amz-content-sha256`) in place of hashing the bytes; basic auth and none do not look at it.
    pub async fn authorize_hashed(&self, method: &Method, uri: &str, host: &str, headers: &mut http::HeaderMap, body_sha256: &str) -> anyhow::Result<()> {
        match &*self.auth {
            Auth::SigV4 { service, region, credentials } => {
                let body = aws_sigv4::http_request::SignableBody::Precomputed(body_sha256.to_string());
                sign_raw(headers, method, uri, host, body, service, region, credentials).await
            }
            _ => self.authorize(method, uri, host, headers, &[]).await,
        }
    }

    /// Does this client sign with SigV4 (and so need each body's hash before sending it)?
    pub fn signs_payload(&self) -> bool {
        matches!(&*self.auth, Auth::SigV4 { .. })
    }

    /// A control request (ping, template): transient failures (connection, 429, 5xx) are retried a few
    /// times with capped backoff before the last answer is returned.
    pub async fn json(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> anyhow::Result<Response> {
        let bytes = bytes::Bytes::from(match body {
            Some(v) => serde_json::to_vec(v)?,
            None => Vec::new(),
        });
        let mut attempt = 0u32;
        loop {
            let r = self.send(method.clone(), path, bytes.clone(), "application/json", false).await;
            let transient = match &r {
                Ok(resp) => resp.status.as_u16() == 429 || resp.status.is_server_error(),
                Err(_) => true,
            };
            if !transient || attempt >= 5 {
                return r;
            }
            let hint = r.as_ref().ok().and_then(|x| x.retry_after).unwrap_or_default();
            // jittered exponential, at least the server's hint, never more than 10 s
            let exp = Duration::from_millis(100 << attempt).mul_f64(0.5 + fastrand::f64() / 2.0);
            let wait = exp.max(hint).min(Duration::from_secs(10));
            tracing::debug!(path, ?wait, "retrying a transient OpenSearch failure");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// GET / — fails with what to do when the endpoint does not answer or refuses us.
    pub async fn ping(&self) -> anyhow::Result<String> {
        let r = self.json(Method::GET, "", None).await.with_context(|| {
            format!("OpenSearch at {} does not answer; check --opensearch-url and the network path", self.base)
        })?;
        check_auth(&r, &self.auth, "GET /")?;
        if !r.status.is_success() {
            bail!("OpenSearch at {} answered {}: {}", self.base, r.status, r.text());
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        Ok(v["version"]["number"].as_str().unwrap_or("unknown").to_string())
    }
}

/// Turn 401/403 into an error that names the fix.
pub fn check_auth(r: &Response, auth: &Auth, what: &str) -> anyhow::Result<()> {
    match r.status {
        StatusCode::UNAUTHORIZED => Err(anyhow!(
            "OpenSearch refused {what} with 401 Unauthorized ({}). Check --opensearch-auth ({:?}); for basic auth set \
             TRAILSETUP_OPENSEARCH_USER and TRAILSETUP_OPENSEARCH_PASSWORD",
            r.text(),
            auth
        )),
        StatusCode::FORBIDDEN => Err(anyhow!(
            "OpenSearch refused {what} with 403 Forbidden ({}). The caller needs es:ESHttpPost, es:ESHttpPut and \
             es:ESHttpGet on the domain (aoss:APIAccessAll for serverless) and, with fine-grained access control, a \
             role mapping that allows index and create_index on the index prefix",
            r.text()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
async fn sign(
    headers: &mut http::HeaderMap,
    method: &Method,
    url: &url::Url,
    body: &[u8],
    service: &str,
    region: &str,
    credentials: &SharedCredentialsProvider,
) -> anyhow::Result<()> {
    let body = aws_sigv4::http_request::SignableBody::Bytes(body);
    sign_raw(headers, method, url.as_str(), &host_header(url), body, service, region, credentials).await
}

/// SigV4 (`AWS4-HMAC-SHA256` in headers, `x-amz-content-sha256` of the body): `uri` is signed as it is sent.
#[allow(clippy::too_many_arguments)]
async fn sign_raw(
    headers: &mut http::HeaderMap,
    method: &Method,
    uri: &str,
    host: &str,
    body: aws_sigv4::http_request::SignableBody<'_>,
    service: &str,
    region: &str,
    credentials: &SharedCredentialsProvider,
) -> anyhow::Result<()> {
    let creds = credentials.provide_credentials().await.map_err(|e| {
        anyhow!("no AWS credentials to sign OpenSearch requests ({e}); set AWS_PROFILE / --profile, or pass --opensearch-auth basic|none")
    })?;
    crate::aws::sigv4::sign(headers, method.as_str(), uri, host, body, service, region, creds, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigv4_signs_with_service_region_and_payload_hash() {
        use sha2::Digest;
        let creds = aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", Some("tok".into()), None, "test");
        let provider = SharedCredentialsProvider::new(creds);
        let url = url::Url::parse("https://abc.eu-west-1.aoss.amazonaws.com/cloudtrail/_bulk").unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-ndjson"));
        sign(&mut headers, &Method::POST, &url, b"{}\n", "aoss", "eu-west-1", &provider).await.unwrap();
        let auth = headers["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        assert!(auth.contains("/eu-west-1/aoss/aws4_request"), "{auth}");
        assert!(auth.contains("SignedHeaders=") && auth.contains("host"), "{auth}");
        assert_eq!(headers["x-amz-content-sha256"].to_str().unwrap(), hex::encode(sha2::Sha256::digest(b"{}\n")));
        assert_eq!(headers["x-amz-security-token"].to_str().unwrap(), "tok");
        assert!(headers.contains_key("x-amz-date"));
    }

    #[test]
    fn bad_ca_bundle_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, b"not a certificate").unwrap();
        let e = Client::new("https://localhost:9200", Auth::None, Some(&p), Duration::from_secs(1)).err().unwrap();
        assert_eq!(crate::error::exit_for(&e), crate::error::Exit::Usage);
        assert!(e.to_string().contains("--ca-bundle"), "{e:#}");
    }

    #[test]
    fn host_hints() {
        assert_eq!(super::aws_host_hint("search-d-abc.us-east-1.es.amazonaws.com"), Some(("es", "us-east-1".into())));
        assert_eq!(super::aws_host_hint("abc.eu-west-1.aoss.amazonaws.com"), Some(("aoss", "eu-west-1".into())));
        assert_eq!(super::aws_host_hint("search-x.cn-north-1.es.amazonaws.com.cn"), Some(("es", "cn-north-1".into())));
        assert_eq!(super::aws_host_hint("127.0.0.1"), None);
    }
}
