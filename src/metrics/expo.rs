//! The exposition writer: Prometheus text 0.0.4 and OpenMetrics 1.0, written directly into a
//! byte buffer (the hot path of a scrape). It owns the wire details — `# HELP`/`# TYPE`
//! headers (written lazily, so a family without samples is left out), label-value escaping,
//! number formatting, timestamps, the OpenMetrics family names of counters and info metrics,
//! `# EOF` — and hands the output on in chunks so a large exposition is never held in memory
//! whole.
//!
//! Labels reach the writer as data (`(name, value)` pairs, values as they came from upstream
//! or the configuration) and are escaped here, while they are written ([`escape_into`]). The
//! identifying labels of a target (`account` and its id), which never change and appear in
//! every one of its samples, are escaped once and memoised in a write-once slot the target
//! carries for the writer ([`Writer::sample_memo`]).

use super::Family;
use std::sync::OnceLock;

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// OpenMetrics when the `Accept` header lists `application/openmetrics-text` with a
    /// non-zero quality (any version we speak: 1.0.0 or 0.0.1, or none given), else text.
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            if !media.eq_ignore_ascii_case("application/openmetrics-text") {
                continue;
            }
            let mut ok = true;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                if k.eq_ignore_ascii_case("q") && v.parse::<f64>().map_or(true, |q| q <= 0.0) {
                    ok = false;
                }
                if k.eq_ignore_ascii_case("version") && !matches!(v, "1.0.0" | "0.0.1") {
                    ok = false;
                }
            }
            if ok {
                return Format::OpenMetrics;
            }
        }
        Format::Text
    }
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    /// Name ends in `_total`.
    Counter,
    /// Name ends in `_info`, value 1; a gauge in text 0.0.4.
    Info,
    /// One series per state, 1 for the current one; a gauge on the wire (the state label
    /// keeps the contract's name, which OpenMetrics' `stateset` would not allow).
    StateSet,
    Histogram,
}

impl MetricType {
    /// The name used in the README and the family table.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Histogram => "histogram",
        }
    }

    fn wire(self, fmt: Format) -> &'static str {
        match (self, fmt) {
            (MetricType::Gauge | MetricType::StateSet, _) => "gauge",
            (MetricType::Counter, _) => "counter",
            (MetricType::Info, Format::Text) => "gauge",
            (MetricType::Info, Format::OpenMetrics) => "info",
            (MetricType::Histogram, _) => "histogram",
        }
    }
}

/// Size at which a chunk is handed on.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Writes one exposition. Call [`Writer::family`] before the samples of each family.
pub struct Writer<'a> {
    fmt: Format,
    buf: Vec<u8>,
    sink: Option<&'a mut dyn FnMut(Vec<u8>)>,
    name: &'static str,
    help: &'static str,
    typ: MetricType,
    header_done: bool,
    samples: usize,
}

