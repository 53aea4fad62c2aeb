//! The local signing proxy in front of OpenSearch Dashboards: listens on 127.0.0.1 only, admits a browser that
//! presents the one-time token (then its HttpOnly, SameSite=Strict cookie), and forwards each request to the
//! upstream unchanged in path and query (byte for byte), signed with credentials fetched for that request (SigV4,
//! so they refresh) or basic auth. The client's own `Authorization` and `Cookie` never go upstream; the upstream's
//! cookies (the security plugin's tenant) live in the proxy's own jar. Upstream redirects are returned, not
//! followed, with `Location` rewritten to the local address. Response bodies stream back with an idle timeout;
//! request bodies are read whole first (SigV4 signs their hash), with the same idle timeout and a size cap.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::opensearch::client::{host_header, redact_url, Client};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
type Upstream = hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A body that stays silent this long (either way) ends the request.
pub const IDLE: Duration = Duration::from_secs(120);
/// The largest request body forwarded (it is read whole: SigV4 signs its hash).
pub const MAX_REQUEST_BODY: usize = 256 << 20;

pub struct Config {
    /// 0: a free port
    pub port: u16,
    pub open_browser: bool,
    /// the Dashboards base URL (its origin is the upstream), with the endpoint's auth
    pub client: Client,
    /// where the token sends the browser (a path on the upstream)
    pub landing: String,
}

struct State {
    client: Client,
    upstream: Upstream,
    /// `scheme://host[:port]` of the upstream, as requests are built and `Location` headers are matched
    origin: String,
    host: String,
    /// the upstream for messages (no credentials)
    display: String,
    /// `http://127.0.0.1:<port>`
    local: String,
    landing: String,
    token: String,
    token_used: AtomicBool,
    cookie_name: String,
    session: String,
    /// the upstream's cookies (name → value): kept here, never handed to the browser
    jar: Mutex<BTreeMap<String, String>>,
    warned_forbidden: AtomicBool,
}

/// 32 random bytes, hex.
fn random_hex() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("no secure random numbers from the system"))?;
    Ok(hex::encode(b))
}

/// Equal, in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn upstream_client(ca_pem: Option<&[u8]>) -> anyhow::Result<Upstream> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for c in CertificateDer::pem_slice_iter(pem) {
            roots.add(c.context("--ca-bundle: a certificate that does not parse")?)?;
        }
    }
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).pool_timer(hyper_util::rt::TokioTimer::new()).pool_idle_timeout(Duration::from_secs(60)).build(https))
}

/// Open `url` in the desktop's browser (`open` on macOS, `start` on Windows, `xdg-open` elsewhere).
fn open_browser(url: &str) -> std::io::Result<()> {
    let (cmd, args): (&str, Vec<&str>) = if cfg!(target_os = "macos") {
        ("open", vec![url])
    } else if cfg!(windows) {
        ("cmd", vec!["/C", "start", "", url])
    } else {
        ("xdg-open", vec![url])
    };
    let mut child = tokio::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}

/// Serve until SIGINT/SIGTERM; in-flight requests get a few seconds to finish.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{} (--port)", cfg.port))?;
    let port = listener.local_addr()?.port();
    let base = &cfg.client.base;
    let origin = format!("{}://{}", base.scheme(), host_header(base));
    let token = random_hex()?;
    let st = Arc::new(State {
        upstream: upstream_client(cfg.client.ca_pem())?,
        host: host_header(base),
        display: redact_url(base.as_str()).trim_end_matches('/').to_string(),
        origin,
        local: format!("http://127.0.0.1:{port}"),
        landing: cfg.landing,
        token: token.clone(),
        token_used: AtomicBool::new(false),
        cookie_name: format!("trailsetup_proxy_{port}"),
        session: random_hex()?,
        jar: Mutex::new(BTreeMap::new()),
        warned_forbidden: AtomicBool::new(false),
        client: cfg.client,
    });
    let url = format!("http://127.0.0.1:{port}/?token={token}");
    {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{url}")?;
        o.flush()?;
    }
    eprintln!(
        "Serving OpenSearch Dashboards at {} on http://127.0.0.1:{port} (each request signed here; the link works once). \
         Ctrl-C stops.",
        st.display
    );
    if cfg.open_browser {
        if let Err(e) = open_browser(&url) {
            eprintln!("could not open a browser ({e}): open the URL above yourself");
        }
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = crate::signals::first();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, _) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        continue;
                    }
                };
                let st = st.clone();
                let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc);
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::debug!("connection: {e}");
                    }
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    eprintln!("stopping the proxy");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => tracing::info!("requests still in flight after 5 s: closed"),
    }
    Ok(())
}

fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|never: Infallible| match never {}).boxed_unsync()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A page of ours: HTML for a browser's navigation, else JSON in the shape Dashboards' own errors have (its UI
/// shows `message`).
fn page(status: StatusCode, wants_html: bool, title: &str, message: &str) -> Response<ProxyBody> {
    let (ct, body) = if wants_html {
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>trailsetup: {t}</title></head><body>\
                 <h1>{t}</h1><p>{m}</p><p><small>trailsetup dashboards (local signing proxy)</small></p></body></html>\n",
                t = escape(title),
                m = escape(message)
            ),
        )
    } else {
        (
            "application/json",
            serde_json::json!({"statusCode": status.as_u16(), "error": title, "message": message}).to_string(),
        )
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn wants_html(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// The value of `name` in a query string (as sent).
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// Does the request carry our session cookie?
fn has_session(st: &State, h: &HeaderMap) -> bool {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == st.cookie_name && same_secret(v, &st.session))
}

/// Headers that belong to one connection (RFC 9110 §7.6.1), never forwarded either way.
fn hop_by_hop(name: &header::HeaderName, connection: &[String]) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "proxy-authenticate" | "proxy-authorization" | "te" | "trailer"
            | "transfer-encoding" | "upgrade"
    ) || connection.iter().any(|c| c.eq_ignore_ascii_case(name.as_str()))
}

fn connection_tokens(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let html = wants_html(req.headers());
    // the token: once, on `/`; it sets the session cookie and sends the browser to the overview dashboard
    if req.uri().path() == "/" {
        if let Some(t) = req.uri().query().and_then(|q| query_param(q, "token")) {
            let fresh = same_secret(t, &st.token) && !st.token_used.swap(true, Ordering::SeqCst);
            if fresh || has_session(&st, req.headers()) {
                let mut r = Response::new(full(Bytes::new()));
                *r.status_mut() = StatusCode::FOUND;
                let h = r.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&st.landing) {
                    h.insert(header::LOCATION, v);
                }
                if let Ok(v) = HeaderValue::from_str(&format!("{}={}; Path=/; HttpOnly; SameSite=Strict", st.cookie_name, st.session)) {
                    h.insert(header::SET_COOKIE, v);
                }
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return Ok(r);
            }
            return Ok(page(
                StatusCode::UNAUTHORIZED,
                html,
                "Unauthorized",
                "This link was used already, or is not the one trailsetup printed: each link works once. Stop \
                 `trailsetup dashboards` (Ctrl-C) and run it again for a new one.",
            ));
        }
    }
    if !has_session(&st, req.headers()) {
        return Ok(page(
            StatusCode::UNAUTHORIZED,
            html,
            "Unauthorized",
            "Open the URL `trailsetup dashboards` printed (with its token) in this browser first; nothing was sent \
             to OpenSearch Dashboards.",
        ));
    }
    Ok(forward(&st, req, html).await.unwrap_or_else(|r| r))
}

/// Read a request body whole, each chunk within [`IDLE`], at most [`MAX_REQUEST_BODY`].
async fn read_body(mut b: Incoming, html: bool) -> Result<Bytes, Response<ProxyBody>> {
    let mut buf = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(IDLE, b.frame()).await {
            Err(_) => return Err(page(StatusCode::REQUEST_TIMEOUT, html, "Request Timeout", "the request body stopped arriving")),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(page(StatusCode::BAD_REQUEST, html, "Bad Request", &format!("reading the request body: {e}"))),
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    if buf.len() + d.len() > MAX_REQUEST_BODY {
                        return Err(page(StatusCode::PAYLOAD_TOO_LARGE, html, "Payload Too Large", "the request body is over 256 MiB"));
                    }
                    buf.extend_from_slice(&d);
                }
            }
        }
    }
}

/// An upstream response body, passed on frame by frame; one that stays silent for [`IDLE`] ends with an error.
fn idle_body(body: Incoming) -> ProxyBody {
    let s = futures::stream::unfold(Some(body), |state| async move {
        let mut b = state?;
        match tokio::time::timeout(IDLE, b.frame()).await {
            Ok(Some(Ok(frame))) => Some((Ok(frame), Some(b))),
            Ok(Some(Err(e))) => Some((Err(Box::new(e) as BoxError), None)),
            Ok(None) => None,
            Err(_) => Some((Err(BoxError::from("the upstream stopped sending the response body")), None)),
        }
    });
    StreamBody::new(s).boxed_unsync()
}

