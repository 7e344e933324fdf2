//! The alert stream of the kill scenarios, and Alertmanager's re-send of what got no 200.

use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::{now, payload, post};
use crate::support::services::http as client;

// ---------------------------------------------------------------------------------------------
// The alert stream

/// The alerts sent and what became of their first send.
#[derive(Default)]
pub(super) struct Sent {
    pub(super) acked: std::collections::BTreeSet<String>,
    /// (service, fingerprint) of the alerts that got no 200.
    pub(super) unacked: Vec<(String, String)>,
    pub(super) answered_503: usize,
    pub(super) sent: usize,
    pub(super) services: std::collections::BTreeSet<String>,
    pub(super) starts_at: String,
}

/// Posts alerts until `stop`: every 50 ms a payload of 1–3 alerts with new fingerprints, a new
/// service every fifth payload (so ladders keep starting while the kills go on), each payload to
/// every URL at once (an Alertmanager HA pair). An alert is acknowledged when any URL answers
/// 200. Any answer other than 200 or 503 fails the test.
pub(super) fn stream(
    urls: Vec<String>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Sent> {
    tokio::spawn(async move {
        let http = client();
        let starts_at = now();
        let mut s = Sent {
            starts_at: starts_at.clone(),
            ..Sent::default()
        };
        let mut i = 0usize;
        while !stop.is_cancelled() {
            let service = format!("svc-{}", i / 5);
            let alerts: Vec<(String, String)> = (0..1 + i % 3)
                .map(|j| (service.clone(), format!("fp-{i}-{j}")))
                .collect();
            let body = payload(&alerts, &starts_at);
            let answers =
                futures::future::join_all(urls.iter().map(|u| post(&http, u, &body))).await;
            s.sent += alerts.len();
            s.services.insert(service);
            for a in &answers {
                assert!(
                    matches!(
                        a,
                        None | Some(StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE)
                    ),
                    "webhook answered {a:?}"
                );
            }
            if answers.contains(&Some(StatusCode::SERVICE_UNAVAILABLE)) {
                s.answered_503 += alerts.len();
            }
            if answers.contains(&Some(StatusCode::OK)) {
                s.acked.extend(alerts.into_iter().map(|(_, fp)| fp));
            } else {
                s.unacked.extend(alerts);
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    })
}

/// Alertmanager's part: re-sends the unacknowledged alerts until one URL answers 200 (30 s).
pub(super) async fn resend(urls: &[String], sent: &Sent) {
    let unacked = &sent.unacked;
    let http = client();
    let body = payload(unacked, &sent.starts_at);
    let deadline = Instant::now() + Duration::from_secs(30);
    if unacked.is_empty() {
        return;
    }
    loop {
        for u in urls {
            if post(&http, u, &body).await == Some(StatusCode::OK) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "re-send not acknowledged in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