impl<'a> Writer<'a> {
    /// A writer that keeps everything in memory ([`Writer::finish`] returns it).
    pub fn new(fmt: Format) -> Writer<'static> {
        Writer {
            fmt,
            buf: Vec::with_capacity(CHUNK),
            sink: None,
            name: "",
            help: "",
            typ: MetricType::Gauge,
            header_done: true,
            samples: 0,
        }
    }

    /// A writer that hands each chunk of about [`CHUNK`] bytes to `sink`.
    pub fn streaming(fmt: Format, sink: &'a mut dyn FnMut(Vec<u8>)) -> Writer<'a> {
        Writer {
            sink: Some(sink),
            ..Writer::new(fmt)
        }
    }

    pub fn format(&self) -> Format {
        self.fmt
    }

    /// Samples written so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Starts a family; its header is written with its first sample.
    pub fn family(&mut self, f: &Family) {
        self.start(f.name, f.help, f.typ);
    }

    pub(crate) fn start(&mut self, name: &'static str, help: &'static str, typ: MetricType) {
        self.name = name;
        self.help = help;
        self.typ = typ;
        self.header_done = false;
    }

    fn header(&mut self) {
        self.header_done = true;
        let family = match (self.fmt, self.typ) {
            (Format::OpenMetrics, MetricType::Counter) => {
                self.name.strip_suffix("_total").unwrap_or(self.name)
            }
            (Format::OpenMetrics, MetricType::Info) => {
                self.name.strip_suffix("_info").unwrap_or(self.name)
            }
            _ => self.name,
        };
        let b = &mut self.buf;
        b.extend_from_slice(b"# HELP ");
        b.extend_from_slice(family.as_bytes());
        b.push(b' ');
        escape_help(b, self.help);
        b.extend_from_slice(b"\n# TYPE ");
        b.extend_from_slice(family.as_bytes());
        b.push(b' ');
        b.extend_from_slice(self.typ.wire(self.fmt).as_bytes());
        b.push(b'\n');
    }

    /// One sample of the current family: the labels of `labels`, then those of `extra`
    /// (two lists so that callers need not join them), values escaped here.
    #[inline]
    pub fn sample(&mut self, labels: &[(&str, &str)], extra: &[(&str, &str)], value: f64) {
        self.line(labels, extra, value);
        self.end_line();
    }

    /// A sample whose first labels are `fixed`, written from `memo`: the first call for a
    /// memo renders and escapes them there, later calls (every other sample of the target,
    /// in this and later expositions) copy them. Then the labels of `extra`. The memo must
    /// only ever be used with the same `fixed` labels.
    #[inline]
    pub(crate) fn sample_memo<'l>(
        &mut self,
        memo: &OnceLock<Box<[u8]>>,
        fixed: impl FnOnce() -> [(&'l str, &'l str); 2],
        extra: &[(&str, &str)],
        value: f64,
    ) {
        let rendered = memo.get_or_init(|| {
            let mut r = Vec::new();
            write_labels(&mut r, &fixed(), b'{');
            r.into_boxed_slice()
        });
        if !self.header_done {
            self.header();
        }
        self.samples += 1;
        let b = &mut self.buf;
        let extra_bytes: usize = extra.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        b.reserve(self.name.len() + rendered.len() + extra_bytes + 32);
        b.extend_from_slice(self.name.as_bytes());
        b.extend_from_slice(rendered);
        write_labels(b, extra, b',');
        b.push(b'}');
        b.push(b' ');
        write_value(b, value);
        self.end_line();
    }

    /// A sample with a timestamp (unix seconds; written as seconds in OpenMetrics and as
    /// milliseconds in text 0.0.4), as a backfill writes them.
    pub fn sample_at(
        &mut self,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: f64,
        timestamp: i64,
    ) {
        self.line(labels, extra, value);
        self.buf.push(b' ');
        match self.fmt {
            Format::OpenMetrics => write_i64(&mut self.buf, timestamp),
            Format::Text => write_i64(&mut self.buf, timestamp.saturating_mul(1000)),
        }
        self.end_line();
    }

    #[inline]
    fn line(&mut self, labels: &[(&str, &str)], extra: &[(&str, &str)], value: f64) {
        if !self.header_done {
            self.header();
        }
        self.samples += 1;
        let b = &mut self.buf;
        // One reservation per line: the pushes below do not grow the buffer one by one.
        let label_bytes: usize = labels
            .iter()
            .chain(extra)
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum();
        b.reserve(self.name.len() + label_bytes + 32);
        b.extend_from_slice(self.name.as_bytes());
        if !labels.is_empty() || !extra.is_empty() {
            write_labels(b, labels, b'{');
            write_labels(b, extra, if labels.is_empty() { b'{' } else { b',' });
            b.push(b'}');
        }
        b.push(b' ');
        write_value(b, value);
    }

    #[inline]
    fn end_line(&mut self) {
        self.buf.push(b'\n');
        if self.buf.len() >= CHUNK {
            self.flush();
        }
    }

    /// Appends text that is already in this writer's format (another encoder's families).
    pub(crate) fn raw(&mut self, text: &[u8]) {
        self.buf.extend_from_slice(text);
        if self.buf.len() >= CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 512));
            sink(chunk);
        }
    }

    /// Ends the exposition (`# EOF` for OpenMetrics), hands on the last chunk and returns what
    /// was not handed on (everything, for an in-memory writer).
    pub fn finish(mut self) -> Vec<u8> {
        if self.fmt == Format::OpenMetrics {
            self.buf.extend_from_slice(b"# EOF\n");
        }
        if self.sink.is_some() {
            if !self.buf.is_empty() {
                self.flush();
            }
            return Vec::new();
        }
        std::mem::take(&mut self.buf)
    }
}

