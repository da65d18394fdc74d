//! FORMAT.md §9 lists exactly the codes the verifiers can report: every code returned by
//! mnemo-core's error types and printed by mnemo-audit is in the table, and every code in
//! the table is one of them.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// String literals after `=> "` in the bodies of `fn code`, and after `code: "` or
/// `fail("` (possibly across a line break).
fn codes_in(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_code_fn = false;
    let flat = src.replace("(\n", "(").replace("( ", "(");
    for line in flat.lines() {
        let t = line.trim();
        if t.starts_with("pub fn code(&self)") {
            in_code_fn = true;
        } else if in_code_fn && t == "}" && line.starts_with("    }") {
            in_code_fn = false;
        }
        let mut take = |marker: &str| {
            let mut rest = t;
            while let Some(i) = rest.find(marker) {
                rest = &rest[i + marker.len()..];
                let rest_trim = rest.trim_start();
                if let Some(body) = rest_trim.strip_prefix('"')
                    && let Some(end) = body.find('"')
                {
                    let c = &body[..end];
                    if !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                        out.insert(c.to_owned());
                    }
                }
            }
        };
        if in_code_fn {
            take("=>");
        }
        take("code: ");
        take("fail(");
    }
    out
}

#[test]
fn the_error_table_lists_every_code_and_no_other() {
    let mut codes = BTreeSet::new();
    for f in [
        "core/src/error.rs",
        "core/src/seal.rs",
        "core/src/custody.rs",
        "audit/src/lib.rs",
        "audit/src/main.rs",
        "audit/src/onchain.rs",
    ] {
        codes.extend(codes_in(&read(f)));
    }
    for c in [
        "bad_signature",
        "anchor_on_chain",
        "untrusted_key",
        "erased_opening",
        "structure",
        "mismatch",
    ] {
        assert!(codes.contains(c), "{c} not found in the sources: {codes:?}");
    }
    let format = read("docs/FORMAT.md");
    let section =
        &format[format.find("## 9. Error codes").unwrap()..format.find("## 10.").unwrap()];
    let table: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = codes.difference(&table).collect();
    let phantom: Vec<_> = table.difference(&codes).collect();
    assert!(
        missing.is_empty(),
        "codes the code reports but §9 lacks: {missing:?}"
    );
    assert!(
        phantom.is_empty(),
        "codes in §9 nothing reports: {phantom:?}"
    );
}
