//! Fuzz target: the small parsers of untrusted text — API calendar dates, months, offsets and
//! timestamps, cards files, `Retry-After`, `${VAR}` expansion, and the canonical query of
//! arbitrary parameters. Must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tibiot_api::client::parse_retry_after;
use tibiot_api::sign::{canonical_query, verify_signature};
use tibiot_api::calendar::{ApiCalendar, Month, parse_day, parse_offset};
use tibiot_exporter::config::{expand, parse_iccid_lines};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_day(s);
    let _ = Month::parse(s);
    if let Some(off) = parse_offset(s) {
        let _ = ApiCalendar::new(off).parse_timestamp("2026-01-01 00:00:00");
    }
    let _ = ApiCalendar::default().parse_timestamp(s);
    if let Err(bad) = parse_iccid_lines(s) {
        for b in bad {
            assert!(b.line >= 1 && b.line <= s.lines().count());
        }
    }
    if let Some(d) = parse_retry_after(s) {
        assert!(d.as_secs() <= 3600);
    }
    let _ = expand(s, "k", &|k| (k.len() < 4).then(|| k.to_owned()));
    let pairs: Vec<(String, String)> = s
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect();
    let q = canonical_query(&pairs);
    assert!(
        q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~=&%".contains(&b))
    );
    let _ = verify_signature(data, s, s);
});
