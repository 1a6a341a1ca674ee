//! Helpers several test modules share; not every module uses all of them.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tokens of `text` in o200k, as the plugins estimate them.
pub fn o200k(text: &str) -> u64 {
    tiktoken_rs::o200k_base()
        .unwrap()
        .encode_ordinary(text)
        .len() as u64
}

/// Waits out the end of a minute so a per-minute window cannot reset mid-test.
pub fn away_from_minute_end() {
    let sec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if sec >= 45 {
        std::thread::sleep(Duration::from_secs(61 - sec));
    }
}
