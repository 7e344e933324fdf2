//! Scenario 3: duplicates from an Alertmanager HA pair. Two real Alertmanager 0.25 replicas
//! clustered on loopback each send every group to both `remedyd` replicas (two webhook
//! receivers) and re-send it every 2 s (`repeat_interval`), so every alert reaches remedyd
//! many times, from two senders, on two replicas of one PostgreSQL store. Each step must still
//! run exactly once and each incident page its route exactly once.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Proc, Receiver, Tally, check_invariants, pg_facts, settled_on_postgres, write_config};
use crate::support::services::{
    Alertmanager, PG_DATABASE, Postgres, free_port, wait_until, within,
};

/// Services alerted on: one incident each.
const SERVICES: usize = 6;

/// alertmanager.yml of each replica: every group to both remedyd replicas, re-sent often.
fn am_config(urls: &[String]) -> String {
    let hooks: String = urls
        .iter()
        .map(|u| format!("      - url: \"{u}\"\n        send_resolved: true\n"))
        .collect();
    format!(
        "route:\n  receiver: remedyd\n  group_by: [alertname, service]\n  group_wait: 1s\n  \
         group_interval: 1s\n  repeat_interval: 2s\nreceivers:\n  - name: remedyd\n    \
         webhook_configs:\n{hooks}"
    )
}

/// Webhook notifications a replica sent successfully.
async fn sent(am: &Alertmanager) -> f64 {
    am.metric(r#"alertmanager_notifications_total{integration="webhook"}"#)
        .await
        - am.metric(r#"alertmanager_notifications_failed_total{integration="webhook"}"#)
            .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_ha_pair_sending_to_two_replicas_runs_each_step_once() {
    let pg = Postgres::start().await;
    let rx = Receiver::start(Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(dir.path(), &rx, 2, "1s", None);
    let mut ps = vec![
        Proc::new("replica-0", dir.path(), free_port(), &pg.url()),
        Proc::new("replica-1", dir.path(), free_port(), &pg.url()),
    ];
    within(150, async {
        for p in &mut ps {
            p.spawn();
        }
        for p in &mut ps {
            p.ready().await;
        }
        let urls: Vec<String> = ps.iter().map(|p| p.url("/webhook/alertmanager")).collect();
        let cfg = am_config(&urls);
        let (c0, c1) = (free_port(), free_port());
        let ams = [
            Alertmanager::start_clustered_with_config(&cfg, c0, c1).await,
            Alertmanager::start_clustered_with_config(&cfg, c1, c0).await,
        ];
        // Prometheus sends every alert to every Alertmanager of the pair.
        for am in &ams {
            for i in 0..SERVICES {
                let service = format!("svc-{i}");
                am.post_alert(
                    &[("alertname", "HighErrorRate"), ("service", &service)],
                    None,
                )
                .await;
            }
        }

        let db = pg.client(PG_DATABASE).await;
        settled_on_postgres(&ps[0], &db, SERVICES).await;
        // Duplicates did arrive: each replica sends each group to both remedyd replicas and
        // re-sends it; wait for several rounds beyond the first (2 receivers × 6 groups).
        wait_until(
            60,
            "Alertmanager re-sent every group several times",
            || async {
                let mut total = 0.0;
                for am in &ams {
                    total += sent(am).await;
                }
                total >= (4 * 2 * SERVICES) as f64
            },
        )
        .await;
        // Let the last deliveries be processed before counting.
        tokio::time::sleep(Duration::from_secs(2)).await;

        let mut deliveries = 0.0;
        for am in &ams {
            deliveries += sent(am).await;
        }
        let incidents = settled_on_postgres(&ps[0], &db, SERVICES).await;
        assert_eq!(incidents.len(), SERVICES, "one incident per service");
        let facts = pg_facts(&db).await;
        assert_eq!(
            facts.fingerprints.len(),
            SERVICES,
            "one stored alert per distinct alert: {:?}",
            facts.fingerprints
        );
        let acked: BTreeSet<String> = facts.fingerprints.clone();
        let mut t = Tally {
            sent: SERVICES,
            acked: SERVICES,
            incidents: incidents.len(),
            ..Tally::default()
        };
        check_invariants(&facts, &rx, &acked, &incidents, &mut t);
        assert_eq!(t.steps_claimed, 2 * SERVICES, "{t:?}");
        assert_eq!(t.steps_executed, 2 * SERVICES, "every step ran once: {t:?}");
        assert_eq!(t.trigger_resent, 0, "no kill, so no page sent twice: {t:?}");
        for p in &mut ps {
            p.assert_alive();
        }
        eprintln!("chaos-summary scenario=am_pair webhook_deliveries={deliveries} {t:?}");
    })
    .await;
}