/// Appends `k="v"` for each label, values escaped, the first after `first` and the others
/// after a comma.
#[inline]
fn write_labels(b: &mut Vec<u8>, labels: &[(&str, &str)], first: u8) {
    let mut sep = first;
    for (k, v) in labels {
        b.push(sep);
        sep = b',';
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(b"=\"");
        escape_into(b, v);
        b.push(b'"');
    }
}

/// Appends `v` escaped as a label value (`\\` `"` and newline).
#[inline]
pub(crate) fn escape_into(out: &mut Vec<u8>, v: &str) {
    let bytes = v.as_bytes();
    if !needs_escaping(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    for &c in bytes {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            c => out.push(c),
        }
    }
}

/// Whether `bytes` holds a backslash, a double quote or a newline. Eight bytes at a time
/// (most label values are short and need no escaping; this is on the hot path).
#[inline]
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    /// Non-zero when a byte of `x` equals `c` (the classic zero-byte test on `x ^ c…c`).
    #[inline(always)]
    fn has(x: u64, c: u8) -> u64 {
        let y = x ^ (ONES * c as u64);
        y.wrapping_sub(ONES) & !y & HIGHS
    }
    let special = |x: u64| has(x, b'\\') | has(x, b'"') | has(x, b'\n') != 0;
    let n = bytes.len();
    if n >= 8 {
        // Whole words, then the last eight bytes (overlapping what was checked).
        let word = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(a)
        };
        return (0..n / 8).any(|k| special(word(k * 8))) || special(word(n - 8));
    }
    if n >= 4 {
        // The first and the last four bytes (overlapping) make one word.
        let half = |at: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(a) as u64
        };
        return special(half(0) | half(n - 4) << 32);
    }
    bytes.iter().any(|&c| matches!(c, b'\\' | b'"' | b'\n'))
}

fn escape_help(out: &mut Vec<u8>, v: &str) {
    for &c in v.as_bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            c => out.push(c),
        }
    }
}

/// Formats a sample value: integers without a fraction, `+Inf`/`-Inf`/`NaN`, else the
/// shortest representation that reads back exactly.
#[inline]
pub(crate) fn write_value(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        write_i64(out, v as i64);
    } else if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        use std::io::Write;
        let _ = write!(out, "{v:?}");
    }
}

