//! HTTP mode: each worker keeps one HTTP/1.1 keep-alive connection per
//! target and sends requests round-robin over the targets.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject as _;
use tower_service::Service;

use crate::driver::Client;
use crate::stats::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL `{url}`: {why}")]
    Url { url: String, why: String },
    #[error("bad header `{0}`: expected `Name: value`")]
    Header(String),
    #[error("cannot connect to {target}: {why}")]
    Connect { target: String, why: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// What every request carries.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub timeout: Duration,
}

/// A target URL, checked: http or https, with a host.
#[derive(Debug, Clone)]
pub struct Target {
    uri: Uri,
    host: HeaderValue,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |why: &str| HttpError::Url {
            url: redact_url(url),
            why: why.to_string(),
        };
        if !url.contains("://") {
            return Err(bad("no scheme: write http://host/path"));
        }
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => return Err(bad(&format!("scheme `{other}` is not http or https"))),
            None => return Err(bad("no scheme: write http://host/path")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL: pass them as --header Authorization"));
        }
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| bad(&e.to_string()))?;
        Ok(Target { uri, host })
    }

    /// The URL as shown in reports.
    pub fn display(&self) -> String {
        self.uri.to_string()
    }
}

/// Hides `user:password@` in a URL that is about to be printed. The
/// userinfo ends at the *last* `@` before the path: a password may hold `@`.
fn redact_url(url: &str) -> String {
    let Some(s) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[s + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}***{}", &url[..s + 3], &rest[at..]),
        None => url.to_string(),
    }
}

/// Parses `Name: value` headers.
pub fn parse_headers(raw: &[String]) -> Result<HeaderMap, HttpError> {
    let mut headers = HeaderMap::new();
    for (i, h) in raw.iter().enumerate() {
        // The value may be a secret (Authorization): never echo it back, and
        // without a `:` there is no telling name from value.
        let name_only = || {
            HttpError::Header(match h.split_once(':') {
                Some((name, _)) => name.trim().to_string(),
                None => format!("number {} (no `:`; not shown, it may hold a secret)", i + 1),
            })
        };
        let (name, value) = h.split_once(':').ok_or_else(name_only)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| name_only())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| name_only())?;
        headers.append(name, value);
    }
    Ok(headers)
}

type Connector = HttpsConnector<HttpConnector>;

/// How to trust https targets.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra CA certificates (PEM) to trust besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept any certificate: for K3s's Traefik with its self-signed
    /// default certificate, never for anything that matters.
    pub insecure: bool,
}

/// The connector every worker shares: plain TCP, or TLS with the system's
/// root certificates (plus `--ca-file`, or none checked with `--insecure`).
pub fn connector(tls: &TlsOptions) -> Result<Connector, HttpError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = &tls.ca_file {
        let bad = |why: String| HttpError::Tls(format!("--ca-file {}: {why}", path.display()));
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if tls.insecure {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AnyCertificate(provider)));
    }
    let builder = HttpsConnectorBuilder::new().with_tls_config(config);
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}

/// `--insecure`: every certificate is accepted; signatures are still
/// checked, so the connection is at least with the certificate's holder.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens and closes one connection to each target, so a wrong port or host
/// fails before the run instead of as thousands of errors.
pub async fn check_reachable(targets: &[Target], connector: &Connector) -> Result<(), HttpError> {
    for t in targets {
        let mut c = connector.clone();
        c.call(t.uri.clone()).await.map_err(|e| HttpError::Connect {
            target: t.display(),
            why: describe_connect_error(&*e),
        })?;
    }
    Ok(())
}

fn describe_connect_error(e: &(dyn std::error::Error + 'static)) -> String {
    match connect_kind(e).as_str() {
        "refused" => "connection refused (is the server running on that port?)".into(),
        "dns" => format!("host not found: {e}"),
        _ => {
            let mut why = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                why = format!("{why}: {s}");
                src = s.source();
            }
            why
        }
    }
}

/// Sorts a connect failure into an error kind.
fn connect_kind(e: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "refused",
                std::io::ErrorKind::TimedOut => "connect timeout",
                std::io::ErrorKind::ConnectionReset => "reset",
                _ if io.to_string().contains("dns error") => "dns",
                _ => "connect",
            }
            .into();
        }
        if err.to_string().contains("dns error") {
            return "dns".into();
        }
        cur = err.source();
    }
    "connect".into()
}

/// One worker's connections.
#[derive(Debug)]
pub struct HttpClient {
    spec: Arc<RequestSpec>,
    targets: Arc<[Target]>,
    connector: Connector,
    conns: Vec<Option<SendRequest<Full<Bytes>>>>,
}

