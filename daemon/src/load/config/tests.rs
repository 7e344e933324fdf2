//! The config's checks, key by key.

use super::*;

#[test]
fn a_read_token_needs_a_write_token_and_must_differ_from_it() {
    let alone = Config {
        read_token: Some("r".into()),
        ..Config::default()
    };
    let e = alone.validate().unwrap_err().to_string();
    assert!(e.starts_with("config: read_token: "), "{e}");
    assert!(e.contains("needs webhook_token"), "{e}");
    let same = Config {
        webhook_token: Some("t".into()),
        read_token: Some("t".into()),
        ..Config::default()
    };
    let e = same.validate().unwrap_err().to_string();
    assert!(e.contains("must differ"), "{e}");
    let both = Config {
        webhook_token: Some("t".into()),
        read_token: Some("r".into()),
        read_token_file: Some("/nonexistent".into()),
        ..Config::default()
    };
    let e = both.validate().unwrap_err().to_string();
    assert!(e.starts_with("config: read_token_file: "), "{e}");
    let fine = Config {
        webhook_token: Some("t".into()),
        read_token: Some("r".into()),
        ..Config::default()
    };
    assert!(fine.validate().is_ok());
    assert_eq!(fine.read_token().unwrap().as_deref(), Some("r"));
}

#[test]
fn listener_limits_default_to_safe_values_and_refuse_out_of_range_ones() {
    let l = Config::default().listener_limits().unwrap();
    assert_eq!(l.max_connections, 1024);
    assert_eq!(l.max_header_bytes, 16 * 1024);
    assert_eq!(l.max_headers, 100);
    assert_eq!(l.request_timeout, Duration::from_secs(10));
    assert_eq!(l.idle_timeout, Duration::from_secs(30));
    type Tweak = fn(&mut Config);
    let bad: [(Tweak, &str); 5] = [
        (
            |c| c.max_connections = 0,
            "config: max_connections: 0; valid: 1 to 65536",
        ),
        (
            |c| c.max_header_bytes = 100,
            "config: max_header_bytes: 100; valid: 1024 to 1048576",
        ),
        (
            |c| c.max_headers = 5000,
            "config: max_headers: 5000; valid: 8 to 1000",
        ),
        (
            |c| c.request_timeout = "10ms".into(),
            "config: request_timeout: \"10ms\" is shorter than 100ms",
        ),
        (
            |c| c.idle_timeout = "soon".into(),
            "config: idle_timeout: \"soon\" is not a duration",
        ),
    ];
    for (tweak, says) in bad {
        let mut cfg = Config::default();
        tweak(&mut cfg);
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with(says), "{e}");
    }
}

#[test]
fn engine_stall_after_defaults_to_a_minute_and_refuses_less_than_the_engine_tick() {
    assert_eq!(
        Config::default().engine_stall_after().unwrap(),
        Duration::from_secs(60)
    );
    let cfg = Config {
        engine_stall_after: "2m".into(),
        ..Config::default()
    };
    assert_eq!(cfg.engine_stall_after().unwrap(), Duration::from_secs(120));
    for (bad, says) in [
        ("500ms", "shorter than 1s"),
        ("0s", "shorter than 1s"),
        ("soon", "is not a duration"),
    ] {
        let cfg = Config {
            engine_stall_after: bad.into(),
            ..Config::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with("config: engine_stall_after: "), "{e}");
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn external_url_is_optional_and_must_be_an_absolute_http_url() {
    assert_eq!(Config::default().external_url().unwrap(), None);
    let ok = Config {
        external_url: Some("https://remedyd.example.com/ops/".into()),
        ..Config::default()
    };
    assert!(ok.validate().is_ok());
    assert_eq!(
        ok.external_url().unwrap().as_deref(),
        Some("https://remedyd.example.com/ops")
    );
    for (bad, says) in [
        ("remedyd.example.com", "is not a URL"),
        ("ftp://remedyd.example.com", "is not http or https"),
        (
            "https://remedyd.example.com/?a=b",
            "has a query or a fragment",
        ),
        ("/incidents", "is not a URL"),
    ] {
        let cfg = Config {
            external_url: Some(bad.into()),
            ..Config::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with("config: external_url: "), "{bad}: {e}");
        assert!(e.contains(says), "{bad}: {e}");
        assert!(e.contains("valid: an absolute http(s) URL"), "{bad}: {e}");
    }
}

#[test]
fn alertmanager_url_takes_a_list_or_commas_and_refuses_what_is_not_a_url() {
    #[derive(Deserialize)]
    struct Env {
        #[serde(deserialize_with = "list_or_commas")]
        alertmanager_url: Vec<String>,
    }
    let env: Env = serde_json::from_value(serde_json::json!({
        "alertmanager_url": "http://am-0:9093/, http://am-1:9093"
    }))
    .unwrap();
    let from_env = Config {
        alertmanager_url: env.alertmanager_url,
        ..Config::default()
    };
    assert_eq!(
        from_env.alertmanager_urls().unwrap(),
        ["http://am-0:9093", "http://am-1:9093"]
    );
    let bad = Config {
        alertmanager_url: vec!["am-0:9093".into()],
        ..Config::default()
    };
    let e = bad.validate().unwrap_err().to_string();
    assert!(
        e.starts_with("config: alertmanager_url: \"am-0:9093\""),
        "{e}"
    );
    assert!(Config::default().alertmanager_urls().unwrap().is_empty());
}

#[test]
fn signal_retention_defaults_to_thirty_days_and_must_outlive_staleness() {
    let d = Config::default();
    assert_eq!(
        d.signal_retention().unwrap(),
        Some(Duration::from_secs(30 * 24 * 3600))
    );
    let off = Config {
        signal_retention: " off ".into(),
        ..Config::default()
    };
    assert_eq!(off.signal_retention().unwrap(), None);
    assert!(off.validate().is_ok());
    for (value, stale, says) in [
        ("12h", "12h", "shorter than a day"),
        ("2d", "3d", "not longer than stale_after"),
        ("forever", "12h", "is not a duration"),
    ] {
        let c = Config {
            signal_retention: value.into(),
            stale_after: stale.into(),
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config: signal_retention: "), "{e}");
        assert!(e.contains(says), "{value}: {e}");
    }
}
