//! Scenario 1: one `remedyd` on SQLite, killed -9 at seeded random moments while alerts stream
//! in and ladders run, restarted each time on the same store.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    Proc, Receiver, Rng, Tally, campaign, check_invariants, resend, sqlite_facts, stream,
    write_config,
};
use crate::support::services::{free_port, wait_until, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_at_random_moments_keeps_every_ack_and_runs_no_step_twice() {
    let kills = campaign().unwrap_or(10);
    let mut rng = Rng::seeded("sqlite_kill");
    // 150 ms per action request: some kills land while one is in flight.
    let rx = Receiver::start(Duration::from_millis(150)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(dir.path(), &rx, 2, "1s", None);
    let db = dir.path().join("r.db");
    let store = format!("sqlite://{}", db.display());
    let mut p = Proc::new("remedyd", dir.path(), free_port(), &store);
    let mut t = Tally::default();
    within(120 + 3 * kills as u64, async {
        p.spawn();
        p.ready().await;
        let url = p.url("/webhook/alertmanager");
        let stop = CancellationToken::new();
        let sender = stream(vec![url.clone()], stop.clone());
        for _ in 0..kills {
            tokio::time::sleep(rng.millis(100, 2000)).await;
            p.kill9();
            t.kills += 1;
            p.spawn();
            p.ready().await;
        }
        // Let the last ladders start under a live process, then stop the stream.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        let sent = sender.await.expect("the sender");
        t.sent = sent.sent;
        t.acked = sent.acked.len();
        t.unacked = sent.unacked.len();
        t.answered_503 = sent.answered_503;
        resend(&[url], &sent).await;

        // Every ladder finishes (2 steps verified within 1 s, then the page) and every page
        // is delivered.
        let services = sent.services.len();
        wait_until(
            90,
            "every incident escalated, every page delivered",
            || async {
                let list = p.incidents().await;
                list.len() == services
                    && list.iter().all(|i| i["status"] == "escalated")
                    && sqlite_facts(&db).outbox.iter().all(|o| o.3)
            },
        )
        .await;
        p.assert_alive();
        let incidents: Vec<String> = p
            .incidents()
            .await
            .iter()
            .map(|i| i["id"].as_str().unwrap_or_default().to_string())
            .collect();
        t.incidents = incidents.len();
        check_invariants(&sqlite_facts(&db), &rx, &sent.acked, &incidents, &mut t);
        // Each incident ran both steps or recorded them interrupted: 2 claims each.
        assert_eq!(t.steps_claimed, 2 * incidents.len(), "{t:?}");
        t.print("sqlite_kill");
    })
    .await;
}
