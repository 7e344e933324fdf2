//! The Slack Web API route (`type: slack` with a bot token and a channel) against a loopback
//! receiver that answers as `chat.postMessage` does: 200 `{"ok": true, "channel", "ts"}`, 200
//! `{"ok": false, "error"}`, 429 `ratelimited` with `Retry-After`. Through the durable outbox on
//! SQLite and on a real PostgreSQL 15: the first page's `ts` is kept, the updates and the resolve
//! reply in its thread across a restart (SQLite reopened; a second PostgreSQL replica), and a
//! backlog of updates piled up while the route was down is coalesced into the newest one.
//! What this cannot prove: that Slack renders the thread as intended.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use remedyd::adapters::action::Executors;
use remedyd::adapters::escalate::{Notification, NotificationKind, Pager, Pagers, notification};
use remedyd::adapters::store::postgres::PgStore;
use remedyd::adapters::store::sqlite::SqliteStore;
use remedyd::adapters::store::{Commit, Store};
use remedyd::adapters::telemetry::Metrics;
use remedyd::domain::time::ManualClock;
use remedyd::load::ruleset::{Ruleset, SharedRuleset};

use crate::support::services::Postgres;
use crate::support::story;

const TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
/// The channel id Slack answers with (the route names the channel `#ops`).
const CHANNEL: &str = "C0OPS12345";

/// Answers to give first, in order: (status, body, Retry-After).
type Script = Arc<Mutex<Vec<(u16, &'static str, Option<&'static str>)>>>;

/// A `chat.postMessage` stand-in: checks the bearer token and the channel as Slack does, and
/// answers scripted (status, body, Retry-After) answers first, then `ok` with a new `ts`.
struct SlackApi {
    url: String,
    got: Arc<Mutex<Vec<serde_json::Value>>>,
    script: Script,
}