/// `Location` pointing at the upstream → the same place on the proxy; relative ones stay as they are.
fn rewrite_location(st: &State, loc: &str) -> String {
    let lower = loc.to_ascii_lowercase();
    let origin = st.origin.to_ascii_lowercase();
    if lower.starts_with(&origin) && matches!(loc.as_bytes().get(origin.len()), None | Some(b'/' | b'?' | b'#')) {
        return format!("{}{}", st.local, &loc[st.origin.len()..]);
    }
    let scheme_relative = format!("//{}", st.host.to_ascii_lowercase());
    if lower.starts_with(&scheme_relative) && matches!(loc.as_bytes().get(scheme_relative.len()), None | Some(b'/' | b'?' | b'#')) {
        return format!("{}{}", st.local, &loc[scheme_relative.len()..]);
    }
    loc.to_string()
}

/// Keep the upstream's cookies in the jar (a `Max-Age` of 0 or less, or an empty value, removes one).
fn keep_cookies(st: &State, h: &HeaderMap) {
    let mut jar = st.jar.lock().unwrap_or_else(|p| p.into_inner());
    for v in h.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        let mut parts = v.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else { continue };
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        let expired = parts.filter_map(|a| a.trim().split_once('=')).any(|(k, v)| {
            (k.eq_ignore_ascii_case("max-age") && v.trim().parse::<i64>().is_ok_and(|n| n <= 0))
                || (k.eq_ignore_ascii_case("expires") && v.contains("1970"))
        });
        if expired || value.is_empty() {
            jar.remove(&name);
        } else {
            jar.insert(name, value);
        }
    }
}

