//! The driver's TLS connector over tokio-rustls: the certificate checks of each `sslmode`, the
//! client certificate, and handshake errors that name the setting to look at.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
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

use crate::load::dsn::{PgTlsError, SslMode, TlsSettings};

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
