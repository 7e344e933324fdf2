//! The dashboard in a real browser: headless Chromium driven through chromedriver's W3C WebDriver
//! HTTP protocol (reqwest, no browser-automation crate). It opens `/`, follows an incident created
//! through the webhook to its page, pauses automation with the form (token in the password field),
//! takes screenshots, resumes with the button, and checks each step through the API. The form
//! endpoints' refusals (no token, wrong token, another site) are checked over plain HTTP.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test.sh installs them); it fails,
//! naming them, when they are missing. Screenshots go to the test's temp dir and to
//! target/remedyd-dashboard*.png for people to look at.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon::{Daemon, now_rfc3339, payload};

const TOKEN: &str = "ui-s3cret-token";

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

/// A failing step then escalation, so the incident page has decisions with values behind them.
const POLICY: &str = r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - {name: restart, action: test, verify: {resolved_within: 1s}, on_failure: escalate}
"#;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

/// chromedriver, started by this test and killed when it ends.
struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(dir: &Path) -> Driver {
        for (path, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install Debian's packages chromium and chromium-driver \
                 (apt-get install -y --no-install-recommends chromium chromium-driver; \
                 scripts/test.sh does) — {pkg} provides {path}"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("chromedriver starts");
        let mut d = Driver {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            child,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.base)).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver not ready; log: {}",
                std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()), "--window-size=1280,1100",
                ],
            },
        }}});
        let v = d.call(reqwest::Method::POST, "/session", caps).await;
        d.session = v["sessionId"].as_str().expect("a session").to_string();
        d
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = self.http.request(method.clone(), &url);
        let req = if method == reqwest::Method::GET {
            req
        } else {
            req.json(&body)
        };
        let r = req.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, &self.at("/url"), json!({"url": url}))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                &self.at("/element"),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT].as_str().expect("element id").to_string()
    }

    async fn click(&self, el: &str) {
        self.call(
            reqwest::Method::POST,
            &self.at(&format!("/element/{el}/click")),
            json!({}),
        )
        .await;
    }

    async fn type_in(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &self.at(&format!("/element/{el}/value")),
            json!({"text": text}),
        )
        .await;
    }

    /// Waits (bounded) until the element `css` reads `want`: the page before a form's answer
    /// may have an element of the same id with the old text.
    async fn text_becomes(&self, css: &str, want: &str) -> String {
        let mut got = String::new();
        for _ in 0..50 {
            got = self.text(css).await;
            if got == want {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        got
    }

    /// The text of the element `css`. After a click that submits a form the old page may still
    /// be there for a moment (or its element detached mid-read): retry, bounded, until the new
    /// page answers.
    async fn text(&self, css: &str) -> String {
        let mut last = String::new();
        for _ in 0..50 {
            let found = self
                .http
                .post(format!("{}{}", self.base, self.at("/element")))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap();
            let ok = found.status().is_success();
            let v: Value = found.json().await.unwrap();
            if ok && let Some(el) = v["value"][ELEMENT].as_str() {
                let r = self
                    .http
                    .get(format!(
                        "{}{}",
                        self.base,
                        self.at(&format!("/element/{el}/text"))
                    ))
                    .send()
                    .await
                    .unwrap();
                let ok = r.status().is_success();
                let t: Value = r.json().await.unwrap();
                if ok {
                    return t["value"].as_str().unwrap_or_default().to_string();
                }
                last = t.to_string();
            } else {
                last = v.to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no text for {css}: {last}");
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, &self.at("/url"), json!(null))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn screenshot(&self, path: &Path) {
        let v = self
            .call(reqwest::Method::GET, &self.at("/screenshot"), json!(null))
            .await;
        let png = b64decode(v.as_str().expect("base64 PNG"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        std::fs::write(path, png).unwrap();
    }

    async fn quit(mut self) {
        let path = self.at("");
        self.call(reqwest::Method::DELETE, &path, json!({})).await;
        self.session.clear();
    }
}

fn for_humans(from: &Path, name: &str) -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp: its parent is the target directory.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(name);
    std::fs::copy(from, &target).unwrap();
    target
}

async fn api(d: &Daemon, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = d.http.post(format!("{}{path}", d.url)).body("{}");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_incident_and_pauses_and_resumes_automation_in_a_browser() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let d = Daemon::start_with(RULES, POLICY, None, |c| {
            c.webhook_token = Some(TOKEN.into());
        })
        .await;
        d.exec.script(&[false]);
        let r = d
            .http
            .post(format!("{}/webhook/alertmanager", d.url))
            .bearer_auth(TOKEN)
            .body(payload(
                "firing",
                "checkout",
                "warning",
                "d0d0000000000001",
                &now_rfc3339(),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let list = d
            .wait_incidents("escalated", |l| {
                l.len() == 1 && l[0]["status"] == "escalated"
            })
            .await;
        let id = list[0]["id"].as_str().unwrap().to_string();

        let dir = d.dir.path().to_path_buf();
        let b = Driver::start(&dir).await;
        b.goto(&d.url).await;
        // With a token configured the dashboard asks for it once, then keeps it in a cookie.
        b.type_in("#login-form input[name=token]", TOKEN).await;
        let submit = b.find("#login-form button").await;
        b.click(&submit).await;
        let open = b.text("h2").await;
        assert!(open.starts_with("Open incidents (1)"), "{open}");
        // Follow the incident link to its page.
        let link = b.find(&format!("a[href=\"/incidents/{id}\"]")).await;
        b.click(&link).await;
        assert!(b.url().await.ends_with(&format!("/incidents/{id}")));
        let timeline = b.text("#timeline").await;
        for want in [
            "opened",
            "step_started",
            "step_failed",
            "escalated to oncall",
            "budgets: action:test:deployment/python-services/checkout 1/3 per 1h",
        ] {
            assert!(
                timeline.contains(want),
                "{want:?} not on the incident page:\n{timeline}"
            );
        }
        let shot = dir.join("incident.png");
        b.screenshot(&shot).await;
        let incident_png = for_humans(&shot, "remedyd-dashboard-incident.png");

        // Pause everything with the form; the token goes in the password field.
        b.goto(&d.url).await;
        b.type_in(
            "#pause-form input[name=reason]",
            "deploy freeze (browser test)",
        )
        .await;
        b.type_in("#pause-form input[name=author]", "ui-test").await;
        b.type_in("#pause-form input[name=token]", TOKEN).await;
        let button = b.find("#pause").await;
        b.click(&button).await;
        let notice = b
            .text_becomes("#notice", "Paused global: deploy freeze (browser test)")
            .await;
        assert_eq!(notice, "Paused global: deploy freeze (browser test)");
        let automation = b.text("#automation").await;
        assert!(
            automation.contains("Automation is paused.") && automation.contains("ui-test"),
            "{automation}"
        );
        let shot = dir.join("dashboard.png");
        b.screenshot(&shot).await;
        let dashboard_png = for_humans(&shot, "remedyd-dashboard.png");

        // Resume with the button in the pauses table.
        b.type_in(
            "#automation form[action=\"/ui/resume\"] input[name=token]",
            TOKEN,
        )
        .await;
        let resume = b
            .find("#automation form[action=\"/ui/resume\"] button")
            .await;
        b.click(&resume).await;
        assert_eq!(
            b.text_becomes("#notice", "Resumed global").await,
            "Resumed global"
        );
        assert!(
            b.text("#automation")
                .await
                .contains("Automation is running.")
        );
        b.quit().await;

        // The API agrees: nothing left to resume.
        assert_eq!(api(&d, "/api/v1/resume", Some(TOKEN)).await.0, 404);
        eprintln!(
            "screenshots: {} {}",
            dashboard_png.display(),
            incident_png.display()
        );
        d.stop().await;
    })
    .await
    .expect("finished in time")
}

#[tokio::test]
async fn the_form_endpoints_need_the_token_and_refuse_other_sites() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let d = Daemon::start_with(RULES, POLICY, None, |c| {
            c.webhook_token = Some(TOKEN.into());
        })
        .await;
        let form = |token: &str| format!("scope=global&reason=testing&author=t&token={token}");
        let post = |body: String, origin: Option<&str>| {
            let mut r = d
                .http
                .post(format!("{}/ui/pause", d.url))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            r.send()
        };
        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        assert_eq!(post(form(""), None).await.unwrap().status(), 401);
        assert_eq!(post(form("wrong"), None).await.unwrap().status(), 401);
        assert_eq!(
            post(form(TOKEN), Some("http://evil.example"))
                .await
                .unwrap()
                .status(),
            403
        );
        assert_eq!(
            api(&d, "/api/v1/resume", Some(TOKEN)).await.0,
            404,
            "nothing was paused"
        );
        // The right token from the same origin: 303 back to the dashboard, and the pause is real.
        let host = d.url.trim_start_matches("http://").to_string();
        let r = no_redirect
            .post(format!("{}/ui/pause", d.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", format!("http://{host}"))
            .body(form(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/?notice=Paused+global")
        );
        let page = d
            .http
            .get(&d.url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Automation is paused."), "{page}");
        assert!(!page.contains(TOKEN), "the token is never put in a page");
        // A rule or namespace pause needs its name.
        let r = post("scope=rule&name=&reason=x&token=".to_string() + TOKEN, None)
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(api(&d, "/api/v1/resume", Some(TOKEN)).await.0, 200);
        // Unknown incident: a 404 page; the review is Markdown.
        let r = d
            .http
            .get(format!("{}/incidents/INC-1999-0001", d.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        d.stop().await;
    })
    .await
    .expect("finished in time")
}
