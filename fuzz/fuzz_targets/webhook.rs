//! Coverage-guided fuzzing of the webhook parser (the one parser of untrusted input):
//! `cargo fuzz run webhook` (nightly, or RUSTC_BOOTSTRAP=1 on stable). The same properties as
//! tests/it/fuzz_webhook.rs: never panic; a refusal is one line naming a field; an acceptance has
//! one signal per alert, each with a fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remedyd::domain::time::Timestamp;
use remedyd::adapters::intake::alertmanager;

fuzz_target!(|data: &[u8]| {
    match alertmanager::parse(data, Timestamp(0)) {
        Ok((receipt, signals)) => {
            assert_eq!(receipt.alerts, signals.len());
            assert!(signals.iter().all(|s| !s.fingerprint.is_empty()));
        }
        Err(e) => assert!(!e.0.contains('\n'), "{}", e.0),
    }
});
