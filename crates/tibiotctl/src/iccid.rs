//! The ICCID list of `card network`: from arguments and/or a file (one a line, `#` comments and
//! blank lines allowed), validated (digits only, 18 to 22 of them) and de-duplicated in order.
//! Every invalid entry is reported with where it came from (argument number or file line), and
//! then nothing is sent.

use std::collections::HashSet;
use std::path::Path;

use tibiot_exporter::config::{ICCID_MAX_LEN as MAX_LEN, ICCID_MIN_LEN as MIN_LEN};

/// The largest `--from-file` read.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Whether `s` looks like an ICCID (the configuration's rule).
pub fn is_valid(s: &str) -> bool {
    tibiot_exporter::config::is_valid_iccid(s)
}

/// The validated, de-duplicated list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IccidList {
    /// In first-seen order.
    pub iccids: Vec<String>,
    /// How many repeated entries were dropped.
    pub duplicates: usize,
}

/// One entry and where it came from.
struct Entry {
    origin: String,
    value: String,
}

fn describe(value: &str) -> String {
    let why = if value.len() < MIN_LEN || value.len() > MAX_LEN {
        format!(
            "{} characters, an ICCID has {MIN_LEN} to {MAX_LEN} digits",
            value.chars().count()
        )
    } else {
        "an ICCID has digits only".into()
    };
    format!(
        "{} is not an ICCID ({why})",
        tibiot_exporter::config::excerpt(value)
    )
}

/// Entries of a list file (the configuration's list syntax; a leading BOM is ignored).
fn file_entries(name: &str, content: &str) -> Vec<Entry> {
    tibiot_exporter::config::iccid_list_entries(content.trim_start_matches('\u{feff}'))
        .map(|(line, v)| Entry {
            origin: format!("{name}:{line}"),
            value: v.to_owned(),
        })
        .collect()
}

/// Builds the list from the arguments and the file's content (`file` = display name and
/// content). On any invalid entry returns every problem, one per line.
pub fn build(args: &[String], file: Option<(&str, &str)>) -> Result<IccidList, Vec<String>> {
    let mut entries: Vec<Entry> = args
        .iter()
        .enumerate()
        .map(|(i, a)| Entry {
            origin: format!("argument {}", i + 1),
            value: a.trim().to_owned(),
        })
        .collect();
    if let Some((name, content)) = file {
        entries.extend(file_entries(name, content));
    }
    let errors: Vec<String> = entries
        .iter()
        .filter(|e| !is_valid(&e.value))
        .map(|e| format!("{}: {}", e.origin, describe(&e.value)))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut seen = HashSet::new();
    let mut list = IccidList::default();
    for e in entries {
        if seen.insert(e.value.clone()) {
            list.iccids.push(e.value);
        } else {
            list.duplicates += 1;
        }
    }
    Ok(list)
}

/// Reads a list file (UTF-8, at most 16 MiB).
pub fn read_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{}: larger than {} MiB",
            path.display(),
            MAX_FILE_BYTES >> 20
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "89860000000000000001";
    const B: &str = "89860000000000000002";

    #[test]
    fn args_and_file_with_comments_deduplicated_in_order() {
        let file = format!("# header\n\n{B}  # trailing comment\r\n  {A}\n{B}\n");
        let l = build(&[A.into(), A.into()], Some(("f.txt", &file))).unwrap();
        assert_eq!(l.iccids, vec![A.to_owned(), B.to_owned()]);
        assert_eq!(l.duplicates, 3);
    }

    #[test]
    fn invalid_entries_name_their_line_or_argument() {
        let file = format!("{A}\n# ok\n8986abc0000000000001\n123\n");
        let errs = build(&["x".into(), B.into()], Some(("list.txt", &file))).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("argument 1: \"x\""), "{}", errs[0]);
        assert!(errs[1].starts_with("list.txt:3: "), "{}", errs[1]);
        assert!(errs[1].contains("digits only"));
        assert!(errs[2].starts_with("list.txt:4: "), "{}", errs[2]);
    }

    #[test]
    fn lengths() {
        assert!(is_valid(&"1".repeat(18)));
        assert!(is_valid(&"1".repeat(22)));
        assert!(!is_valid(&"1".repeat(17)));
        assert!(!is_valid(&"1".repeat(23)));
        assert!(!is_valid("８９８６００００００００００００００００１")); // full-width digits
    }
}
