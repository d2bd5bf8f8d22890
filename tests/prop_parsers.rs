//! Property tests (bounded fuzzing) of the small parsers and encoders of untrusted text:
//! request signing (`canonical_query`, `string_to_sign`, `verify_signature`), cards files
//! (`parse_iccid_lines`), the identifier validators, and the API calendar (`parse_day`,
//! `Month::parse`, `parse_offset`, `parse_timestamp`). None may panic on any input; valid
//! input must round-trip.
//!
//! Cases per property: `PROPTEST_CASES` (default 512).

use chrono::{Datelike, NaiveDate};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use secrecy::SecretString;
use tibiot_api::calendar::{ApiCalendar, Month, format_day, parse_day, parse_offset};
use tibiot_api::sign::{
    HEADER_SIGNATURE, HmacSha256Signer, SignRequest, canonical_query, hmac_hex, string_to_sign,
    verify_signature,
};
use tibiot_exporter::config::{
    is_valid_account_name, is_valid_iccid, is_valid_pool_code, parse_iccid_lines,
};

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn arb_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((".{0,12}", ".{0,16}"), 0..8)
}

/// Splits a canonical query back into decoded pairs.
fn decode_query(q: &str) -> Vec<(String, String)> {
    if q.is_empty() {
        return Vec::new();
    }
    q.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("every pair has '='");
            (
                percent_decode_str(k).decode_utf8().unwrap().into_owned(),
                percent_decode_str(v).decode_utf8().unwrap().into_owned(),
            )
        })
        .collect()
}

fn arb_iccid() -> impl Strategy<Value = String> {
    "[0-9]{18,22}"
}

