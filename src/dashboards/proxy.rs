//! The local signing proxy in front of OpenSearch Dashboards: listens on 127.0.0.1 only, answers only requests
//! addressed to itself (`Host` 127.0.0.1:PORT or localhost:PORT, and no foreign `Origin`: DNS rebinding and
//! cross-origin pages are refused), admits a browser that presents the one-time token (then its HttpOnly,
//! SameSite=Strict cookie), and forwards each request to the upstream unchanged in path and query (byte for byte),
//! signed with credentials fetched for that request (SigV4, so they refresh) or basic auth. The client's own
//! `Authorization`, `Cookie` and `x-amz-*` headers never go upstream; the upstream's cookies (the security plugin's
//! tenant) live in the proxy's own jar. Upstream redirects are returned, not followed, with `Location` rewritten to
//! the local address when it points at the upstream itself.
//!
//! Bodies stream both ways with an idle timeout (`--idle-timeout`, hidden; 120 s): no byte for that long while
//! the proxy waits for one ends the exchange, and says so on stderr; a long transfer that keeps moving is never
//! cut. Response bodies are passed on frame by frame as they arrive. Request bodies to a basic-auth (or no-auth)
//! upstream stream straight through. Request bodies to a SigV4 upstream cannot: the signature covers the body's
//! SHA-256 (`x-amz-content-sha256`), and AWS documents the `UNSIGNED-PAYLOAD` alternative for Amazon S3 only —
//! "Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk", Amazon S3 API
//! Reference (<https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>) — while "Making and
//! signing OpenSearch Service requests", Amazon OpenSearch Service Developer Guide
//! (<https://docs.aws.amazon.com/opensearch-service/latest/developerguide/managedomains-signing-service-requests.html>)
//! asks for Signature Version 4 and offers no unsigned payload. So such a body is hashed as it arrives: held in
//! memory up to [`SPOOL_ABOVE`], beyond that spooled to a temporary file (mode 0600, unlinked at once on Unix),
//! then streamed from there once its hash is signed; at most [`MAX_REQUEST_BODY`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::opensearch::client::{host_header, redact_url, Client};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
type Upstream = hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>;

/// A body that stays silent this long (either way) while the proxy waits for it ends the exchange (`--idle-timeout`).
pub const IDLE: Duration = Duration::from_secs(120);
/// A request body for a SigV4 upstream is held in memory up to this size, and spooled to a temporary file beyond.
pub const SPOOL_ABOVE: usize = 8 << 20;
/// The largest request body forwarded to a SigV4 upstream (it is hashed before it is sent). OpenSearch refuses
/// bodies over `http.max_content_length` (100 MB by default) anyway.
pub const MAX_REQUEST_BODY: u64 = 256 << 20;
/// How long a client may take to send a request's headers.
const HEADER_READ: Duration = Duration::from_secs(30);
/// How much of a refusal's body is read to explain it.
const REFUSAL_BODY: usize = 64 << 10;

pub struct Config {
    /// 0: a free port
    pub port: u16,
    pub open_browser: bool,
    /// the Dashboards base URL (its origin is the upstream), with the endpoint's auth
    pub client: Client,
    /// where the token sends the browser (a path on the upstream)
    pub landing: String,
    /// the idle timeout of bodies, both ways ([`IDLE`] by default)
    pub idle: Duration,
}

struct State {
    client: Client,
    upstream: Upstream,
    /// `scheme://host[:port]` of the upstream, as requests are built and `Location` headers are matched
    origin: String,
    host: String,
    /// the upstream for messages (no credentials)
    display: String,
    port: u16,
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
    idle: Duration,
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

/// Equal, in time that depends on neither secret: both are hashed first, and the digests (fixed length, unknown
/// to whoever guesses) are compared without an early exit.
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::Digest;
    let (x, y) = (sha2::Sha256::digest(a.as_bytes()), sha2::Sha256::digest(b.as_bytes()));
    std::hint::black_box(x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q))) == 0
}

