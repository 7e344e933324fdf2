//! TLS to PostgreSQL, shared by the store and the database actions: libpq's `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey`, over rustls with the ring provider.
//!
//! The driver (tokio-postgres) knows only `sslmode` disable, prefer and require, and refuses
//! the other settings, so [`parse`] takes the TLS settings out of the URL or `key=value` DSN
//! first and hands the rest to the driver. The modes mean what libpq documents:
//!
//! | sslmode | encrypted | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers TLS, else plain | not checked, unless `sslrootcert` is set: then as `verify-ca` |
//! | `require` | always; a server without TLS is refused | not checked, unless `sslrootcert` is set: then as `verify-ca` |
//! | `verify-ca` | always | signed by a CA in `sslrootcert` |
//! | `verify-full` | always | signed by a CA in `sslrootcert`, and names the host connected to |
//!
//! Differences from libpq, each refused with a message rather than ignored: `sslmode=allow`,
//! `sslrootcert=system`, and the default files under `~/.postgresql/` (a path is always given).
//! Under `prefer`, a failed handshake is an error (libpq retries without TLS). SCRAM channel
//! binding is not offered (`channel_binding=require` fails; the default `prefer` logs in).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// The settings [`parse`] takes out of a DSN; the driver never sees them.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// What failed while reading the TLS settings of a DSN or setting up a connection's TLS.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    /// The DSN, once the TLS settings are out, is not one the driver accepts.
    #[error("{0}")]
    Parse(String),
    /// A TLS setting has a value this build does not accept.
    #[error("{setting}: {message}")]
    Setting {
        /// The libpq setting, e.g. `sslrootcert`.
        setting: &'static str,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// A file a setting names cannot be read or holds no usable PEM.
    #[error("{setting}={}: {message}", path.display())]
    File {
        /// The libpq setting, e.g. `sslkey`.
        setting: &'static str,
        /// The file it names.
        path: PathBuf,
        /// Why it cannot be used.
        message: String,
    },
    /// The TLS handshake with the server failed.
    #[error("{0}")]
    Handshake(String),
}

impl PgTlsError {
    fn setting(setting: &'static str, message: impl Into<String>) -> Self {
        Self::Setting {
            setting,
            message: message.into(),
        }
    }

