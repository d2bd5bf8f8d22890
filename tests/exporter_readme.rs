//! The README's metric reference (between `<!-- metrics:start -->` and `<!-- metrics:end -->`)
//! lists exactly the families of the exporter's family table: same names, order, types and
//! labels. On a mismatch the test prints the generated table to paste.

use tibiot_exporter::kinds::families;
use tibiot_exporter::metrics::reference_markdown;

#[test]
fn readme_metric_reference_matches_the_family_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- metrics:start -->")
        .expect("README.md has no <!-- metrics:start --> marker");
    let end = readme
        .find("<!-- metrics:end -->")
        .expect("README.md has no <!-- metrics:end --> marker");
    assert!(start < end);
    let rows: Vec<(String, String, Vec<String>)> = readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            let labels = cells[2]
                .split(',')
                .map(|x| x.trim().trim_matches('`').to_owned())
                .filter(|x| !x.is_empty() && x != "—")
                .collect();
            (
                cells[0].trim_matches('`').to_owned(),
                cells[1].to_owned(),
                labels,
            )
        })
        .collect();
    let expected: Vec<(String, String, Vec<String>)> = families()
        .iter()
        .map(|f| {
            (
                f.name.to_owned(),
                f.typ.as_str().to_owned(),
                f.labels.iter().map(|l| (*l).to_owned()).collect(),
            )
        })
        .collect();
    assert!(
        rows == expected,
        "README.md's metric reference differs from the family table; paste this between the markers:\n\n{}",
        reference_markdown(families())
    );
}
