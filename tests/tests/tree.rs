//! The tree stays readable: no source file over 900 lines (Rust, TypeScript, JavaScript,
//! Python, Solidity, shell). A file that grows past it is split by concept, as
//! `core/src/event/body_codec.rs` and the REST tests in `api/tests/rest/` were.

const MAX_LINES: usize = 900;

#[test]
fn no_source_file_is_over_900_lines() {
    let root = mnemo_tests::root();
    let files =
        mnemo_tests::source_files(&root, &[".rs", ".ts", ".mjs", ".js", ".py", ".sol", ".sh"]);
    assert!(
        files.len() > 100,
        "the walk found the tree: {} files",
        files.len()
    );
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > MAX_LINES).then(|| {
                format!(
                    "{} ({n} lines)",
                    f.strip_prefix(&root).unwrap_or(f).display()
                )
            })
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
