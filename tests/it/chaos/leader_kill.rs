//! Scenario 2: two `remedyd` replicas on one real PostgreSQL 15, alerts sent to both, the
//! current leader killed -9 at seeded random moments and restarted each time.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{
    Proc, Receiver, Rng, Tally, campaign, check_invariants, pg_facts, resend, settled_on_postgres,
    stream, write_config,
};
use crate::support::services::{PG_DATABASE, Postgres, free_port, metric_value, within};

/// The index of the only leader among `ps` (`remedyd_leader` 1), once there is exactly one.
async fn leader(ps: &[Proc], secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut leaders = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            if !p.running() {
                continue;
            }
            if let Ok(r) = crate::support::services::http()
                .get(p.url("/metrics"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && let Ok(text) = r.text().await
                && metric_value(&text, "remedyd_leader") == 1.0
            {
                leaders.push(i);
            }
        }
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(leaders.len() < 2, "two replicas lead at once: {leaders:?}");
        assert!(Instant::now() < deadline, "no leader within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leader_kill_9_keeps_every_ack_and_runs_no_step_twice() {
    let kills = campaign().unwrap_or(5);
    let mut rng = Rng::seeded("leader_kill");
    let pg = Postgres::start().await;
    let rx = Receiver::start(Duration::from_millis(150)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(dir.path(), &rx, 2, "1s", None);
    let mut ps = vec![
        Proc::new("replica-0", dir.path(), free_port(), &pg.url()),
        Proc::new("replica-1", dir.path(), free_port(), &pg.url()),
    ];
    let mut t = Tally::default();
    within(150 + 5 * kills as u64, async {
        for p in &mut ps {
            p.spawn();
        }
        for p in &mut ps {
            p.ready().await;
        }
        let urls: Vec<String> = ps.iter().map(|p| p.url("/webhook/alertmanager")).collect();
        let stop = CancellationToken::new();
        let sender = stream(urls.clone(), stop.clone());
        for _ in 0..kills {
            let l = leader(&ps, 30).await;
            tokio::time::sleep(rng.millis(100, 2000)).await;
            for p in &mut ps {
                p.assert_alive();
            }
            ps[l].kill9();
            t.kills += 1;
            ps[l].spawn();
            ps[l].ready().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        let sent = sender.await.expect("the sender");
        t.sent = sent.sent;
        t.acked = sent.acked.len();
        t.unacked = sent.unacked.len();
        t.answered_503 = sent.answered_503;
        resend(&urls, &sent).await;

        let db = pg.client(PG_DATABASE).await;
        let services = sent.services.len();
        let incidents = settled_on_postgres(&ps[0], &db, services).await;
        t.incidents = incidents.len();
        for p in &mut ps {
            p.assert_alive();
        }
        check_invariants(&pg_facts(&db).await, &rx, &sent.acked, &incidents, &mut t);
        assert_eq!(t.steps_claimed, 2 * incidents.len(), "{t:?}");
        t.print("leader_kill");
    })
    .await;
}