async fn forward(st: &State, req: Request<Incoming>, html: bool) -> Result<Response<ProxyBody>, Response<ProxyBody>> {
    let (parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let uri_str = format!("{}{}", st.origin, pq);
    let uri: http::Uri = uri_str
        .parse()
        .map_err(|e| page(StatusCode::BAD_REQUEST, html, "Bad Request", &format!("the request target {pq:?}: {e}")))?;
    let body = read_body(body, html).await?;
    let conn = connection_tokens(&parts.headers);
    let mut headers = HeaderMap::new();
    for (k, v) in parts.headers.iter() {
        let drop = hop_by_hop(k, &conn)
            || matches!(k.as_str(), "host" | "authorization" | "cookie" | "content-length" | "expect")
            || k.as_str().starts_with("x-amz-");
        if !drop {
            headers.append(k.clone(), v.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&st.host) {
        headers.insert(header::HOST, v);
    }
    let jar = {
        let jar = st.jar.lock().unwrap_or_else(|p| p.into_inner());
        jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    };
    if !jar.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&jar) {
            headers.insert(header::COOKIE, v);
        }
    }
    // signed: host, content-type and the signature's own headers, over exactly the bytes sent
    let mut signed = HeaderMap::new();
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        signed.insert(header::CONTENT_TYPE, ct.clone());
    }
    st.client
        .authorize(&parts.method, &uri_str, &st.host, &mut signed, &body)
        .await
        .map_err(|e| page(StatusCode::INTERNAL_SERVER_ERROR, html, "Cannot sign the request", &format!("{e:#}")))?;
    for (k, v) in signed.iter() {
        headers.insert(k.clone(), v.clone());
    }
    let mut up = Request::new(Full::new(body));
    *up.method_mut() = parts.method.clone();
    *up.uri_mut() = uri;
    *up.headers_mut() = headers;
    let resp = match tokio::time::timeout(st.client.timeout(), st.upstream.request(up)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                why.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{} {pq}: OpenSearch Dashboards at {} does not answer ({why})", parts.method, st.display);
            return Err(page(
                StatusCode::BAD_GATEWAY,
                html,
                "Bad Gateway",
                &format!("OpenSearch Dashboards at {} does not answer from this machine ({why}).", st.display),
            ));
        }
        Err(_) => {
            return Err(page(
                StatusCode::GATEWAY_TIMEOUT,
                html,
                "Gateway Timeout",
                &format!("OpenSearch Dashboards at {} did not answer within {} s.", st.display, st.client.timeout().as_secs()),
            ))
        }
    };
    let (mut rp, rbody) = resp.into_parts();
    keep_cookies(st, &rp.headers);
    if rp.status == StatusCode::FORBIDDEN {
        let detail = match tokio::time::timeout(Duration::from_secs(10), rbody.collect()).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).chars().take(600).collect::<String>(),
            _ => String::new(),
        };
        let message = format!(
            "OpenSearch Dashboards at {} refused the caller (403 Forbidden{}). The caller (the IAM identity these \
             credentials belong to) must be mapped in the domain's security plugin (fine-grained access control: \
             Security → Roles → a role such as all_access or opensearch_dashboards_user → Mapped users → its IAM \
             ARN as a backend role), and the domain's access policy must allow it es:ESHttp*.",
            st.display,
            if detail.trim().is_empty() { String::new() } else { format!(": {}", detail.trim()) }
        );
        if !st.warned_forbidden.swap(true, Ordering::SeqCst) {
            eprintln!("{} {pq}: {message}", parts.method);
        }
        return Err(page(StatusCode::FORBIDDEN, html, "Forbidden", &message));
    }
    let conn = connection_tokens(&rp.headers);
    let names: Vec<header::HeaderName> = rp.headers.keys().cloned().collect();
    for n in names {
        if hop_by_hop(&n, &conn) || n == header::SET_COOKIE {
            rp.headers.remove(&n);
        }
    }
    if let Some(loc) = rp.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned) {
        if let Ok(v) = HeaderValue::from_str(&rewrite_location(st, &loc)) {
            rp.headers.insert(header::LOCATION, v);
        }
    }
    Ok(Response::from_parts(rp, idle_body(rbody)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let client = Client::new("https://search-x.us-east-1.es.amazonaws.com/_dashboards", crate::opensearch::client::Auth::None, None, IDLE).unwrap();
        State {
            upstream: upstream_client(None).unwrap(),
            origin: "https://search-x.us-east-1.es.amazonaws.com".into(),
            host: "search-x.us-east-1.es.amazonaws.com".into(),
            display: "https://search-x.us-east-1.es.amazonaws.com/_dashboards".into(),
            local: "http://127.0.0.1:8080".into(),
            landing: "/_dashboards/app/dashboards".into(),
            token: "t".repeat(64),
            token_used: AtomicBool::new(false),
            cookie_name: "trailsetup_proxy_8080".into(),
            session: "s".repeat(64),
            jar: Mutex::new(BTreeMap::new()),
            warned_forbidden: AtomicBool::new(false),
            client,
        }
    }

    #[test]
    fn locations_are_rewritten_to_the_proxy() {
        let st = state();
        assert_eq!(rewrite_location(&st, "https://search-x.us-east-1.es.amazonaws.com/_dashboards/app/home?x=1#y"), "http://127.0.0.1:8080/_dashboards/app/home?x=1#y");
        assert_eq!(rewrite_location(&st, "HTTPS://search-x.us-east-1.es.amazonaws.com"), "http://127.0.0.1:8080");
        assert_eq!(rewrite_location(&st, "//search-x.us-east-1.es.amazonaws.com/a"), "http://127.0.0.1:8080/a");
        assert_eq!(rewrite_location(&st, "/_dashboards/login"), "/_dashboards/login");
        // another host that merely starts the same stays
        assert_eq!(rewrite_location(&st, "https://search-x.us-east-1.es.amazonaws.com.evil.example/"), "https://search-x.us-east-1.es.amazonaws.com.evil.example/");
    }

    #[test]
    fn session_cookie_and_jar() {
        let st = state();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("a=b; trailsetup_proxy_8080={}", "s".repeat(64))).unwrap());
        assert!(has_session(&st, &h));
        h.insert(header::COOKIE, HeaderValue::from_static("trailsetup_proxy_8080=nope"));
        assert!(!has_session(&st, &h));
        let mut r = HeaderMap::new();
        r.append(header::SET_COOKIE, HeaderValue::from_static("security_authentication=x; Path=/; HttpOnly"));
        r.append(header::SET_COOKIE, HeaderValue::from_static("other=y"));
        keep_cookies(&st, &r);
        assert_eq!(st.jar.lock().unwrap().len(), 2);
        let mut r = HeaderMap::new();
        r.append(header::SET_COOKIE, HeaderValue::from_static("other=; Max-Age=0"));
        keep_cookies(&st, &r);
        assert_eq!(st.jar.lock().unwrap().keys().collect::<Vec<_>>(), ["security_authentication"]);
        assert_eq!(query_param("a=1&token=abc&b", "token"), Some("abc"));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}
