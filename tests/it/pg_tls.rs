//! TLS to a real PostgreSQL 15 (Debian's package, started by the test with `ssl=on`): each
//! `sslmode` connects, or is refused, as libpq would; a wrong CA is refused naming
//! `sslrootcert`; a server without TLS is refused under `require` and reached in plain under
//! `prefer`; a client certificate logs in where the server demands one. The store and the
//! database actions go through the same connector, and both are checked here.
//!
//! Whether a session is encrypted is read from the server (`pg_stat_ssl`), not from the client.
//! The certificates (a CA, a second unrelated CA, a server certificate for `localhost` only, a
//! client certificate) are made per test run with the `openssl` command-line tool, which Debian
//! installs with PostgreSQL (its `ssl-cert` dependency); no crate is added for it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use remedyd::adapters::action::postgres::Evidence;
use remedyd::adapters::action::{ActionRequest, Executor};
use remedyd::adapters::store::Store;
use remedyd::adapters::store::postgres::{Leadership, PgStore};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::support::services;
use crate::support::services::{PG_DATABASE, PG_PASSWORD, PgServerTls, Postgres};

/// Every test: bounded, so a hang fails instead of blocking the run.
const TEST: Duration = Duration::from_secs(120);

async fn within(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST, f)
        .await
        .unwrap_or_else(|_| panic!("not done within {TEST:?}"));
}

