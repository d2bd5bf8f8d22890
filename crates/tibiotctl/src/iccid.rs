//! The ICCID list of `card network`: from arguments and/or a file, validated and de-duplicated
//! in order. The file syntax, the file limits and the message for a bad entry are the
//! configuration's (`tibiot_exporter::config::cards`, the same code that reads `cards_file`).
//! Every invalid entry is reported with where it came from (argument number or file line), and
//! then nothing is sent.

use std::collections::HashSet;
use std::path::Path;

use tibiot_exporter::config::{ListFileError, check_iccid, iccid_list_entries, read_list_file};

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
        entries.extend(iccid_list_entries(content).map(|(line, v)| Entry {
            origin: format!("{name}:{line}"),
            value: v.to_owned(),
        }));
    }
    let errors: Vec<String> = entries
        .iter()
        .filter_map(|e| {
            check_iccid(&e.value)
                .err()
                .map(|err| format!("{}: {err}", e.origin))
        })
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
pub fn read_file(path: &Path) -> Result<String, ListFileError> {
    read_list_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "89860000000000000001";
    const B: &str = "89860000000000000002";

    #[test]
    fn args_and_file_with_comments_deduplicated_in_order() {
        let file = format!("\u{feff}# header\n\n{B}  # trailing comment\r\n  {A}\n{B}\n");
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
}
