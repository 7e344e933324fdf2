//! The metrics' handles and families, read through their text encoding.

use super::Metrics;

/// The handles a webhook counts through are the exported series: the counts land in
/// `/metrics` under the families' labels, next to a code counted through its family.
#[test]
fn webhook_counts_land_in_the_exported_series() {
    let m = Metrics::new();
    let before = m.encode();
    for series in [
        "remedyd_signals_total{source=\"webhook\",status=\"stored\"} 0",
        "remedyd_signals_total{source=\"webhook\",status=\"duplicate\"} 0",
        "remedyd_webhook_requests_total{code=\"200\"} 0",
    ] {
        assert!(before.lines().any(|l| l == series), "{series}:\n{before}");
    }
    m.webhook_stored(3, 1);
    m.webhook_stored(2, 0);
    m.webhook_answered(200);
    m.webhook_answered(200);
    m.webhook_answered(503);
    m.signal("webhook", "stored", 10);
    let text = m.encode();
    for series in [
        "remedyd_signals_total{source=\"webhook\",status=\"stored\"} 15",
        "remedyd_signals_total{source=\"webhook\",status=\"duplicate\"} 1",
        "remedyd_webhook_requests_total{code=\"200\"} 2",
        "remedyd_webhook_requests_total{code=\"503\"} 1",
    ] {
        assert!(text.lines().any(|l| l == series), "{series}:\n{text}");
    }
}