/// Test certificates in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the server's and the client's certificates.
    fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A CA that signed neither.
    fn other_ca(&self) -> PathBuf {
        self.path("other-ca.crt")
    }

    fn server_tls(&self) -> PgServerTls {
        PgServerTls {
            cert: self.path("server.crt"),
            key: self.path("server.key"),
            client_ca: self.ca(),
            cert_users: vec!["certuser".into()],
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(services::require("/usr/bin/openssl", "openssl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a second CA, a server certificate for DNS name `localhost` only (so that 127.0.0.1
/// does not match it), and a client certificate for role `certuser`; P-256 keys.
fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    for ca in ["ca", "other-ca"] {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-subj",
                &format!("/CN=remedyd test {ca}"),
            ],
        );
    }
    for (name, cn, ext, serial) in [
        (
            "server",
            "localhost",
            "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
            "2",
        ),
        (
            "client",
            "certuser",
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
            "3",
        ),
    ] {
        std::fs::write(d.join(format!("{name}.ext")), ext).expect("writing an extension file");
        openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "2",
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("client.key"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod 0600 client.key");
    Pki { dir }
}

fn url(pg: &Postgres, host: &str, query: &str) -> String {
    format!(
        "postgres://postgres:{PG_PASSWORD}@{host}:{}/{PG_DATABASE}?{query}",
        pg.port()
    )
}

#[derive(Debug, PartialEq)]
enum Expect {
    /// Connected, and the server says the session is encrypted.
    Tls,
    /// Connected, and the server says the session is plain.
    Plain,
    /// Refused, with this in the error.
    Refused(&'static str),
}

/// Connects through remedyd's connector and asks the server whether the session is encrypted.
async fn outcome(dsn: &str) -> Result<bool, String> {
    let client = remedyd::adapters::pgtls::connect(dsn).await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| format!("reading pg_stat_ssl: {e}"))?;
    Ok(row.get(0))
}

async fn check(dsn: &str, want: &Expect) {
    let got = outcome(dsn).await;
    match (want, &got) {
        (Expect::Tls, Ok(true)) | (Expect::Plain, Ok(false)) => {}
        (Expect::Refused(text), Err(e)) => {
            assert!(e.contains(text), "{dsn}: error {e:?} lacks {text:?}");
            assert!(!e.contains(PG_PASSWORD), "{e}");
        }
        _ => panic!("{dsn}: want {want:?}, got {got:?} (Ok(true) = TLS)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sslmode_connects_to_a_tls_server_as_libpq_would() {
    within(async {
        let pki = pki();
        let pg = Postgres::start_with_tls(&pki.server_tls()).await;
        let ca = pki.ca().display().to_string();
        let other = pki.other_ca().display().to_string();
        let cases = [
            ("127.0.0.1", "sslmode=disable".to_string(), Expect::Plain),
            ("127.0.0.1", "sslmode=prefer".into(), Expect::Tls),
            // No sslmode: libpq's default, prefer.
            ("127.0.0.1", "application_name=x".into(), Expect::Tls),
            // require checks nothing without sslrootcert: the server's CA is unknown here.
            ("127.0.0.1", "sslmode=require".into(), Expect::Tls),
            // With sslrootcert, require is verify-ca: the chain, not the host name.
            (
                "127.0.0.1",
                format!("sslmode=require&sslrootcert={ca}"),
                Expect::Tls,
            ),
            (
                "127.0.0.1",
                format!("sslmode=require&sslrootcert={other}"),
                Expect::Refused("sslrootcert="),
            ),
            (
                "127.0.0.1",
                format!("sslmode=verify-ca&sslrootcert={ca}"),
                Expect::Tls,
            ),
            (
                "127.0.0.1",
                format!("sslmode=verify-ca&sslrootcert={other}"),
                Expect::Refused("sslrootcert="),
            ),
            // The certificate names localhost, not 127.0.0.1.
            (
                "127.0.0.1",
                format!("sslmode=verify-full&sslrootcert={ca}"),
                Expect::Refused("does not name host \"127.0.0.1\""),
            ),
            (
                "localhost",
                format!("sslmode=verify-full&sslrootcert={ca}"),
                Expect::Tls,
            ),
            (
                "localhost",
                format!("sslmode=verify-full&sslrootcert={other}"),
                Expect::Refused("sslrootcert="),
            ),
            (
                "localhost",
                "sslmode=verify-full".into(),
                Expect::Refused("sslmode=verify-full needs sslrootcert"),
            ),
        ];
        for (host, query, want) in &cases {
            check(&url(&pg, host, query), want).await;
        }
        // The key=value form takes the same settings.
        let kv = format!(
            "host=localhost port={} user=postgres password={PG_PASSWORD} dbname={PG_DATABASE} \
             sslmode=verify-full sslrootcert='{ca}'",
            pg.port()
        );
        check(&kv, &Expect::Tls).await;
        // The wrong CA's error says what to check.
        let e = outcome(&url(
            &pg,
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={other}"),
        ))
        .await
        .unwrap_err();
        assert!(
            e.contains(&format!("sslrootcert={other}"))
                && e.contains("is this the CA that signed the server's certificate?"),
            "{e}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_a_server_without_tls_and_prefer_falls_back_to_plain() {
    within(async {
        let pki = pki();
        let pg = Postgres::start().await;
        let ca = pki.ca().display().to_string();
        check(&url(&pg, "127.0.0.1", "sslmode=prefer"), &Expect::Plain).await;
        check(
            &url(&pg, "127.0.0.1", "sslmode=require"),
            &Expect::Refused("server does not support TLS"),
        )
        .await;
        check(
            &url(
                &pg,
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            &Expect::Refused("server does not support TLS"),
        )
        .await;
        // The store: prefer connects in plain, require is refused at startup.
        let store = PgStore::connect(&url(&pg, "127.0.0.1", "sslmode=prefer"))
            .await
            .unwrap_or_else(|e| panic!("the store under prefer: {e}"));
        store.ping().await.expect("the store answers");
        let e = PgStore::connect(&url(&pg, "127.0.0.1", "sslmode=require"))
            .await
            .err()
            .expect("require must refuse a server without TLS");
        assert!(e.contains("server does not support TLS"), "{e}");
        assert!(!e.contains(PG_PASSWORD), "{e}");
    })
    .await
}

/// Sessions of `application_name` and whether each is encrypted, from the server's side.
async fn sessions(pg: &Postgres, application: &str) -> Vec<bool> {
    let admin = pg.client("postgres").await;
    admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&application],
        )
        .await
        .expect("reading pg_stat_ssl")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_and_the_database_actions_connect_over_verified_tls() {
    within(async {
        let pki = pki();
        let pg = Postgres::start_with_tls(&pki.server_tls()).await;
        let ca = pki.ca().display().to_string();
        let other = pki.other_ca().display().to_string();

        let good = url(
            &pg,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}&application_name=store"),
        );
        let store = PgStore::connect(&good)
            .await
            .unwrap_or_else(|e| panic!("the store over verify-full: {e}"));
        store.ping().await.expect("the store answers");
        // The leadership connection is not from the pool: it must take the URL's TLS too.
        let leadership = Leadership::new(store.clone(), Arc::new(Notify::new()));
        let term = leadership
            .acquire(&CancellationToken::new())
            .await
            .expect("leadership over TLS");
        let ssl = sessions(&pg, "store").await;
        assert!(
            ssl.len() >= 2 && ssl.iter().all(|s| *s),
            "pool and leadership: {ssl:?}"
        );
        term.release().await;

        let e = PgStore::connect(&url(
            &pg,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={other}"),
        ))
        .await
        .err()
        .expect("a store behind the wrong CA must be refused");
        assert!(e.contains(&format!("sslrootcert={other}")), "{e}");
        assert!(!e.contains(PG_PASSWORD), "{e}");

        let dir = tempfile::tempdir().expect("temp dir");
        let dsn_file = dir.path().join("dsn");
        let run = async |dsn: String| {
            std::fs::write(&dsn_file, dsn).expect("writing the DSN file");
            let req = ActionRequest {
                incident: "INC-2026-0001".into(),
                step: "s".into(),
                action: "postgres_evidence".into(),
                params: serde_json::json!({"dsn_file": dsn_file}),
                vars: Default::default(),
            };
            Evidence.execute(&req).await
        };
        let out = run(url(
            &pg,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}&application_name=evidence"),
        ))
        .await;
        assert!(out.ok, "{out:?}");
        let apps = out.detail["sessions_by_application"].to_string();
        assert!(
            apps.contains("evidence"),
            "its own session is listed: {apps}"
        );
        let out = run(url(
            &pg,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={other}"),
        ))
        .await;
        assert!(!out.ok, "{out:?}");
        assert!(out.summary.contains("sslrootcert="), "{}", out.summary);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_where_the_server_demands_one() {
    within(async {
        let pki = pki();
        let pg = Postgres::start_with_tls(&pki.server_tls()).await;
        let base = format!(
            "postgres://certuser@localhost:{}/{PG_DATABASE}?sslmode=verify-full&sslrootcert={}",
            pg.port(),
            pki.ca().display()
        );
        let with_cert = format!(
            "{base}&sslcert={}&sslkey={}",
            pki.path("client.crt").display(),
            pki.path("client.key").display()
        );
        let client = remedyd::adapters::pgtls::connect(&with_cert)
            .await
            .unwrap_or_else(|e| panic!("certuser with its certificate: {e}"));
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .expect("current_user")
            .get(0);
        assert_eq!(who, "certuser");
        let e = remedyd::adapters::pgtls::connect(&base)
            .await
            .expect_err("without a certificate the server refuses certuser");
        assert!(e.contains("certificate"), "{e}");
    })
    .await
}
