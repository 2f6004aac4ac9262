//! The shape of src/request (issue 11): one concept per file, the link
//! between the halves below both of them, and the client known only to
//! the remote link (src/request/remote/). These read the sources: they
//! pin where code lives, which no behaviour test can see.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under src/request, with its path relative to it.
fn request_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        for entry in fs::read_dir(dir).expect("src/request is readable") {
            let path: PathBuf = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                let text = fs::read_to_string(&path).expect("a source file");
                out.push((rel.replace('\\', "/"), text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/request");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

/// The lines of `text` that are code, not comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
}

/// The files of src/request that `rel` imports with `use super::…` or
/// `use crate::request::…` (first path segment after either).
fn request_imports(rel: &str, text: &str) -> Vec<String> {
    // `super` of a file in a folder is the folder, except for its mod.rs.
    let here_is_nested = rel.contains('/') && !rel.ends_with("/mod.rs");
    let mut found = Vec::new();
    for line in code_lines(text).filter(|l| l.starts_with("use ")) {
        let path = &line["use ".len()..];
        let rest = if let Some(r) = path.strip_prefix("crate::request::") {
            r
        } else if let Some(r) = path.strip_prefix("super::super::") {
            r
        } else if let Some(r) = path.strip_prefix("super::") {
            if here_is_nested {
                // A sibling inside the same folder.
                let folder = rel.split('/').next().unwrap();
                found.push(format!("{folder}/{}", segment(r)));
                continue;
            }
            r
        } else {
            continue;
        };
        found.push(segment(rest).to_string());
    }
    found
}

fn segment(path: &str) -> &str {
    path.split([':', ';', '{']).next().unwrap()
}

#[test]
fn only_the_remote_link_imports_the_client() {
    let mut offenders = Vec::new();
    for (rel, text) in request_files() {
        if rel.starts_with("remote/") {
            continue;
        }
        // The client by its module, or by the crate root's re-exports.
        let knows = code_lines(&text).any(|l| {
            l.contains("crate::client")
                || [
                    "Client",
                    "Delivery",
                    "CallEvent",
                    "CallId",
                    "Inbound",
                    "Publication",
                ]
                .iter()
                .any(|t| l.contains(&format!("crate::{t}")))
        });
        if knows {
            offenders.push(rel);
        }
    }
    assert!(
        offenders.is_empty(),
        "files of src/request outside the remote link that name the client: {offenders:?}"
    );
}

#[test]
fn the_link_layer_knows_neither_half() {
    let files = request_files();
    let link_layer = [
        "ends.rs",
        "local.rs",
        "link.rs",
        "remote/call.rs",
        "remote/mod.rs",
    ];
    let halves = ["caller", "callee", "builder", "dispatch", "stage"];
    for want in link_layer {
        let (rel, text) = files
            .iter()
            .find(|(rel, _)| rel == want)
            .unwrap_or_else(|| panic!("src/request/{want} is missing"));
        let imports = request_imports(rel, text);
        let wrong: Vec<&String> = imports
            .iter()
            .filter(|i| halves.contains(&i.as_str()))
            .collect();
        assert!(
            wrong.is_empty(),
            "{rel} imports {wrong:?}: the link sees the halves only as the traits of ends.rs"
        );
    }
}

#[test]
fn no_request_file_is_over_600_lines() {
    let long: Vec<(String, usize)> = request_files()
        .into_iter()
        .map(|(rel, text)| (rel, text.lines().count()))
        .filter(|(_, n)| *n > 600)
        .collect();
    assert!(long.is_empty(), "one concept per file: {long:?}");
}
