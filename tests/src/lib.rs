//! End-to-end tests of mnemo across its crates live in `tests/tests/`; see the test files
//! for what they cover. This library holds what the checks of the tree itself share.

use std::path::{Path, PathBuf};

/// The repository's root: read when the test runs (cargo sets `CARGO_MANIFEST_DIR` for it),
/// since a build cache shared by two clones may hold this library as the other clone built
/// it.
pub fn root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf());
    dir.join("..")
}

/// Every file under `dir` whose name ends in one of `exts`, outside build output, installed
/// packages, the git directory and the fuzzing workspace.
pub fn source_files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, exts, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if !["target", "node_modules", ".git", "dist", "fuzz", ".venv"].contains(&name.as_str())
            {
                walk(&p, exts, out);
            }
        } else if exts.iter().any(|x| name.ends_with(x)) {
            out.push(p);
        }
    }
}