impl SlackApi {
    async fn start() -> Self {
        let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let script: Script = Arc::default();
        let (g, s) = (got.clone(), script.clone());
        let app = axum::Router::new().route(
            "/api/chat.postMessage",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (g, s) = (g.clone(), s.clone());
                async move {
                    let mut h = HeaderMap::new();
                    h.insert("content-type", "application/json".parse().unwrap());
                    let scripted = {
                        let mut s = s.lock().unwrap();
                        (!s.is_empty()).then(|| s.remove(0))
                    };
                    if let Some((code, text, ra)) = scripted {
                        if let Some(ra) = ra {
                            h.insert("retry-after", ra.parse().unwrap());
                        }
                        return (StatusCode::from_u16(code).unwrap(), h, text.to_string());
                    }
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                    if auth != Some(&format!("Bearer {TOKEN}")) {
                        return (StatusCode::OK, h, r#"{"ok":false,"error":"invalid_auth"}"#.into());
                    }
                    let b: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    if !matches!(b["channel"].as_str(), Some("#ops" | CHANNEL)) {
                        return (StatusCode::OK, h, r#"{"ok":false,"error":"channel_not_found"}"#.into());
                    }
                    let mut g = g.lock().unwrap();
                    g.push(b);
                    let ts = format!("1764320400.{:06}", 100 * g.len());
                    let answer = serde_json::json!({"ok": true, "channel": CHANNEL, "ts": ts, "message": {"text": "…"}});
                    (StatusCode::OK, h, answer.to_string())
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        SlackApi { url, got, script }
    }
    fn script(&self, s: &[(u16, &'static str, Option<&'static str>)]) {
        *self.script.lock().unwrap() = s.to_vec();
    }
    fn posts(&self) -> Vec<serde_json::Value> {
        self.got.lock().unwrap().clone()
    }
}

/// The rules and policies with one `type: slack` route through the Web API, its token in a file.
fn ruleset(dir: &std::path::Path, api: &str) -> Ruleset {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("slack.token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        dir.join("policies/routes.yaml"),
        format!(
            "routes:\n  - name: chat\n    type: slack\n    token_file: {}/slack.token\n    channel: \"#ops\"\n    url: {api}\n    timeout: 2s\n",
            dir.display()
        ),
    )
    .unwrap();
    remedyd::load::ruleset::load(
        &dir.join("rules"),
        &dir.join("policies"),
        &Executors::builtin(),
    )
    .unwrap_or_else(|d| panic!("{d}"))
}

fn page(event: NotificationKind) -> Notification {
    let s = story::escalated();
    notification(&s.incident, &s.timeline, event, "why")
}

async fn enqueue(store: &dyn Store, pages: &[NotificationKind]) {
    let mut c = Commit::default();
    for e in pages {
        c.outbox.push(("chat".into(), page(*e)));
    }
    store.commit(c).await.unwrap();
}

struct Lane {
    rs: SharedRuleset,
    clock: ManualClock,
    metrics: Metrics,
}

impl Lane {
    fn new(rs: Ruleset) -> Self {
        Lane {
            rs: Arc::new(RwLock::new(Arc::new(rs))),
            clock: ManualClock::new(story::at(0)),
            metrics: Metrics::new(),
        }
    }
    async fn deliver(&self, store: &dyn Store) {
        remedyd::adapters::escalate::outbox::deliver_due(
            store,
            &Pagers::new(),
            &self.rs,
            &self.clock,
            &self.metrics,
        )
        .await
        .unwrap();
    }
    fn count(&self, result: &str) -> String {
        let text = self.metrics.encode();
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    r#"remedyd_pages_total{{route="chat",result="{result}"}}"#
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("absent")
            .to_string()
    }
}

/// Trigger, then (after `restart` gives another store on the same data) an update and the
/// resolve: both reply in the trigger's thread, the resolve also shown in the channel.
async fn thread_kept_across_restart<F, Fut>(first: Arc<dyn Store>, restart: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    let api = SlackApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lane = Lane::new(ruleset(dir.path(), &api.url));
    enqueue(&*first, &[NotificationKind::Trigger]).await;
    lane.deliver(&*first).await;
    drop(first);
    let store = restart().await;
    enqueue(
        &*store,
        &[NotificationKind::Update, NotificationKind::Resolve],
    )
    .await;
    lane.deliver(&*store).await;
    let posts = api.posts();
    assert_eq!(posts.len(), 3, "{posts:#?}");
    assert_eq!(posts[0]["channel"], "#ops");
    assert!(
        posts[0].get("thread_ts").is_none(),
        "the first message opens the thread"
    );
    assert!(posts[0]["blocks"].as_array().is_some_and(|b| !b.is_empty()));
    assert!(posts[0]["text"].as_str().is_some_and(|t| !t.is_empty()));
    for (p, head) in [(&posts[1], "🔄 UPDATE · "), (&posts[2], "✅ RESOLVED · ")] {
        assert_eq!(p["thread_ts"], "1764320400.000100", "{p:#}");
        assert_eq!(p["channel"], CHANNEL, "replies go to the thread's channel");
        assert!(
            p["blocks"][0]["text"]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(head)),
            "{p:#}"
        );
    }
    assert!(posts[1].get("reply_broadcast").is_none());
    assert_eq!(posts[2]["reply_broadcast"], true);
    assert_eq!(lane.count("delivered"), "3");
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_updates_and_the_resolve_reply_in_the_thread_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let first: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let restart = || async move { Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Store> };
    tokio::time::timeout(
        Duration::from_secs(30),
        thread_kept_across_restart(first, restart),
    )
    .await
    .expect("done within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_updates_and_the_resolve_reply_in_the_thread_on_another_replica() {
    let pg = Postgres::start().await;
    let url = pg.url();
    let first: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let restart =
        || async move { Arc::new(PgStore::connect(&url).await.unwrap()) as Arc<dyn Store> };
    tokio::time::timeout(
        Duration::from_secs(120),
        thread_kept_across_restart(first, restart),
    )
    .await
    .expect("done within 120 s");
}

#[tokio::test]
async fn ok_false_errors_are_retried_or_given_up_and_the_token_never_shows() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let api = SlackApi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let rs = ruleset(dir.path(), &api.url);
        let route = &rs.routes["chat"];
        let p = Pagers::new();
        let n = page(NotificationKind::Trigger);
        api.script(&[
            (429, r#"{"ok":false,"error":"ratelimited"}"#, Some("7")),
            (200, r#"{"ok":false,"error":"internal_error"}"#, None),
            (503, "upstream unavailable", None),
            (200, r#"{"ok":false,"error":"channel_not_found"}"#, None),
            (200, r#"{"ok":false,"error":"not_in_channel"}"#, None),
            (200, r#"{"ok":false,"error":"invalid_auth"}"#, None),
            (200, "<html>captive portal</html>", None),
        ]);
        let e = p.send_in_thread(route, &n, None).await.unwrap_err();
        assert!(
            e.retryable && e.retry_after == Some(Duration::from_secs(7)),
            "{e:?}"
        );
        assert!(e.message.contains("ratelimited"), "{e:?}");
        let e = p.send_in_thread(route, &n, None).await.unwrap_err();
        assert!(e.retryable && e.message.contains("internal_error"), "{e:?}");
        let e = p.send_in_thread(route, &n, None).await.unwrap_err();
        assert!(e.retryable && e.message.contains("status 503"), "{e:?}");
        for want in [
            "channel_not_found",
            "not_in_channel",
            "invalid_auth",
            "not a Web API answer",
        ] {
            let e = p.send_in_thread(route, &n, None).await.unwrap_err();
            assert!(!e.retryable && e.message.contains(want), "{want}: {e:?}");
            assert!(
                e.message.starts_with("route chat (slack web api): "),
                "{e:?}"
            );
            assert!(!e.message.contains(TOKEN), "{e:?}");
        }
        // Through the outbox: a final error is given up and counted, a transient one retried.
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let lane = Lane::new(rs.clone());
        api.script(&[(200, r#"{"ok":false,"error":"is_archived"}"#, None)]);
        enqueue(&store, &[NotificationKind::Trigger]).await;
        lane.deliver(&store).await;
        assert_eq!(lane.count("failed"), "1");
        api.script(&[(429, r#"{"ok":false,"error":"ratelimited"}"#, Some("30"))]);
        enqueue(&store, &[NotificationKind::Update]).await;
        lane.deliver(&store).await;
        assert_eq!(lane.count("retry"), "1");
        assert_eq!(
            store.outbox_depth().await.unwrap(),
            1,
            "the update waits for its retry"
        );
        assert!(api.posts().is_empty(), "nothing reached the channel");
    })
    .await
    .expect("done within 30 s");
}

/// The route is down while the trigger is retried and three updates pile up behind it, then the
/// resolve: once it is back, the trigger, the newest update and the resolve go, in that order;
/// the two older updates are marked superseded by the newest and counted.
async fn backlog_coalesced(store: Arc<dyn Store>) -> Vec<i64> {
    use NotificationKind::{Resolve, Trigger, Update};
    let api = SlackApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lane = Lane::new(ruleset(dir.path(), &api.url));
    api.script(&[(503, "down", None)]);
    enqueue(&*store, &[Trigger, Update]).await;
    lane.deliver(&*store).await;
    assert_eq!(lane.count("retry"), "1");
    let mut updates = Vec::new();
    for reason in ["second", "third"] {
        let mut n = page(Update);
        n.reason = format!("update: {reason}");
        updates.push(n);
    }
    let mut c = Commit::default();
    for n in updates {
        c.outbox.push(("chat".into(), n));
    }
    c.outbox.push(("chat".into(), page(Resolve)));
    store.commit(c).await.unwrap();
    lane.clock.advance(Duration::from_secs(2));
    lane.deliver(&*store).await;
    let posts = api.posts();
    let heads: Vec<&str> = posts
        .iter()
        .map(|p| p["blocks"][0]["text"]["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(heads.len(), 3, "{heads:?}");
    assert!(
        heads[0].contains(" INC-") && !heads[0].contains("UPDATE"),
        "{heads:?}"
    );
    assert!(heads[1].starts_with("🔄 UPDATE"), "{heads:?}");
    assert!(heads[2].starts_with("✅ RESOLVED"), "{heads:?}");
    assert!(
        posts[1]["text"]
            .as_str()
            .is_some_and(|t| t.contains("update: third")),
        "the newest update is the one sent: {:#}",
        posts[1]
    );
    assert_eq!(posts[1]["thread_ts"], "1764320400.000100");
    assert_eq!(lane.count("superseded"), "2");
    assert_eq!(lane.count("delivered"), "3");
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    // Outbox ids 2 and 3 are the superseded updates; 4 the newest.
    vec![2, 3]
}

#[tokio::test]
async fn sqlite_a_backlog_of_updates_is_coalesced_into_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let ids = tokio::time::timeout(Duration::from_secs(30), backlog_coalesced(store))
        .await
        .expect("done within 30 s");
    let c = rusqlite::Connection::open(&path).unwrap();
    let mut st = c
        .prepare("SELECT id, superseded_by, delivered, done_at IS NOT NULL FROM outbox ORDER BY id")
        .unwrap();
    let rows: Vec<(i64, Option<i64>, Option<bool>, bool)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, by, delivered, done) in rows {
        assert!(done, "row {id} is done");
        if ids.contains(&id) {
            assert_eq!((by, delivered), (Some(4), Some(false)), "row {id}");
        } else {
            assert_eq!((by, delivered), (None, Some(true)), "row {id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_backlog_of_updates_is_coalesced_into_the_newest() {
    let pg = Postgres::start().await;
    let url = pg.url();
    let store = Arc::new(PgStore::connect(&url).await.unwrap());
    let ids = tokio::time::timeout(Duration::from_secs(120), backlog_coalesced(store))
        .await
        .expect("done within 120 s");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT id, superseded_by, delivered FROM outbox ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    for r in rows {
        let (id, by, delivered): (i64, Option<i64>, Option<bool>) = (r.get(0), r.get(1), r.get(2));
        if ids.contains(&id) {
            assert_eq!((by, delivered), (Some(4), Some(false)), "row {id}");
        } else {
            assert_eq!((by, delivered), (None, Some(true)), "row {id}");
        }
    }
}

#[test]
fn a_slack_route_is_either_a_webhook_or_the_web_api_and_the_web_api_needs_a_channel() {
    let dir = tempfile::tempdir().unwrap();
    let load = |yaml: &str| {
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/p.yaml"), yaml).unwrap();
        match remedyd::load::ruleset::load(
            &dir.path().join("rules"),
            &dir.path().join("policies"),
            &Executors::builtin(),
        ) {
            Ok(_) => panic!("loaded: {yaml}"),
            Err(d) => d.to_string(),
        }
    };
    let e = load(
        "routes:\n  - name: s\n    type: slack\n    token_env: T\n    url_env: U\n    channel: C1\n",
    );
    assert!(
        e.contains("p.yaml:2: routes.url_env") && e.contains("not both"),
        "{e}"
    );
    let e = load("routes:\n  - name: s\n    type: slack\n    token_env: T\n");
    assert!(
        e.contains("p.yaml:2: routes.channel") && e.contains("needs `channel`"),
        "{e}"
    );
    let e = load("routes:\n  - name: s\n    type: slack\n    url_env: U\n    channel: C1\n");
    assert!(
        e.contains("routes.channel") && e.contains("channel goes with a bot token"),
        "{e}"
    );
    let e = load(
        "routes:\n  - name: s\n    type: slack\n    token_env: T\n    token_file: /f\n    channel: C1\n",
    );
    assert!(
        e.contains("needs exactly one of `token_env` or `token_file`"),
        "{e}"
    );
}