#[inline]
fn write_i64(out: &mut Vec<u8>, v: i64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let neg = v < 0;
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        out.push(b'-');
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Text);
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text; q=0")),
            Format::Text
        );
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;version=9.9")),
            Format::Text
        );
    }

    #[test]
    fn values() {
        let f = |v: f64| {
            let mut b = Vec::new();
            write_value(&mut b, v);
            String::from_utf8(b).unwrap()
        };
        assert_eq!(f(0.0), "0");
        assert_eq!(f(-3.0), "-3");
        assert_eq!(f(1048576.0), "1048576");
        assert_eq!(f(0.25), "0.25");
        assert_eq!(f(1e300), "1e300");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(i64::MAX as f64), "9.223372036854776e18");
    }

    #[test]
    fn escaping_headers_and_timestamps() {
        let mut w = Writer::new(Format::OpenMetrics);
        w.start("x_info", "An info.", MetricType::Info);
        w.sample(&[("a", "q\"uo\\te\nnl"), ("b", "池")], &[("c", "\\")], 1.0);
        w.start("y_total", "A counter.", MetricType::Counter);
        w.start("z", "Empty.", MetricType::Gauge);
        w.sample(&[], &[], 2.5);
        w.sample_at(&[("d", "2026-01-01")], &[], 3.0, 1_767_196_800);
        let out = String::from_utf8(w.finish()).unwrap();
        assert_eq!(
            out,
            "# HELP x An info.\n# TYPE x info\nx_info{a=\"q\\\"uo\\\\te\\nnl\",b=\"池\",c=\"\\\\\"} 1\n\
             # HELP z Empty.\n# TYPE z gauge\nz 2.5\nz{d=\"2026-01-01\"} 3 1767196800\n# EOF\n"
        );
        let mut w = Writer::new(Format::Text);
        w.start("z", "Empty.", MetricType::Gauge);
        w.sample_at(&[], &[], 3.0, 1_767_196_800);
        let out = String::from_utf8(w.finish()).unwrap();
        assert!(out.ends_with("z 3 1767196800000\n"), "{out}");
    }

    #[test]
    fn escaping_is_found_at_every_position() {
        for len in 0..40 {
            let plain = "a池".repeat(len);
            assert!(!needs_escaping(plain.as_bytes()));
            for at in 0..=plain.len() {
                if !plain.is_char_boundary(at) {
                    continue;
                }
                for c in ["\\", "\"", "\n"] {
                    let v = format!("{}{c}{}", &plain[..at], &plain[at..]);
                    assert!(needs_escaping(v.as_bytes()), "{v:?}");
                }
            }
        }
        // Bytes next to the special ones (0x5b, 0x5d, 0x21, 0x23, 0x09, 0x0b) are not.
        assert!(!needs_escaping(b"[]!#\t\x0bABCDEFGH"));
    }

    #[test]
    fn streaming_chunks_add_up() {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut sink = |c: Vec<u8>| chunks.push(c);
        let mut w = Writer::streaming(Format::Text, &mut sink);
        w.start("a", "h", MetricType::Gauge);
        for i in 0..20_000 {
            w.sample(&[("k", "v")], &[], i as f64);
        }
        let rest = w.finish();
        assert!(rest.is_empty());
        assert!(chunks.len() > 2);
        let all: Vec<u8> = chunks.concat();
        let text = String::from_utf8(all).unwrap();
        assert_eq!(text.lines().count(), 20_002);
        assert!(text.ends_with("a{k=\"v\"} 19999\n"));
    }
}

/// prometheus-client's encoders are the reference for the wire format: the same label values
/// (quotes, backslashes, newlines, CJK) must produce the same sample lines.
#[cfg(test)]
mod reference {
    use super::*;
    use prometheus_client::metrics::family::Family as PcFamily;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    use std::sync::atomic::AtomicU64;

    fn samples(text: &str) -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            // Compare names and labels; numbers are formatted differently (1 vs 1.0).
            .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn same_sample_lines_as_prometheus_client() {
        let values = [
            "plain",
            "q\"uote",
            "back\\slash",
            "new\nline",
            "池 \"A\" \\ 一\n第二行",
            "",
        ];
        let mut registry = Registry::default();
        let family = PcFamily::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
        registry.register("x_bytes", "Help", family.clone());
        let mut ours_text = Writer::new(Format::Text);
        let mut ours_om = Writer::new(Format::OpenMetrics);
        ours_text.start("x_bytes", "Help", MetricType::Gauge);
        ours_om.start("x_bytes", "Help", MetricType::Gauge);
        for (i, v) in values.iter().enumerate() {
            let id = format!("t{i}");
            family
                .get_or_create(&vec![
                    ("account".to_owned(), "a".to_owned()),
                    ("pool".to_owned(), id.clone()),
                    ("name".to_owned(), (*v).to_owned()),
                ])
                .set(i as f64);
            let fixed = [("account", "a"), ("pool", id.as_str())];
            ours_text.sample(&fixed, &[("name", v)], i as f64);
            ours_om.sample(&fixed, &[("name", v)], i as f64);
        }
        let mut theirs_text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut theirs_text, &registry).unwrap();
        let mut theirs_om = String::new();
        prometheus_client::encoding::text::encode(&mut theirs_om, &registry).unwrap();
        let ours_text = String::from_utf8(ours_text.finish()).unwrap();
        let ours_om = String::from_utf8(ours_om.finish()).unwrap();
        assert_eq!(samples(&ours_text), samples(&theirs_text));
        assert_eq!(samples(&ours_om), samples(&theirs_om));
        assert!(ours_om.ends_with("# EOF\n") && theirs_om.ends_with("# EOF\n"));
    }
}
