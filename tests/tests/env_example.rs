//! `.env.example` names every environment variable the code reads: each `env = "..."` of a
//! command-line option, each `std::env::var("...")` of the Rust crates and each variable
//! the Python workers read appears in it, as a `NAME=` line or, for what only tests and
//! benchmarks read, in its closing list.

use std::collections::BTreeSet;

/// Every `"NAME"` in `text` that follows one of `markers` (e.g. `env = `).
fn names_after(text: &str, markers: &[&str], out: &mut BTreeSet<String>) {
    for m in markers {
        for part in text.split(m).skip(1) {
            let name: String = part
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if (name.starts_with("MNEMO_") || name == "DATABASE_URL") && part.starts_with('"') {
                out.insert(name);
            }
        }
    }
}

#[test]
fn env_example_lists_every_variable_the_code_reads() {
    let root = mnemo_tests::root();
    let files = mnemo_tests::source_files(&root, &[".rs", ".py"]);
    let mut read = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        names_after(
            &text,
            &[
                "env = ",
                "var(",
                "var_os(",
                "environ.get(",
                "environ[",
                "getenv(",
                "get(",
                "need(",
                "num(",
                "try_from_env(",
            ],
            &mut read,
        );
    }
    assert!(read.len() > 20, "{read:?}");
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    let listed: BTreeSet<String> = example
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()))
        .filter(|w| w.starts_with("MNEMO_") || *w == "DATABASE_URL")
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = read.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        ".env.example lacks {missing:?} (the code reads them)"
    );
}
