//! How the operator commands print: `--output=table|json`, aligned plain-text tables (display
//! width aware, so Chinese names line up; control characters from upstream never reach the
//! terminal), human byte units (KiB/MiB/GiB from KB × 1024) and JSON numbers.

use serde_json::Value;
use std::io::Write;
use unicode_width::UnicodeWidthStr;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned, human-readable tables.
    #[default]
    Table,
    /// One JSON document: stable snake_case field names, numbers as numbers.
    Json,
}

/// Bytes of a KB value from the API (`KB × 1024`).
pub fn kb_to_bytes(kb: f64) -> f64 {
    kb * 1024.0
}

/// `1.50 GiB`, `512 B`: binary units, two decimals above bytes.
pub fn human_bytes(bytes: f64) -> String {
    if !bytes.is_finite() {
        return "-".into();
    }
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let sign = if bytes < 0.0 { "-" } else { "" };
    let mut v = bytes.abs();
    if v < 1024.0 {
        return format!("{sign}{} B", v.round());
    }
    let mut unit = UNITS[0];
    v /= 1024.0;
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{sign}{v:.2} {unit}")
}

/// Human form of an optional KB value; `-` when absent.
pub fn human_kb(kb: Option<f64>) -> String {
    kb.map(|k| human_bytes(kb_to_bytes(k)))
        .unwrap_or_else(|| "-".into())
}

/// A JSON number: an integer when the value is integral (and exactly representable), else a
/// float; `null` when absent or not finite.
pub fn num(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() => {
            if x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0 {
                Value::from(x as i64)
            } else {
                serde_json::Number::from_f64(x)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        _ => Value::Null,
    }
}

/// JSON bytes of an optional KB value.
pub fn bytes_json(kb: Option<f64>) -> Value {
    num(kb.map(kb_to_bytes))
}

/// A JSON string or `null`.
pub fn text(v: Option<&str>) -> Value {
    v.map(|s| Value::String(s.to_owned()))
        .unwrap_or(Value::Null)
}

/// Makes one upstream value safe for a table cell: control characters (newlines, escape
/// sequences) become spaces; empty becomes `-`.
pub fn cell(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.trim().is_empty() {
        "-".into()
    } else {
        out
    }
}

/// [`cell`] of an optional value.
pub fn opt_cell(s: Option<&str>) -> String {
    s.map(cell).unwrap_or_else(|| "-".into())
}

/// A plain number for a table: no trailing `.0`; `-` when absent.
pub fn plain(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else {
                format!("{x}")
            }
        }
        _ => "-".into(),
    }
}

/// An aligned text table. Columns are separated by two spaces; numeric columns can be
/// right-aligned. A table without a header is a key/value list.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            right: vec![false; header.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the given columns (0-based).
    pub fn right_align(mut self, cols: &[usize]) -> Self {
        for &c in cols {
            if c >= self.right.len() {
                self.right.resize(c + 1, false);
            }
            self.right[c] = true;
        }
        self
    }

    /// Adds a row; cells are made safe with [`cell`].
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rows
            .push(cells.into_iter().map(|c| cell(c.as_ref())).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in `\n`.
    pub fn render(&self) -> String {
        let ncols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.header.len()))
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; ncols];
        let lines: Vec<&Vec<String>> = (!self.header.is_empty())
            .then_some(&self.header)
            .into_iter()
            .chain(self.rows.iter())
            .collect();
        for line in &lines {
            for (i, c) in line.iter().enumerate() {
                widths[i] = widths[i].max(c.width());
            }
        }
        let mut out = String::new();
        for line in &lines {
            let mut s = String::new();
            for (i, c) in line.iter().enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let pad = widths[i].saturating_sub(c.width());
                let right = self.right.get(i).copied().unwrap_or(false);
                if right {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    if i + 1 < line.len() {
                        s.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Writes text to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn print_stdout(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Writes a JSON document (pretty, with a final newline) to stdout.
pub fn print_json(v: &Value) {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    s.push('\n');
    print_stdout(&s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0.0), "0 B");
        assert_eq!(human_bytes(1023.0), "1023 B");
        assert_eq!(human_bytes(1024.0), "1.00 KiB");
        assert_eq!(human_bytes(1536.0 * 1024.0), "1.50 MiB");
        assert_eq!(human_kb(Some(1024.0 * 1024.0)), "1.00 GiB");
        assert_eq!(human_kb(None), "-");
        assert_eq!(human_bytes(-2048.0), "-2.00 KiB");
        assert_eq!(human_bytes(f64::NAN), "-");
        assert_eq!(
            human_bytes(1e30),
            format!("{:.2} EiB", 1e30 / 1024f64.powi(6))
        );
    }

    #[test]
    fn json_numbers() {
        assert_eq!(num(Some(1234.0)), serde_json::json!(1234));
        assert_eq!(num(Some(1.5)), serde_json::json!(1.5));
        assert_eq!(num(None), Value::Null);
        assert_eq!(num(Some(f64::INFINITY)), Value::Null);
        assert_eq!(bytes_json(Some(2.0)), serde_json::json!(2048));
    }

    #[test]
    fn tables_align_by_display_width_and_strip_controls() {
        let mut t = Table::new(&["NAME", "USED"]).right_align(&[1]);
        t.row(["池一", "1.00 KiB"]);
        t.row(["p\n\u{1b}", "12 B"]);
        let s = t.render();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "NAME      USED");
        assert_eq!(lines[1], "池一  1.00 KiB");
        assert_eq!(lines[2], "p         12 B");
        assert!(!s.contains('\u{1b}'));
    }

    #[test]
    fn key_value_lists_have_no_header() {
        let mut t = Table::new(&[]);
        t.row(["pool", "P-1"]);
        t.row(["name", ""]);
        assert_eq!(t.render(), "pool  P-1\nname  -\n");
    }
}
