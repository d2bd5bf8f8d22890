//! ICCID lists: what an ICCID is, and the list syntax shared by `cards_file` and
//! `tibiotctl card network --from-file` (one ICCID a line; `#` starts a comment; blanks around
//! an entry, blank lines and a leading byte-order mark are ignored). One syntax, one
//! implementation, one message for a bad entry.

use std::path::{Path, PathBuf};

/// Shortest and longest ICCID accepted (ITU-T E.118 allows up to 22 digits with the check
/// digit; in practice 19 or 20).
pub const ICCID_MIN_LEN: usize = 18;
pub const ICCID_MAX_LEN: usize = 22;

/// The largest list file read.
pub(super) const MAX_LIST_FILE_BYTES: u64 = 16 << 20;

/// An ICCID: 18–22 decimal digits.
pub fn is_valid_iccid(s: &str) -> bool {
    (ICCID_MIN_LEN..=ICCID_MAX_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Why an entry is not an ICCID: the entry (escaped, at most 80 bytes) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IccidError(String);

impl std::fmt::Display for IccidError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IccidError {}

/// Checks one ICCID.
pub fn check_iccid(s: &str) -> Result<(), IccidError> {
    if is_valid_iccid(s) {
        return Ok(());
    }
    let why = if s.len() < ICCID_MIN_LEN || s.len() > ICCID_MAX_LEN {
        format!(
            "{} characters, an ICCID has {ICCID_MIN_LEN} to {ICCID_MAX_LEN} digits such as 89860000000000000001",
            s.chars().count()
        )
    } else {
        "an ICCID has digits only, such as 89860000000000000001".into()
    };
    Err(IccidError(format!(
        "{} is not an ICCID ({why})",
        excerpt(s)
    )))
}

/// A value quoted for an error message, escaped and cut to at most 80 bytes (an escape can
/// take 10 bytes per character, so cutting characters first is not enough).
pub fn excerpt(value: &str) -> String {
    let mut shown = format!("{value:?}");
    if shown.len() > 80 {
        let mut cut = 76;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    shown
}

/// The entries of a list text with their 1-based line numbers.
pub fn iccid_list_entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.trim_start_matches('\u{feff}')
        .lines()
        .enumerate()
        .filter_map(|(n, line)| {
            let s = line.split('#').next().unwrap_or("").trim();
            (!s.is_empty()).then_some((n + 1, s))
        })
}

/// A list entry that is not an ICCID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    pub error: IccidError,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.error)
    }
}

/// The ICCIDs of a list text, in order (repeats kept), or every bad entry.
pub fn parse_iccid_lines(text: &str) -> Result<Vec<String>, Vec<BadLine>> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (line, s) in iccid_list_entries(text) {
        match check_iccid(s) {
            Ok(()) => out.push(s.to_owned()),
            Err(error) => bad.push(BadLine { line, error }),
        }
    }
    if bad.is_empty() { Ok(out) } else { Err(bad) }
}

/// A list file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListFileError {
    #[error("cannot read {}: {kind}", path.display())]
    Read {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error("{}: larger than {} MiB", path.display(), MAX_LIST_FILE_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("{}: not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    /// Every entry that is not an ICCID.
    #[error("{}: {} entries are not ICCIDs, the first at {}", path.display(), lines.len(), lines[0])]
    Invalid { path: PathBuf, lines: Vec<BadLine> },
}

/// Reads a list file as text (UTF-8, at most [`MAX_LIST_FILE_BYTES`]).
pub fn read_list_file(path: &Path) -> Result<String, ListFileError> {
    let read = |e: std::io::Error| ListFileError::Read {
        path: path.to_path_buf(),
        kind: e.kind(),
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_LIST_FILE_BYTES {
        return Err(ListFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    String::from_utf8(bytes).map_err(|_| ListFileError::NotText {
        path: path.to_path_buf(),
    })
}

/// Reads a cards file: its ICCIDs in order (repeats kept).
pub fn read_cards_file(path: &Path) -> Result<Vec<String>, ListFileError> {
    parse_iccid_lines(&read_list_file(path)?).map_err(|lines| ListFileError::Invalid {
        path: path.to_path_buf(),
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_syntax() {
        let t = "\u{feff}# fleet\n\n 89860000000000000001 # first\r\n8986abc0000000000001\n123\n";
        let bad = parse_iccid_lines(t).unwrap_err();
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].line, 4);
        assert!(
            bad[0].error.to_string().contains("digits only"),
            "{}",
            bad[0]
        );
        assert_eq!(bad[1].line, 5);
        assert!(
            bad[1].error.to_string().contains("3 characters"),
            "{}",
            bad[1]
        );
        assert_eq!(
            parse_iccid_lines("89860000000000000001\n# x\n").unwrap(),
            ["89860000000000000001"]
        );
    }

    #[test]
    fn lengths() {
        assert!(is_valid_iccid(&"1".repeat(18)));
        assert!(is_valid_iccid(&"1".repeat(22)));
        assert!(!is_valid_iccid(&"1".repeat(17)));
        assert!(!is_valid_iccid(&"1".repeat(23)));
        assert!(!is_valid_iccid(
            "８９８６００００００００００００００００１"
        ));
        assert!(excerpt(&"é".repeat(100)).len() <= 80);
    }
}