proptest! {
    #![proptest_config(config(512))]

    /// The canonical query holds only unreserved characters, `%XX` (upper-case hex), `=` and
    /// `&`; it decodes back to the same pairs; it does not depend on the input order; and it
    /// is sorted by encoded name, then value.
    #[test]
    fn canonical_query_round_trips(pairs in arb_pairs(), seed in any::<u64>()) {
        let q = canonical_query(&pairs);
        let b = q.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'%' {
                prop_assert!(i + 2 < b.len(), "truncated escape in {}", q);
                prop_assert!(b[i + 1].is_ascii_hexdigit() && !b[i + 1].is_ascii_lowercase());
                prop_assert!(b[i + 2].is_ascii_hexdigit() && !b[i + 2].is_ascii_lowercase());
                i += 3;
                continue;
            }
            prop_assert!(c.is_ascii_alphanumeric() || b"-_.~=&".contains(&c), "{:?} in {}", c as char, q);
            i += 1;
        }
        let mut want = pairs.clone();
        want.sort_by(|a, b| {
            let ea = (tibiot_api::sign::encode_component(&a.0), tibiot_api::sign::encode_component(&a.1));
            let eb = (tibiot_api::sign::encode_component(&b.0), tibiot_api::sign::encode_component(&b.1));
            ea.cmp(&eb)
        });
        prop_assert_eq!(decode_query(&q), want);
        // any permutation gives the same canonical query
        let mut shuffled = pairs.clone();
        let n = shuffled.len();
        if n > 1 {
            let mut s = seed;
            for k in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(k, (s >> 33) as usize % (k + 1));
            }
        }
        prop_assert_eq!(canonical_query(&shuffled), q);
    }

    /// A signature made by the signer verifies against the string to sign; it fails with
    /// another key, another path, another body, or one flipped hex digit.
    #[test]
    fn signatures_verify_and_bind_the_request(
        key in ".{1,24}",
        other_key in ".{1,24}",
        secret in ".{1,40}",
        path in "/[a-zA-Z0-9/_.-]{0,40}",
        pairs in arb_pairs(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        ts in any::<u64>(),
        nonce in "[0-9a-f]{32}",
        post in any::<bool>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let method = if post { "POST" } else { "GET" };
        let req = SignRequest { method, path: &path, query: &pairs, body: &body };
        let signer = HmacSha256Signer::new(key.clone(), SecretString::from(secret.clone()));
        let headers = signer.headers_at(&req, u128::from(ts), &nonce);
        let sig = headers.iter().find(|(k, _)| *k == HEADER_SIGNATURE).unwrap().1.clone();
        prop_assert_eq!(sig.len(), 64);
        let sts = string_to_sign(&req, &key, &ts.to_string(), &nonce);
        prop_assert!(verify_signature(secret.as_bytes(), &sts, &sig));
        prop_assert_eq!(hmac_hex(secret.as_bytes(), &sts), sig.clone());
        if other_key != secret {
            prop_assert!(!verify_signature(other_key.as_bytes(), &sts, &sig));
        }
        let other_path = format!("{path}x");
        let req2 = SignRequest { path: &other_path, ..req };
        prop_assert!(!verify_signature(secret.as_bytes(), &string_to_sign(&req2, &key, &ts.to_string(), &nonce), &sig));
        let mut body2 = body.clone();
        body2.push(0);
        let req3 = SignRequest { body: &body2, ..req };
        prop_assert!(!verify_signature(secret.as_bytes(), &string_to_sign(&req3, &key, &ts.to_string(), &nonce), &sig));
        let mut bad: Vec<u8> = sig.clone().into_bytes();
        let i = flip.index(bad.len());
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        prop_assert!(!verify_signature(secret.as_bytes(), &sts, &String::from_utf8(bad).unwrap()));
        // the secret never appears in the headers
        prop_assert!(headers.iter().all(|(_, v)| secret.len() < 8 || !v.contains(&secret)));
    }

    /// `verify_signature` never panics on hostile signature text.
    #[test]
    fn verify_signature_on_garbage(key in proptest::collection::vec(any::<u8>(), 0..80), msg in ".*", sig in ".{0,140}") {
        let _ = verify_signature(&key, &msg, &sig);
    }

    /// Cards files: arbitrary text never panics; what is accepted are valid ICCIDs; an error
    /// names a line that exists.
    #[test]
    fn iccid_lines_on_arbitrary_text(text in prop_oneof![".*", "([0-9 #\t\r]{0,30}\n){0,20}", "(\\PC{0,30}\n){0,10}"]) {
        match parse_iccid_lines(&text) {
            Ok(list) => prop_assert!(list.iter().all(|c| is_valid_iccid(c))),
            Err(bad) => {
                prop_assert!(!bad.is_empty());
                for b in bad {
                    prop_assert!(b.line >= 1 && b.line <= text.lines().count(), "line {} of {}", b.line, text.lines().count());
                    prop_assert!(b.error.to_string().len() < 200);
                }
            }
        }
    }

    /// A generated cards file (comments, blank lines, padding, CRLF) yields exactly its
    /// ICCIDs in order; one bad line makes an error at that line.
    #[test]
    fn iccid_lines_round_trip(
        entries in proptest::collection::vec((arb_iccid(), "[ \t]{0,2}", proptest::option::of("#[^\n\r]{0,20}"), 0u8..3), 0..30),
        crlf in any::<bool>(),
        bad_at in any::<prop::sample::Index>(),
        bad in prop_oneof!["[0-9]{1,17}", "[0-9]{23,30}", "[0-9]{10}[a-zA-Z][0-9]{9}", "[A-Za-z\\-]{1,20}"],
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut lines = Vec::new();
        let mut want = Vec::new();
        for (iccid, pad, comment, extra) in &entries {
            match extra {
                0 => lines.push(String::new()),
                1 => lines.push(format!("# {iccid}")),
                _ => {}
            }
            lines.push(format!("{pad}{iccid}{pad}{}", comment.as_deref().unwrap_or("")));
            want.push(iccid.clone());
        }
        let text = lines.join(nl);
        prop_assert_eq!(parse_iccid_lines(&text).unwrap(), want);
        let at = bad_at.index(lines.len() + 1);
        lines.insert(at, format!("  {bad} "));
        let text = lines.join(nl);
        let bad = parse_iccid_lines(&text).unwrap_err();
        prop_assert_eq!(bad.len(), 1);
        prop_assert_eq!(bad[0].line, at + 1);
        prop_assert!(bad[0].error.to_string().contains("not an ICCID"));
    }

    /// The validators agree with their documented grammars.
    #[test]
    fn validators_match_their_grammars(s in ".{0,70}") {
        let ascii_ok = |extra: &[u8]| s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
        prop_assert_eq!(is_valid_account_name(&s), !s.is_empty() && s.len() <= 64 && ascii_ok(b"_-"));
        prop_assert_eq!(is_valid_pool_code(&s), !s.is_empty() && s.len() <= 64 && ascii_ok(b"_-."));
        prop_assert_eq!(is_valid_iccid(&s), (18..=22).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()));
    }

    /// Calendar parsers never panic on arbitrary text.
    #[test]
    fn calendar_parsers_never_panic(s in prop_oneof![
        ".{0,40}",
        "[+-]\\PC{0,6}",
        "[+-][0-9:]{0,6}",
        "[0-9]{4}-[0-9]{1,2}(-[0-9]{1,2})?",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?([+-][0-9]{2}:[0-9]{2}|Z)?",
        "[0-9]{12,25}",
    ], off in -14i32 * 3600..=14 * 3600) {
        let _ = parse_day(&s);
        let _ = Month::parse(&s);
        let _ = parse_offset(&s);
        let cal = ApiCalendar::new(chrono::FixedOffset::east_opt(off / 60 * 60).unwrap());
        let _ = cal.parse_timestamp(&s);
    }

    /// Valid days, months and offsets round-trip.
    #[test]
    fn calendar_round_trips(y in 1000i32..=9999, doy in 0u32..366, h in 0i32..=14, m in 0i32..60, neg in any::<bool>()) {
        let Some(d) = NaiveDate::from_yo_opt(y, doy + 1) else { return Ok(()) };
        let s = format_day(d);
        prop_assert_eq!(parse_day(&s), Some(d));
        let month = Month::parse(&s[..7]).unwrap();
        prop_assert_eq!(month, Month::of(d));
        prop_assert_eq!(month.to_string(), &s[..7]);
        prop_assert!(month.days().any(|x| x == d));
        prop_assert_eq!(month.days().count() as u32, {
            let next = month.next_first_day();
            (next - month.first_day()).num_days() as u32
        });
        let secs = if neg { -(h * 3600 + m * 60) } else { h * 3600 + m * 60 };
        let text = format!("{}{:02}:{:02}", if neg { '-' } else { '+' }, h, m);
        prop_assert_eq!(parse_offset(&text).map(|o| o.local_minus_utc()), Some(secs));
        let compact = text.replace(':', "");
        prop_assert_eq!(parse_offset(&compact).map(|o| o.local_minus_utc()), Some(secs));
        // a day's start on a calendar is midnight there
        let cal = ApiCalendar::new(chrono::FixedOffset::east_opt(secs).unwrap());
        let start = cal.day_start(d);
        prop_assert_eq!(cal.parse_timestamp(&s), Some(start));
        prop_assert_eq!(cal.parse_timestamp(&format!("{s} 01:02:03")), Some(start + 3723));
        prop_assert_eq!(cal.day_end(d) - start, 86_400);
        prop_assert_eq!(cal.date_at(chrono::DateTime::from_timestamp(start, 0).unwrap()), d);
        prop_assert_eq!(cal.date_at(chrono::DateTime::from_timestamp(start - 1, 0).unwrap()), d.pred_opt().unwrap());
        // windows: n entries, oldest first, ending today
        let n = (doy % 31) + 1;
        let days = cal.last_days(d, n);
        prop_assert_eq!(days.len() as u32, n);
        prop_assert_eq!(*days.last().unwrap(), d);
        prop_assert!(days.windows(2).all(|w| w[1] == w[0].succ_opt().unwrap()));
        let months = cal.last_months(d, n.min(12));
        prop_assert_eq!(*months.last().unwrap(), Month::of(d));
        prop_assert!(months.windows(2).all(|w| w[0].next_first_day() == w[1].first_day()));
        prop_assert_eq!(months[0].first_day().day(), 1);
    }
}