fn upstream_client(ca_pem: Option<&[u8]>) -> anyhow::Result<Upstream> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    crate::aws::ensure_tls_provider();
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
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).pool_idle_timeout(Duration::from_secs(60)).build(https))
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
        port,
        local: format!("http://127.0.0.1:{port}"),
        landing: cfg.landing,
        token: token.clone(),
        token_used: AtomicBool::new(false),
        cookie_name: format!("trailsetup_proxy_{port}"),
        session: random_hex()?,
        jar: Mutex::new(BTreeMap::new()),
        warned_forbidden: AtomicBool::new(false),
        idle: cfg.idle,
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
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ).keep_alive(true);
                let conn = http.serve_connection(TokioIo::new(stream), svc);
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

/// Is this request addressed to the proxy itself? DNS rebinding (a site whose name was made to resolve to
/// 127.0.0.1) sends its own name as `Host`; a page of another origin (another port on this machine is another
/// origin, yet the same site to SameSite cookies) sends its `Origin`. Both are refused, before anything else.
fn addressed_here(st: &State, h: &HeaderMap, uri: &http::Uri) -> Result<(), String> {
    let ours = |authority: &str| {
        let a = authority.to_ascii_lowercase();
        a == format!("127.0.0.1:{}", st.port) || a == format!("localhost:{}", st.port)
    };
    let hosts: Vec<&str> = h.get_all(header::HOST).iter().filter_map(|v| v.to_str().ok()).collect();
    let authority = uri.authority().map(|a| a.as_str());
    let host_ok = matches!(hosts.as_slice(), [one] if ours(one)) && authority.is_none_or(ours);
    if !host_ok {
        let named = authority.or(hosts.first().copied()).unwrap_or("(none)");
        return Err(format!(
            "This proxy answers only requests addressed to http://127.0.0.1:{port} or http://localhost:{port}, not to \
             {named:?} (a page of another site whose name resolves to this machine is refused). Open the URL \
             `trailsetup dashboards` printed.",
            port = st.port
        ));
    }
    if let Some(o) = h.get(header::ORIGIN) {
        let o = o.to_str().unwrap_or_default();
        let here = o.strip_prefix("http://").is_some_and(ours);
        if !here {
            return Err(format!(
                "A request from the page of another origin ({o:?}) is refused: only pages this proxy served \
                 (http://127.0.0.1:{}) may call it.",
                st.port
            ));
        }
    }
    Ok(())
}

/// An answer given before the request's body was read: the connection closes after it, and says so (a client
/// that sent its next request on it would otherwise see it dropped).
fn closing(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let html = wants_html(req.headers());
    let unread = |r: Response<ProxyBody>| if req.body().is_end_stream() { r } else { closing(r) };
    if let Err(why) = addressed_here(&st, req.headers(), req.uri()) {
        tracing::warn!("{} {}: refused: {why}", req.method(), req.uri().path());
        return Ok(unread(page(StatusCode::FORBIDDEN, html, "Forbidden", &why)));
    }
    // a tunnel or an echo of our own headers is nothing Dashboards needs
    if req.method() == Method::CONNECT || req.method() == Method::TRACE {
        return Ok(closing(page(StatusCode::METHOD_NOT_ALLOWED, html, "Method Not Allowed", &format!("{} is not forwarded.", req.method()))));
    }
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
                // no `Secure`: the proxy is plain http on loopback, where a Secure cookie would not be kept
                if let Ok(v) = HeaderValue::from_str(&format!("{}={}; Path=/; HttpOnly; SameSite=Strict", st.cookie_name, st.session)) {
                    h.insert(header::SET_COOKIE, v);
                }
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return Ok(r);
            }
            return Ok(unread(page(
                StatusCode::UNAUTHORIZED,
                html,
                "Unauthorized",
                "This link was used already, or is not the one trailsetup printed: each link works once. Stop \
                 `trailsetup dashboards` (Ctrl-C) and run it again for a new one.",
            )));
        }
    }
    if !has_session(&st, req.headers()) {
        return Ok(unread(page(
            StatusCode::UNAUTHORIZED,
            html,
            "Unauthorized",
            "Open the URL `trailsetup dashboards` printed (with its token) in this browser first; nothing was sent \
             to OpenSearch Dashboards.",
        )));
    }
    Ok(forward(&st, req, html).await.unwrap_or_else(|r| r))
}

