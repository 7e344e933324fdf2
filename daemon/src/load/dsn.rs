//! PostgreSQL connection strings (the store's URL and the database actions' DSNs), with libpq's TLS
//! settings `sslmode`, `sslrootcert`, `sslcert` and `sslkey` taken apart (no file is read here;
//! `adapters::pgtls` sets TLS up over rustls with the ring provider).
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

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Bound of a TCP connect plus start-up when the URL sets no `connect_timeout`: an unreachable
/// database fails a request fast instead of holding it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Sessions are ended by PostgreSQL after this long idle inside a transaction (see
/// [`parse_url`]).
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "10s";

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
    pub(crate) fn setting(setting: &'static str, message: impl Into<String>) -> Self {
        Self::Setting {
            setting,
            message: message.into(),
        }
    }

    pub(crate) fn file(setting: &'static str, path: &Path, message: impl ToString) -> Self {
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
    pub(crate) fn driver(self) -> tokio_postgres::config::SslMode {
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

/// Parses a `postgres://` URL, its TLS settings apart (no file is read); the error never
/// contains the password.
pub fn parse_url(url: &str) -> std::result::Result<(tokio_postgres::Config, TlsSettings), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected postgres://USER:PASSWORD@HOST:PORT/DBNAME".into());
    }
    let (mut config, tls) = parse(url).map_err(|e| e.to_string())?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("remedyd");
    }
    // Dead peers are noticed by the client within a minute rather than the OS default of hours.
    config.keepalives_idle(Duration::from_secs(15));
    // A replica that vanishes mid-transaction (partitioned, frozen) must not hold its row locks
    // until the server's TCP keepalive gives up (2 h by default): the next leader's epoch bump
    // waits on them. remedyd's transactions never pause between statements for this long.
    let options = format!(
        "{} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT}",
        config.get_options().unwrap_or_default()
    );
    config.options(options.trim_start());
    Ok((config, tls))
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
}