    fn file(setting: &'static str, path: &Path, message: impl ToString) -> Self {
        Self::File {
            setting,
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

/// A driver error with the server's message and SQLSTATE (the driver's Display says only
/// "db error") or its cause (a refused certificate, an I/O error). Never contains the password.
pub fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", d.message(), d.code().code());
        if let Some(detail) = d.detail() {
            s.push_str(": ");
            s.push_str(detail);
        }
        return s;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain otherwise (libpq's default).
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is checked only when `sslrootcert` is set.
    Require,
    /// TLS, and the server's certificate chains to `sslrootcert`.
    VerifyCa,
    /// As `verify-ca`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The setting's value, as written in a DSN.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Result<Self, PgTlsError> {
        Ok(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => {
                return Err(PgTlsError::setting(
                    "sslmode",
                    "allow is not supported (it tries plain first); use disable or prefer",
                ));
            }
            other => {
                return Err(PgTlsError::setting(
                    "sslmode",
                    format!(
                        "{other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                    ),
                ));
            }
        })
    }

    /// What the driver does before the handshake: ask for TLS, and whether plain will do.
    fn driver(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS settings of one DSN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`: PEM file of the CA certificates the server's must chain to.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: PEM file of the client certificate (and its intermediates).
    pub cert: Option<PathBuf>,
    /// `sslkey`: PEM file of the client certificate's private key.
    pub key: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether the server's certificate is checked against `sslrootcert`.
    pub fn verifies_chain(&self) -> bool {
        self.mode != SslMode::Disable && self.root_cert.is_some()
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), PgTlsError> {
        match key {
            "sslmode" => self.mode = SslMode::parse(&value)?,
            "sslrootcert" if value == "system" => {
                return Err(PgTlsError::setting(
                    "sslrootcert",
                    "system (the operating system's CAs) is not supported; give the path of \
                     the CA bundle that signed the server's certificate",
                ));
            }
            "sslrootcert" => self.root_cert = Some(value.into()),
            "sslcert" => self.cert = Some(value.into()),
            "sslkey" => self.key = Some(value.into()),
            _ => {}
        }
        Ok(())
    }

    fn check(&self) -> Result<(), PgTlsError> {
        if matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull) && self.root_cert.is_none()
        {
            return Err(PgTlsError::setting(
                "sslrootcert",
                format!(
                    "sslmode={} needs sslrootcert=PATH, the PEM file of the CA that signed the \
                     server's certificate (remedyd does not read ~/.postgresql/root.crt)",
                    self.mode
                ),
            ));
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(PgTlsError::setting(
                "sslkey",
                "sslcert is set but sslkey is not: give both (the key of the client certificate)",
            )),
            (None, Some(_)) => Err(PgTlsError::setting(
                "sslcert",
                "sslkey is set but sslcert is not: give both",
            )),
            _ => Ok(()),
        }
    }
}

/// Splits a `postgres://` URL or a `key=value` DSN into the driver's config (with the driver's
/// sslmode set) and the TLS settings. Reads no file. Errors never contain the password.
pub fn parse(dsn: &str) -> Result<(tokio_postgres::Config, TlsSettings), PgTlsError> {
    let mut settings = TlsSettings::default();
    let rest = if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        split_url(dsn, &mut settings)?
    } else {
        split_key_values(dsn, &mut settings)?
    };
    settings.check()?;
    let mut config =
        tokio_postgres::Config::from_str(&rest).map_err(|e| PgTlsError::Parse(explain(&e)))?;
    config.ssl_mode(settings.mode.driver());
    Ok((config, settings))
}

/// The URL without the TLS settings of its query string, which go to `settings`.
fn split_url(url: &str, settings: &mut TlsSettings) -> Result<String, PgTlsError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_string());
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match TLS_KEYS.iter().find(|t| **t == k) {
            Some(key) => {
                let value = percent_decode(v).ok_or_else(|| {
                    PgTlsError::setting(key, "the value is not valid percent-encoded UTF-8")
                })?;
                settings.set(key, value)?;
            }
            None => kept.push(pair),
        }
    }
    Ok(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `key=value` DSN without its TLS settings, which go to `settings`. Values follow libpq's
/// quoting: `'…'` with `\'` and `\\` escapes, or unquoted up to whitespace.
fn split_key_values(dsn: &str, settings: &mut TlsSettings) -> Result<String, PgTlsError> {
    let s = dsn.as_bytes();
    let mut i = 0;
    let mut kept: Vec<&str> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= s.len() {
            break;
        }
        let start = i;
        while i < s.len() && s[i] != b'=' && !s[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &dsn[start..i];
        skip_ws(&mut i);
        if s.get(i) != Some(&b'=') {
            // Not ours to report: the driver's message names the problem without the values.
            kept.push(&dsn[start..]);
            break;
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = Vec::new();
        if s.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match s.get(i) {
                    None => return Err(PgTlsError::Parse("unterminated quoted value".into())),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < s.len() => {
                        value.push(s[i + 1]);
                        i += 2;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < s.len() && !s[i].is_ascii_whitespace() {
                if s[i] == b'\\' && i + 1 < s.len() {
                    i += 1;
                }
                value.push(s[i]);
                i += 1;
            }
        }
        match TLS_KEYS.iter().find(|t| **t == key) {
            Some(key) => {
                let value = String::from_utf8(value)
                    .map_err(|_| PgTlsError::setting(key, "the value is not valid UTF-8"))?;
                settings.set(key, value)?;
            }
            None => kept.push(&dsn[start..i]),
        }
    }
    Ok(kept.join(" "))
}

/// Parses `dsn`, sets its TLS up (reading the files it names) and connects; the connection
/// runs on a task of the current runtime. The error never contains the password.
pub async fn connect(dsn: &str) -> Result<tokio_postgres::Client, String> {
    let (config, settings) = parse(dsn).map_err(|e| e.to_string())?;
    let tls = PgTls::new(&settings).map_err(|e| e.to_string())?;
    let (client, conn) = config.connect(tls).await.map_err(|e| explain(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %explain(&e), "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

// === impl PgTls ===

/// The driver's TLS connector for one DSN's [`TlsSettings`]: clone it into a pool.
#[derive(Clone)]
pub struct PgTls {
    /// `None` under `sslmode=disable`.
    shared: Option<Arc<Shared>>,
}

struct Shared {
    config: Arc<ClientConfig>,
    settings: TlsSettings,
}

impl PgTls {
    /// Reads the files `settings` names and builds the rustls client config. Fails, naming
    /// the setting and its file, when one cannot be used.
    pub fn new(settings: &TlsSettings) -> Result<Self, PgTlsError> {
        if settings.mode == SslMode::Disable {
            return Ok(Self { shared: None });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &settings.root_cert {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let certs = read_certs("sslrootcert", path)?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(PgTlsError::file(
                        "sslrootcert",
                        path,
                        "none of its certificates is a usable CA certificate",
                    ));
                }
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| PgTlsError::file("sslrootcert", path, e))?;
                Some(verifier)
            }
            None => None,
        };
        let verifier = Verifier {
            roots,
            check_name: settings.mode == SslMode::VerifyFull,
            provider: provider.clone(),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PgTlsError::setting("sslmode", e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => {
                let certs = read_certs("sslcert", cert)?;
                let key_der = read_key(key)?;
                builder
                    .with_client_auth_cert(certs, key_der)
                    .map_err(|e| PgTlsError::file("sslkey", key, e))?
            }
            _ => builder.with_no_client_auth(),
        };
        // What libpq 17 offers; servers before 17 ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self {
            shared: Some(Arc::new(Shared {
                config: Arc::new(config),
                settings: settings.clone(),
            })),
        })
    }
}

fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PgTlsError> {
    let bytes = std::fs::read(path).map_err(|e| PgTlsError::file(setting, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PgTlsError::file(setting, path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(PgTlsError::file(
            setting,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The client key, refused (as libpq does) when others than its owner may read it.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PgTlsError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| PgTlsError::file("sslkey", path, e))?;
    // libpq: u=rw (0600) or less, or u=rw,g=r (0640) or less when root owns the file.
    let forbidden = if meta.uid() == 0 { 0o137 } else { 0o177 };
    if meta.mode() & forbidden != 0 {
        return Err(PgTlsError::file(
            "sslkey",
            path,
            format!(
                "the private key has mode {:o}: it must be 0600 or less (0640 if owned by root), \
                 as libpq requires",
                meta.mode() & 0o777
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| PgTlsError::file("sslkey", path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| PgTlsError::file("sslkey", path, format!("no PEM private key: {e}")))
}

/// Checks the server's certificate as the mode says; handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    /// The `sslrootcert` chain check; `None`: the certificate is not checked (require, prefer).
    roots: Option<Arc<WebPkiServerVerifier>>,
    /// verify-full: the certificate must name the host.
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain before the name: a name error means the chain is good.
        match roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl Shared {
    /// A handshake error that says which setting refused the server, and why.
    fn explain(&self, host: &str, e: &io::Error) -> String {
        let cert = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .and_then(|r| match r {
                rustls::Error::InvalidCertificate(c) => Some(c),
                _ => None,
            });
        let root = self
            .settings
            .root_cert
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match cert {
            Some(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "the server's certificate does not name host {host:?} (sslmode=verify-full checks \
                 the host name; connect by a name the certificate lists, or use verify-ca): {e}"
            ),
            Some(_) => format!(
                "the server's certificate is refused: {e} (sslrootcert={root}: is this the CA \
                 that signed the server's certificate?)"
            ),
            None => format!(
                "TLS handshake with {host} (sslmode={}): {e}",
                self.settings.mode
            ),
        }
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = PgTlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, PgTlsError> {
        Ok(PgTlsConnect {
            shared: self.shared.clone(),
            host: domain.to_string(),
        })
    }
}

/// The connector of one connection attempt to one host.
pub struct PgTlsConnect {
    shared: Option<Arc<Shared>>,
    host: String,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = PgTlsError;
    type Future = Pin<Box<dyn Future<Output = Result<PgTlsStream<S>, PgTlsError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let Some(shared) = self.shared else {
                return Err(PgTlsError::Handshake("sslmode=disable: no TLS".into()));
            };
            let name = match ServerName::try_from(self.host.clone()) {
                Ok(name) => name,
                // Only verify-full needs the host's name; the others still need one for SNI.
                Err(_) if shared.settings.mode != SslMode::VerifyFull => {
                    ServerName::try_from("postgres.invalid").map_err(|e| {
                        PgTlsError::Handshake(format!("placeholder server name: {e}"))
                    })?
                }
                Err(e) => {
                    return Err(PgTlsError::Handshake(format!(
                        "host {:?} is not a DNS name or IP address that sslmode=verify-full can \
                         check: {e}",
                        self.host
                    )));
                }
            };
            tokio_rustls::TlsConnector::from(shared.config.clone())
                .connect(name, stream)
                .await
                .map(PgTlsStream)
                .map_err(|e| PgTlsError::Handshake(shared.explain(&self.host, &e)))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_tls_settings_are_taken_out_and_the_rest_reaches_the_driver() {
        let (c, tls) = parse(
            "postgres://u:s3cr3t@db:6543/x?application_name=a&sslmode=verify-ca\
             &sslrootcert=%2Fetc%2Fmy%20ca.pem&sslcert=/c.pem&sslkey=/k.pem&connect_timeout=4",
        )
        .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert.as_deref(), Some(Path::new("/etc/my ca.pem")));
        assert_eq!(tls.cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(tls.key.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(c.get_application_name(), Some("a"));
        assert_eq!(
            c.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(4))
        );
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        let (c, tls) = parse("postgres://u@db/x").unwrap();
        assert_eq!(tls, TlsSettings::default());
        assert_eq!(tls.mode, SslMode::Prefer, "libpq's default");
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        let (c, _) = parse("postgres://u@db/x?sslmode=disable").unwrap();
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    }

    #[test]
    fn a_key_value_dsns_tls_settings_are_taken_out_with_libpq_quoting() {
        let (c, tls) = parse(
            "host=db port=6543 user=u password='it\\'s' sslmode = verify-full \
             sslrootcert='/etc/my ca.pem' dbname=x sslcert=/c\\ d.pem sslkey=/k.pem",
        )
        .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some(Path::new("/etc/my ca.pem")));
        assert_eq!(tls.cert.as_deref(), Some(Path::new("/c d.pem")));
        assert_eq!(c.get_password(), Some(&b"it's"[..]));
        assert_eq!(c.get_dbname(), Some("x"));
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }

    #[test]
    fn settings_this_build_cannot_honour_are_refused_by_name_without_the_password() {
        for (dsn, setting) in [
            (
                "postgres://u:s3cr3t@db/x?sslmode=verify-full",
                "sslrootcert",
            ),
            ("host=db password=s3cr3t sslmode=verify-ca", "sslrootcert"),
            ("postgres://u:s3cr3t@db/x?sslmode=allow", "sslmode"),
            ("postgres://u:s3cr3t@db/x?sslmode=bogus", "sslmode"),
            ("postgres://u:s3cr3t@db/x?sslrootcert=system", "sslrootcert"),
            ("postgres://u:s3cr3t@db/x?sslcert=/c.pem", "sslkey"),
            ("postgres://u:s3cr3t@db/x?sslkey=/k.pem", "sslcert"),
        ] {
            let e = parse(dsn).unwrap_err().to_string();
            assert!(e.starts_with(setting), "{dsn}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn files_that_cannot_be_used_are_named_with_their_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let settings = |root: &Path| TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(root.to_owned()),
            ..TlsSettings::default()
        };
        let e = PgTls::new(&settings(&missing)).err().unwrap().to_string();
        assert!(
            e.starts_with(&format!("sslrootcert={}", missing.display())),
            "{e}"
        );
        let e = PgTls::new(&settings(&not_pem)).err().unwrap().to_string();
        assert!(
            e.contains("sslrootcert=") && e.contains("no PEM certificate"),
            "{e}"
        );
    }

    #[test]
    fn a_client_key_others_may_read_is_refused_as_libpq_refuses_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_key(&key).err().unwrap().to_string();
        assert!(e.starts_with("sslkey=") && e.contains("0600"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read_key(&key)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!e.contains("0600"), "{e}");
    }
}