// --- bodies: the idle timeout, the spool ---

/// What a body wrapped in [`Idle`] reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyEvent {
    /// a frame passed
    Frame,
    /// nothing arrived within the idle timeout: the body ends with an error
    Idle,
    /// the body failed (its connection broke)
    Failed,
}

type OnEvent = Box<dyn Fn(BodyEvent) + Send>;

#[derive(Debug)]
struct IdleTimeout(Duration);

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no data for {} s", self.0.as_secs())
    }
}

impl std::error::Error for IdleTimeout {}

/// A body passed on frame by frame. The idle clock runs only while the receiving side waits for the next frame (a
/// slow reader on the far side, which stops the polling, does not count), and restarts with each frame: a long
/// transfer that keeps moving is never cut; one silent for `idle` ends with an error, and the connection with it.
struct Idle<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
    ended: bool,
    failed: bool,
    /// the exact length, when the inner body does not know it (a spooled file)
    len: Option<u64>,
    on_event: OnEvent,
}

impl<B> Idle<B> {
    fn new(inner: B, idle: Duration, on_event: OnEvent) -> Idle<B> {
        Idle { inner, idle, sleep: Box::pin(tokio::time::sleep(idle)), waiting: false, ended: false, failed: false, len: None, on_event }
    }

    fn with_len(mut self, len: u64) -> Idle<B> {
        self.len = Some(len);
        self
    }
}