/// Regression (found by `calendar_parsers_never_panic`): a 4-byte offset whose second byte
/// starts a multi-byte character (`+1é2`) made `parse_offset` slice inside a character and
/// panic. `utc_offset` comes from the config file.
#[test]
fn parse_offset_multibyte_does_not_panic() {
    for s in ["+1é2", "-1é2", "+é12", "+12é", "+1\u{80}"] {
        assert_eq!(parse_offset(s), None, "{s}");
    }
}

/// Offsets with a sign inside (`++100`, `-+1:00`) are not offsets.
#[test]
fn parse_offset_digits_only() {
    for s in ["++100", "-+1:00", "+1 :00", "+ 8"] {
        assert_eq!(parse_offset(s), None, "{s}");
    }
    assert_eq!(parse_offset("+08").unwrap().local_minus_utc(), 8 * 3600);
}

/// Regression (found by `iccid_lines_on_arbitrary_text` at 20,000 cases): a bad line of
/// characters that escape to 9 bytes each made a message of over 300 bytes.
#[test]
fn a_bad_line_of_escaped_characters_makes_a_short_message() {
    let line = "\u{3347a}\u{1}".repeat(30);
    let bad = parse_iccid_lines(&format!("89860000000000000001\n{line}\n")).unwrap_err();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line, 2);
    let msg = bad[0].error.to_string();
    assert!(msg.len() < 200, "{} bytes: {msg}", msg.len());
    assert!(msg.contains("is not an ICCID (60 characters"), "{msg}");
}
