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

/// The normal (non-dev) dependencies of `package`, by name, from `cargo tree`.
fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
        ])
        .arg(package)
        .current_dir(mnemo_tests::root())
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package} in {}: {}",
        mnemo_tests::root().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// One job per crate: what a device runs links none of the server (its database, HTTP
/// stack, views), the server links none of the edge tools, processing links none of the
/// worker's client library, and the NATS side (gateway, accounts) none of the REST side.
#[test]
fn crates_link_only_what_their_job_needs() {
    let edge = dependencies("mnemo-edge");
    for server_side in [
        "sqlx",
        "axum",
        "hyper",
        "mnemo-api",
        "mnemo-projections",
        "mnemo-ledger",
    ] {
        assert!(
            !edge.iter().any(|d| d == server_side),
            "mnemo-edge links {server_side}"
        );
    }
    assert!(!dependencies("mnemo-api").iter().any(|d| d == "mnemo-edge"));
    // The device gateway and the account administration serve NATS: no database, no
    // HTTP server, no views, no processing, and neither is the REST API.
    for (package, not) in [
        (
            "mnemo-gateway",
            &[
                "sqlx",
                "axum",
                "hyper",
                "mnemo-projections",
                "mnemo-processing",
                "mnemo-api",
            ][..],
        ),
        (
            "mnemo-accounts",
            &[
                "sqlx",
                "axum",
                "hyper",
                "mnemo-projections",
                "mnemo-processing",
                "mnemo-api",
                "mnemo-gateway",
            ][..],
        ),
    ] {
        let links = dependencies(package);
        for d in not {
            assert!(!links.iter().any(|l| l == d), "{package} links {d}");
        }
    }
    assert!(
        !dependencies("mnemo-processing")
            .iter()
            .any(|d| d == "mnemo-worker")
    );
}