impl<B> Body for Idle<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.ended || this.failed {
            return Poll::Ready(None);
        }
        if !this.waiting {
            let deadline = tokio::time::Instant::now() + this.idle;
            this.sleep.as_mut().reset(deadline);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                this.waiting = false;
                (this.on_event)(BodyEvent::Frame);
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.failed = true;
                (this.on_event)(BodyEvent::Failed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.waiting = true;
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.failed = true;
                        (this.on_event)(BodyEvent::Idle);
                        Poll::Ready(Some(Err(Box::new(IdleTimeout(this.idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (!self.failed && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match self.len {
            Some(n) => SizeHint::with_exact(n),
            None => self.inner.size_hint(),
        }
    }
}

/// One exchange with the upstream, as its request body goes: when a byte last moved toward the upstream (the wait
/// for the answer is an idle wait too: it restarts while an upload progresses), and whether the browser's body
/// stalled or broke (then the answer is ours, not the upstream's).
struct Exchange {
    start: tokio::time::Instant,
    last_ms: AtomicU64,
    stalled: AtomicBool,
    broken: AtomicBool,
}

impl Exchange {
    fn new() -> Arc<Exchange> {
        Arc::new(Exchange { start: tokio::time::Instant::now(), last_ms: AtomicU64::new(0), stalled: AtomicBool::new(false), broken: AtomicBool::new(false) })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Duration {
        Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// The events of a request body on its way to the upstream.
    fn watcher(self: &Arc<Self>, label: String, idle: Duration) -> OnEvent {
        let ex = self.clone();
        Box::new(move |e| match e {
            BodyEvent::Frame => ex.touch(),
            BodyEvent::Idle => {
                ex.stalled.store(true, Ordering::SeqCst);
                eprintln!("{label}: the request body stopped arriving (nothing for {} s): the request was dropped", idle.as_secs());
            }
            BodyEvent::Failed => ex.broken.store(true, Ordering::SeqCst),
        })
    }
}

/// A request body spooled to disk: its file is removed when this is dropped — on Unix at once, as soon as it is
/// open (the open file outlives its name, and nobody else can open it), so `path` is `None` there.
struct Spool {
    path: Option<std::path::PathBuf>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn spool_file() -> std::io::Result<(tokio::fs::File, Spool)> {
    let name = random_hex().map_err(std::io::Error::other)?;
    let path = std::env::temp_dir().join(format!("trailsetup-proxy-{}.body", &name[..24]));
    let mut o = tokio::fs::OpenOptions::new();
    o.read(true).write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    let f = o.open(&path).await?;
    // Unix: the name goes now, the open file stays ours alone; elsewhere (or should that fail) it goes on drop
    let unlinked = cfg!(unix) && std::fs::remove_file(&path).is_ok();
    Ok((f, Spool { path: (!unlinked).then_some(path) }))
}

/// A request body read for signing: where it is, its length and SHA-256 (lowercase hex).
enum Payload {
    Memory(Bytes),
    File { file: tokio::fs::File, spool: Spool, len: u64 },
}

/// Read a request body whole for SigV4, hashing it as it arrives, each frame within `idle`: in memory up to
/// [`SPOOL_ABOVE`], then in a spool file; at most [`MAX_REQUEST_BODY`]. The error is the answer to the browser.
async fn read_for_signing<B>(b: B, idle: Duration, html: bool, label: &str) -> Result<(Payload, String), Response<ProxyBody>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    // the body was not read whole: its connection cannot carry another request
    read_and_hash(b, idle, html, label).await.map_err(closing)
}

async fn read_and_hash<B>(mut b: B, idle: Duration, html: bool, label: &str) -> Result<(Payload, String), Response<ProxyBody>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use sha2::Digest;
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let spool_failed = |e: std::io::Error| {
        let dir = std::env::temp_dir();
        eprintln!("{label}: cannot spool the request body to {}: {e}", dir.display());
        page(
            StatusCode::INSUFFICIENT_STORAGE,
            html,
            "Insufficient Storage",
            &format!(
                "trailsetup could not keep this request body in {} ({e}) while signing it: point TMPDIR at a directory \
                 with room, and restart `trailsetup dashboards`.",
                dir.display()
            ),
        )
    };
    let mut hash = sha2::Sha256::new();
    let mut mem = BytesMut::new();
    let mut spooled: Option<(tokio::fs::File, Spool)> = None;
    let mut len = 0u64;
    loop {
        let frame = match tokio::time::timeout(idle, b.frame()).await {
            Err(_) => {
                eprintln!("{label}: the request body stopped arriving (nothing for {} s): the request was dropped", idle.as_secs());
                return Err(page(
                    StatusCode::REQUEST_TIMEOUT,
                    html,
                    "Request Timeout",
                    &format!("The request body stopped arriving (nothing for {} s); nothing was sent to OpenSearch Dashboards.", idle.as_secs()),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(page(StatusCode::BAD_REQUEST, html, "Bad Request", &format!("reading the request body: {e}")));
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(d) = frame.into_data() else { continue };
        len += d.len() as u64;
        if len > MAX_REQUEST_BODY {
            return Err(page(
                StatusCode::PAYLOAD_TOO_LARGE,
                html,
                "Payload Too Large",
                &format!("The request body is over {} MiB, more than OpenSearch accepts; nothing was sent.", MAX_REQUEST_BODY >> 20),
            ));
        }
        hash.update(&d);
        match &mut spooled {
            Some((f, _)) => f.write_all(&d).await.map_err(spool_failed)?,
            None if mem.len() + d.len() > SPOOL_ABOVE => {
                let (mut f, spool) = spool_file().await.map_err(spool_failed)?;
                f.write_all(&mem).await.map_err(spool_failed)?;
                f.write_all(&d).await.map_err(spool_failed)?;
                mem = BytesMut::new();
                spooled = Some((f, spool));
            }
            None => mem.extend_from_slice(&d),
        }
    }
    let sha = hex::encode(hash.finalize());
    let payload = match spooled {
        Some((mut file, spool)) => {
            file.flush().await.map_err(spool_failed)?;
            file.seek(std::io::SeekFrom::Start(0)).await.map_err(spool_failed)?;
            Payload::File { file, spool, len }
        }
        None => Payload::Memory(mem.freeze()),
    };
    Ok((payload, sha))
}

/// A spooled body, read back in chunks (the spool file goes when the last chunk has been read, or the upload ends).
type FrameStream = Pin<Box<dyn futures::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send>>;

fn file_body(file: tokio::fs::File, spool: Spool) -> StreamBody<FrameStream> {
    use tokio::io::AsyncReadExt;
    let s = futures::stream::unfold(Some((file, spool)), |state| async move {
        let (mut f, spool) = state?;
        let mut buf = BytesMut::with_capacity(256 << 10);
        match f.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(Frame::data(buf.freeze())), Some((f, spool)))),
            Err(e) => Some((Err(BoxError::from(e)), None)),
        }
    });
    StreamBody::new(Box::pin(s))
}

/// Up to `max` bytes of a body (within a few seconds): enough to explain a refusal.
async fn read_prefix(mut b: Incoming, max: usize) -> Bytes {
    let mut buf = BytesMut::new();
    while buf.len() < max {
        match tokio::time::timeout(Duration::from_secs(10), b.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            _ => break,
        }
    }
    buf.truncate(max);
    buf.freeze()
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

/// A request target for messages: at most 200 characters.
fn short(pq: &str) -> String {
    if pq.len() <= 200 {
        pq.to_string()
    } else {
        format!("{}…", &pq[..pq.floor_char_boundary(200)])
    }
}

async fn forward(st: &State, req: Request<Incoming>, html: bool) -> Result<Response<ProxyBody>, Response<ProxyBody>> {
    let (parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let label = format!("{} {}", parts.method, short(pq));
    let uri_str = format!("{}{}", st.origin, pq);
    let uri: http::Uri = uri_str
        .parse()
        .map_err(|e| page(StatusCode::BAD_REQUEST, html, "Bad Request", &format!("the request target {pq:?}: {e}")))?;
    let conn = connection_tokens(&parts.headers);
    let mut headers = HeaderMap::new();
    for (k, v) in parts.headers.iter() {
        // the browser's own credentials and anything SigV4 writes never pass; hyper sets the length or chunking
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
    let sign_failed = |e: anyhow::Error| page(StatusCode::INTERNAL_SERVER_ERROR, html, "Cannot sign the request", &format!("{e:#}"));
    let ex = Exchange::new();
    let up_body = if st.client.signs_payload() {
        let (payload, sha) = read_for_signing(body, st.idle, html, &label).await?;
        st.client.authorize_hashed(&parts.method, &uri_str, &st.host, &mut signed, &sha).await.map_err(sign_failed)?;
        match payload {
            Payload::Memory(b) => full(b),
            Payload::File { file, spool, len } => {
                Idle::new(file_body(file, spool), st.idle, ex.watcher(label.clone(), st.idle)).with_len(len).boxed_unsync()
            }
        }
    } else {
        // no signature over the body: it streams straight through, with the idle timeout
        st.client.authorize(&parts.method, &uri_str, &st.host, &mut signed, &[]).await.map_err(sign_failed)?;
        Idle::new(body, st.idle, ex.watcher(label.clone(), st.idle)).boxed_unsync()
    };
    for (k, v) in signed.iter() {
        headers.insert(k.clone(), v.clone());
    }
    let mut up = Request::new(up_body);
    *up.method_mut() = parts.method.clone();
    *up.uri_mut() = uri;
    *up.headers_mut() = headers;
    // the answer's head within --timeout of the last byte sent: an upload that keeps moving is waited for
    let limit = st.client.timeout();
    // (a body read whole for its signature may have taken a while: the wait starts now)
    ex.touch();
    let call = st.upstream.request(up);
    tokio::pin!(call);
    let answered = loop {
        let seen = ex.last();
        tokio::select! {
            r = &mut call => break Some(r),
            _ = tokio::time::sleep_until(ex.start + seen + limit) => {
                if ex.last() == seen {
                    break None;
                }
            }
        }
    };
    let resp = match answered {
        Some(Ok(r)) => r,
        Some(Err(_)) if ex.stalled.load(Ordering::SeqCst) => {
            return Err(closing(page(
                StatusCode::REQUEST_TIMEOUT,
                html,
                "Request Timeout",
                &format!("The request body stopped arriving (nothing for {} s); the request to OpenSearch Dashboards was abandoned.", st.idle.as_secs()),
            )));
        }
        Some(Err(e)) if ex.broken.load(Ordering::SeqCst) => {
            return Err(closing(page(StatusCode::BAD_REQUEST, html, "Bad Request", &format!("The request body did not arrive whole ({e}); nothing was answered."))));
        }
        Some(Err(e)) => {
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                why.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{label}: OpenSearch Dashboards at {} does not answer ({why})", st.display);
            return Err(page(
                StatusCode::BAD_GATEWAY,
                html,
                "Bad Gateway",
                &format!(
                    "OpenSearch Dashboards at {} does not answer from this machine ({why}). Check that this machine \
                     reaches it (a domain in a VPC answers only inside it: use a VPN or a bastion there), or pass \
                     --opensearch-url / --dashboards-url.",
                    st.display
                ),
            ));
        }
        None => {
            eprintln!("{label}: OpenSearch Dashboards at {} did not answer within {} s", st.display, limit.as_secs());
            return Err(page(
                StatusCode::GATEWAY_TIMEOUT,
                html,
                "Gateway Timeout",
                &format!(
                    "OpenSearch Dashboards at {} did not answer within {} s. Try again; a slow query may need a \
                     longer --timeout.",
                    st.display,
                    limit.as_secs()
                ),
            ));
        }
    };
    let (mut rp, rbody) = resp.into_parts();
    keep_cookies(st, &rp.headers);
    if rp.status == StatusCode::FORBIDDEN {
        let detail = read_prefix(rbody, REFUSAL_BODY).await;
        let detail: String = String::from_utf8_lossy(&detail).chars().take(600).collect();
        let message = format!(
            "OpenSearch Dashboards at {} refused the caller (403 Forbidden{}). The caller (the IAM identity these \
             credentials belong to) must be mapped in the domain's security plugin (fine-grained access control: \
             Security → Roles → a role such as all_access or opensearch_dashboards_user → Mapped users → its IAM \
             ARN as a backend role), and the domain's access policy must allow it es:ESHttp*.",
            st.display,
            if detail.trim().is_empty() { String::new() } else { format!(": {}", detail.trim()) }
        );
        if !st.warned_forbidden.swap(true, Ordering::SeqCst) {
            eprintln!("{label}: {message}");
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
    let (display, idle) = (st.display.clone(), st.idle);
    let on_event: OnEvent = Box::new(move |e| match e {
        BodyEvent::Idle => eprintln!(
            "{label}: OpenSearch Dashboards at {display} sent nothing for {} s: the response was cut off and its \
             connection closed",
            idle.as_secs()
        ),
        BodyEvent::Failed => eprintln!("{label}: the response from OpenSearch Dashboards at {display} broke off: its connection was closed"),
        BodyEvent::Frame => {}
    });
    Ok(Response::from_parts(rp, Idle::new(rbody, st.idle, on_event).boxed_unsync()))
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
            port: 8080,
            local: "http://127.0.0.1:8080".into(),
            landing: "/_dashboards/app/dashboards".into(),
            token: "t".repeat(64),
            token_used: AtomicBool::new(false),
            cookie_name: "trailsetup_proxy_8080".into(),
            session: "s".repeat(64),
            jar: Mutex::new(BTreeMap::new()),
            warned_forbidden: AtomicBool::new(false),
            idle: IDLE,
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
        // another host that merely starts the same stays, and so does another scheme or port of the same host
        assert_eq!(rewrite_location(&st, "https://search-x.us-east-1.es.amazonaws.com.evil.example/"), "https://search-x.us-east-1.es.amazonaws.com.evil.example/");
        assert_eq!(rewrite_location(&st, "https://search-x.us-east-1.es.amazonaws.com@evil.example/"), "https://search-x.us-east-1.es.amazonaws.com@evil.example/");
        assert_eq!(rewrite_location(&st, "http://search-x.us-east-1.es.amazonaws.com/a"), "http://search-x.us-east-1.es.amazonaws.com/a");
        assert_eq!(rewrite_location(&st, "https://search-x.us-east-1.es.amazonaws.com:8443/a"), "https://search-x.us-east-1.es.amazonaws.com:8443/a");
    }

    #[test]
    fn session_cookie_and_jar() {
        let st = state();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("a=b; trailsetup_proxy_8080={}", "s".repeat(64))).unwrap());
        assert!(has_session(&st, &h));
        h.insert(header::COOKIE, HeaderValue::from_static("trailsetup_proxy_8080=nope"));
        assert!(!has_session(&st, &h));
        // another port's cookie of the same value is not ours
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("trailsetup_proxy_8081={}", "s".repeat(64))).unwrap());
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
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab") && !same_secret("", "a"));
    }

    #[test]
    fn only_requests_addressed_here_are_answered() {
        let st = state();
        let uri: http::Uri = "/_dashboards/app/home".parse().unwrap();
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(addressed_here(&st, &with(&[("host", "127.0.0.1:8080")]), &uri).is_ok());
        assert!(addressed_here(&st, &with(&[("host", "LOCALHOST:8080"), ("origin", "http://localhost:8080")]), &uri).is_ok());
        assert!(addressed_here(&st, &with(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]), &uri).is_ok());
        // DNS rebinding: another name, another port, no Host, two Hosts
        let e = addressed_here(&st, &with(&[("host", "rebind.evil.example:8080")]), &uri).unwrap_err();
        assert!(e.contains("rebind.evil.example:8080") && e.contains("http://127.0.0.1:8080"), "{e}");
        assert!(addressed_here(&st, &with(&[("host", "127.0.0.1:8081")]), &uri).is_err());
        assert!(addressed_here(&st, &with(&[("host", "127.0.0.1")]), &uri).is_err());
        assert!(addressed_here(&st, &with(&[]), &uri).is_err());
        assert!(addressed_here(&st, &with(&[("host", "127.0.0.1:8080"), ("host", "evil.example")]), &uri).is_err());
        // an absolute-form target names its own authority
        let abs: http::Uri = "http://evil.example:8080/_dashboards/".parse().unwrap();
        assert!(addressed_here(&st, &with(&[("host", "127.0.0.1:8080")]), &abs).is_err());
        // pages of other origins: another port of this machine, another scheme, a sandboxed frame
        for o in ["http://127.0.0.1:9999", "https://127.0.0.1:8080", "null", "http://evil.example"] {
            let h = with(&[("host", "127.0.0.1:8080"), ("origin", Box::leak(o.to_string().into_boxed_str()))]);
            assert!(addressed_here(&st, &h, &uri).is_err(), "{o}");
        }
    }

    #[test]
    fn hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, X-Private"));
        let conn = connection_tokens(&h);
        for n in ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization", "x-private"] {
            assert!(hop_by_hop(&header::HeaderName::from_static(n), &conn), "{n}");
        }
        assert!(!hop_by_hop(&header::CONTENT_TYPE, &conn));
        assert!(!hop_by_hop(&header::HeaderName::from_static("osd-xsrf"), &conn));
    }

    /// A body fed by a channel: frames when the test sends them, silence otherwise.
    fn channel_body() -> (futures::channel::mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>, impl Body<Data = Bytes, Error = BoxError> + Unpin) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (tx, StreamBody::new(rx))
    }

    fn recorder() -> (Arc<Mutex<Vec<BodyEvent>>>, OnEvent) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (seen, Box::new(move |e| s.lock().unwrap().push(e)))
    }

    #[tokio::test]
    async fn idle_bodies_end_but_moving_ones_do_not() {
        // (real time, with wide margins: the outcomes are asserted, never durations)
        // a frame every 200 ms under a 2 s idle timeout: 12 frames, longer than the timeout in all, never cut
        let (tx, b) = channel_body();
        let (seen, on) = recorder();
        let mut body = Idle::new(b, Duration::from_secs(2), on);
        tokio::spawn(async move {
            for i in 0..12u8 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                tx.unbounded_send(Ok(Frame::data(Bytes::from(vec![i; 4])))).unwrap();
            }
        });
        let mut got = Vec::new();
        while let Some(f) = body.frame().await {
            got.extend_from_slice(&f.unwrap().into_data().unwrap());
        }
        assert_eq!(got.len(), 48);
        assert_eq!(seen.lock().unwrap().iter().filter(|e| **e == BodyEvent::Frame).count(), 12);
        // silence: the body ends with an error, once, and says so
        let (tx, b) = channel_body();
        let (seen, on) = recorder();
        let mut body = Idle::new(b, Duration::from_millis(300), on);
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"first")))).unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let e = body.frame().await.unwrap().unwrap_err();
        assert_eq!(e.to_string(), "no data for 0 s");
        assert!(body.frame().await.is_none());
        assert_eq!(*seen.lock().unwrap(), [BodyEvent::Frame, BodyEvent::Idle]);
        drop(tx);
        // a slow reader does not count: frames wait while nobody polls, and the clock starts with the next poll
        let (tx, b) = channel_body();
        let (seen, on) = recorder();
        let mut body = Idle::new(b, Duration::from_millis(300), on);
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"a")))).unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"b")))).unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert_eq!(*seen.lock().unwrap(), [BodyEvent::Frame, BodyEvent::Frame]);
    }

    #[tokio::test]
    async fn request_bodies_over_the_threshold_are_spooled_and_hashed() {
        use sha2::Digest;
        // 20 MiB in 1 MiB frames: past SPOOL_ABOVE, so it is read back from a file, byte for byte
        let chunks: Vec<Bytes> = (0..20u8).map(|i| Bytes::from(vec![i; 1 << 20])).collect();
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let (tx, b) = channel_body();
        for c in &chunks {
            tx.unbounded_send(Ok(Frame::data(c.clone()))).unwrap();
        }
        drop(tx);
        let (payload, sha) = read_for_signing(b, IDLE, false, "PUT /x").await.map_err(|r| r.status()).unwrap();
        assert_eq!(sha, hex::encode(sha2::Sha256::digest(&all)));
        let Payload::File { file, spool, len } = payload else { panic!("not spooled") };
        assert_eq!(len, all.len() as u64);
        let body = Idle::new(file_body(file, spool), IDLE, Box::new(|_| {})).with_len(len);
        assert_eq!(body.size_hint().exact(), Some(len));
        let back = body.collect().await.unwrap().to_bytes();
        assert!(back == all);
        // a small one stays in memory
        let (payload, sha) = read_for_signing(Full::new(Bytes::from_static(b"{}")), IDLE, false, "POST /x").await.map_err(|r| r.status()).unwrap();
        assert!(matches!(payload, Payload::Memory(b) if &b[..] == b"{}"));
        assert_eq!(sha, hex::encode(sha2::Sha256::digest(b"{}")));
    }

    #[tokio::test]
    async fn a_stalled_request_body_is_a_408() {
        let (tx, b) = channel_body();
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"part")))).unwrap();
        let r = read_for_signing(b, Duration::from_millis(300), false, "POST /x").await.err().unwrap();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        drop(tx);
    }
}
