//! The exporter's modules depend one way (docs/architecture.md, "One scrape, end to end"):
//! this test reads `src/` and fails when a module imports one above it, so no import cycle
//! between modules can get in. Comments and `#[cfg(test)]` code are not imports of the build.

use std::collections::BTreeSet;
use std::path::Path;

/// The modules from the bottom up; a module may use only those before it.
const LAYERS: &[&str] = &[
    "sys", "version", "logging", "config", "collect", "metrics", "kinds", "http", "serve", "demo",
];

fn rank(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|m| *m == module)
        .unwrap_or_else(|| panic!("module `{module}` is not in LAYERS: place it there"))
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::X` module names the non-comment, non-test code of `text` refers to.
fn uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let before = line[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `tibiot_exporter::` is not `crate::`
            }
            let name: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        seen.insert(module.clone());
        for used in uses(&std::fs::read_to_string(f).unwrap()) {
            if used != module && rank(&used) > rank(&module) {
                violations.push(format!("{} uses crate::{used}", rel.display()));
            }
        }
    }
    assert!(seen.len() >= 8, "read too few modules: {seen:?}");
    for m in LAYERS {
        assert!(
            seen.contains(*m),
            "LAYERS names `{m}`, which is not a module of src/"
        );
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_reader_sees_imports_and_skips_comments_and_tests() {
    let text = "use crate::config::Config;\n// crate::http in a comment\nlet x = crate::sys::lock(&m);\nuse tibiot_exporter::serve;\n#[cfg(test)]\nmod tests { use crate::demo; }\n";
    let got: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(got, ["config", "sys"]);
}
