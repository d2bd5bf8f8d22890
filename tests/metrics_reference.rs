//! docs/metrics.md's metric reference (between `<!-- metrics:start -->` and
//! `<!-- metrics:end -->`) is exactly the exporter's family table as `reference_markdown`
//! writes it: same families, order, types, labels, served-on and help text. On a mismatch the
//! test prints the table to paste; `UPDATE_DOCS=1` writes it into the file instead.

use tibiot_exporter::kinds::families;
use tibiot_exporter::metrics::reference_markdown;

const START: &str = "<!-- metrics:start -->\n";
const END: &str = "<!-- metrics:end -->";

#[test]
fn docs_metric_reference_is_the_family_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let doc = std::fs::read_to_string(path).expect("docs/metrics.md");
    let start = doc
        .find(START)
        .expect("docs/metrics.md has no start marker")
        + START.len();
    let end = doc.find(END).expect("docs/metrics.md has no end marker");
    assert!(start <= end);
    let want = reference_markdown(families());
    if doc[start..end] == want {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{want}{}", &doc[..start], &doc[end..]);
        std::fs::write(path, updated).expect("docs/metrics.md written");
        return;
    }
    panic!(
        "docs/metrics.md's metric reference differs from the family table; paste this between the markers (or run with UPDATE_DOCS=1):\n\n{want}"
    );
}

/// The README points at the reference rather than keeping a copy that could drift.
#[test]
fn readme_points_at_the_reference() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    assert!(readme.contains("(docs/metrics.md)"));
    assert!(!readme.contains(START.trim_end()));
}