impl HttpClient {
    pub fn new(spec: Arc<RequestSpec>, targets: Arc<[Target]>, connector: Connector) -> Self {
        let conns = targets.iter().map(|_| None).collect();
        HttpClient {
            spec,
            targets,
            connector,
            conns,
        }
    }

    async fn connect(&mut self, i: usize) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
        let io = self
            .connector
            .call(self.targets[i].uri.clone())
            .await
            .map_err(|e| connect_kind(&*e))?;
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|_| ErrorKind::from("handshake"))?;
        tokio::spawn(async move {
            // Ends when the worker drops the sender or the server closes.
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn send(&mut self, i: usize) -> Result<(), ErrorKind> {
        let mut sender = match self.conns[i].take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect(i).await?,
        };
        if sender.ready().await.is_err() {
            sender = self.connect(i).await?;
        }
        let target = &self.targets[i];
        let mut req = Request::builder()
            .method(self.spec.method.clone())
            .uri(target.uri.path_and_query().map_or("/", |p| p.as_str()))
            .body(Full::new(self.spec.body.clone()))
            .map_err(|_| ErrorKind::from("request"))?;
        *req.headers_mut() = self.spec.headers.clone();
        req.headers_mut().insert(HOST, target.host.clone());
        let resp = sender.send_request(req).await.map_err(|e| request_kind(&e))?;
        let status = resp.status();
        // Read the whole body: the response is not done until it is.
        let body = resp.into_body().collect().await;
        if body.is_err() {
            return Err("body".into());
        }
        self.conns[i] = Some(sender);
        match status.as_u16() {
            s if s < 400 => Ok(()),
            s @ (401 | 403) => Err(format!("auth ({s})")),
            s => Err(format!("status {s}")),
        }
    }
}

fn request_kind(e: &hyper::Error) -> ErrorKind {
    if e.is_incomplete_message() || e.is_canceled() {
        return "closed".into();
    }
    if e.is_parse() {
        return "protocol".into();
    }
    match e.source().and_then(|s| s.downcast_ref::<std::io::Error>()) {
        Some(io) if io.kind() == std::io::ErrorKind::ConnectionReset => "reset".into(),
        _ => "io".into(),
    }
}

impl Client for HttpClient {
    fn op(&self, _: u64) -> &'static str {
        "request"
    }

    async fn call(&mut self, n: u64) -> Result<(), ErrorKind> {
        let i = (n % self.targets.len() as u64) as usize;
        match tokio::time::timeout(self.spec.timeout, self.send(i)).await {
            Ok(outcome) => outcome,
            // The connection is mid-response: drop it, reconnect next time.
            Err(_) => {
                self.conns[i] = None;
                Err("timeout".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_echo_credentials() {
        assert!(Target::parse("http://127.0.0.1:8080/x?y=1").is_ok());
        let err = |u: &str| Target::parse(u).unwrap_err().to_string();
        assert_eq!(
            err("127.0.0.1:8080"),
            "bad URL `127.0.0.1:8080`: no scheme: write http://host/path"
        );
        assert_eq!(
            err("/just/a/path"),
            "bad URL `/just/a/path`: no scheme: write http://host/path"
        );
        assert_eq!(
            err("ftp://h/"),
            "bad URL `ftp://h/`: scheme `ftp` is not http or https"
        );
        let e = err("http://admin:hunter2@h/");
        assert!(
            !e.contains("hunter2") && e.contains("credentials in the URL"),
            "{e}"
        );
        // A password holding `@`: nothing of it shows.
        for url in ["http://admin:hun@ter2@h/", "http://admin:p@ss@w0rd@h:80/x@y"] {
            let e = err(url);
            assert!(
                !e.contains("ter2") && !e.contains("ss@") && !e.contains("w0rd"),
                "{e}"
            );
        }
        assert_eq!(redact_url("http://u:p@ss@h/a@b"), "http://***@h/a@b");
    }

    #[test]
    fn headers_parse_and_bad_ones_hide_their_value() {
        let h = parse_headers(&["Authorization: Bearer abc".into(), "X-Run: 1".into()]).unwrap();
        assert_eq!(h["authorization"], "Bearer abc");
        let e = parse_headers(&["Authorization: Bearer s3\u{1}cret".into()])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        // Without a `:` the whole line may be the secret: nothing of it is echoed.
        let e = parse_headers(&["Authorization Bearer s3cret-t0ken".into()])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret") && !e.contains("Bearer"), "{e}");
        assert!(e.contains("number 1"), "{e}");
    }
}
