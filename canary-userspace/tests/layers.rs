//! The library's layers, checked from its source: a module uses only the
//! layers below its own (lib.rs and docs/ARCHITECTURE.md draw them), and
//! the files of one folder (a module's children, a binary's modules) use
//! each other without a cycle.
//!
//! It reads `use` paths and qualified paths (`crate::a::b`, `super::x`,
//! brace groups included) with comments and string literals removed: enough
//! for this code base, whose paths are all written that way.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Lowest first; a module may use the layers before its own only.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["model", "host"],
    &["controller", "kernel"],
    &["config", "api"],
    &["daemon", "cli"],
    &["fleet"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text with comments, string and char literals blanked, so that a
/// path in a doc comment or a message is not read as a dependency.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"r#\"") {
            let end = text[i + 3..].find("\"#").map_or(b.len(), |e| i + 3 + e + 2);
            i = end;
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x', '\n'); a lifetime ('a) has no closing quote.
            let close = text[i + 1..].find('\'').map_or(b.len(), |e| i + 1 + e + 1);
            i = close;
            out.push_str("' '");
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment after each `prefix::` in `code`, brace groups' top
/// level included: `crate::{a::x, b}` gives a and b.
fn first_segments(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let needle = format!("{prefix}::");
    let mut at = 0;
    while let Some(pos) = code[at..].find(&needle) {
        let start = at + pos;
        at = start + needle.len();
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[at..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 0 => {
                        item_start = false;
                        let id = ident_at(&group[i..]);
                        if !id.is_empty() && id != "self" {
                            found.insert(id.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let id = ident_at(rest);
            if !id.is_empty() {
                found.insert(id.to_owned());
            }
        }
    }
    found
}

/// A file's module path under `src` ("kernel/attachment.rs" gives
/// ["kernel", "attachment"]; "kernel/mod.rs" gives ["kernel"]).
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "main" || p == "lib")
    {
        parts.pop();
    }
    parts
}

struct Source {
    module: Vec<String>,
    file: PathBuf,
    code: String,
}

fn sources() -> Vec<Source> {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| Source {
            module: module_path(&file),
            code: code_only(&fs::read_to_string(&file).unwrap()),
            file,
        })
        .collect()
}

fn is_library(s: &Source) -> bool {
    s.module.first().is_some_and(|m| m != "bin")
}

#[test]
fn every_library_module_is_in_a_layer() {
    for s in sources().iter().filter(|s| is_library(s)) {
        let top = &s.module[0];
        assert!(
            layer_of(top).is_some(),
            "{}: module `{top}` is in no layer; add it to LAYERS here, lib.rs and docs/ARCHITECTURE.md",
            s.file.display()
        );
    }
}

#[test]
fn modules_use_only_the_layers_below_their_own() {
    let mut wrong = vec![];
    for s in sources().iter().filter(|s| is_library(s)) {
        let top = s.module[0].as_str();
        let Some(own) = layer_of(top) else { continue };
        for used in first_segments(&s.code, "crate") {
            if used == top {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                Some(_) => wrong.push(format!("{}: `{top}` uses `{used}`", s.file.display())),
                // A crate-root re-export hides the layer it comes from.
                None => wrong.push(format!(
                    "{}: `crate::{used}`: name the module it lives in",
                    s.file.display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

/// Edges between the children of one folder: `crate::parent::x` and
/// `super::x` from a child; `crate::x` between a binary's modules.
fn sibling_edges() -> BTreeMap<String, BTreeSet<(String, String)>> {
    let all = sources();
    let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &all {
        if s.module.len() >= 2 {
            let (name, parent) = s.module.split_last().unwrap();
            children
                .entry(parent.join("::"))
                .or_default()
                .insert(name.clone());
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for s in &all {
        if s.module.len() < 2 {
            continue;
        }
        let (name, parent) = s.module.split_last().unwrap();
        let parent_path = parent.join("::");
        let siblings = &children[&parent_path];
        let mut used = first_segments(&s.code, "super");
        if parent[0] == "bin" {
            used.extend(first_segments(&s.code, "crate"));
        } else {
            let qualified = format!("crate::{parent_path}");
            used.extend(first_segments(&s.code, &qualified));
        }
        for u in used {
            if siblings.contains(&u) && &u != name {
                edges
                    .entry(parent_path.clone())
                    .or_default()
                    .insert((name.clone(), u));
            }
        }
    }
    edges
}

fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeSet<(String, String)>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for (_, to) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(c) = visit(to, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for (from, _) in edges {
        if let Some(c) = visit(from, edges, &mut vec![], &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_folder_has_a_cycle_between_its_files() {
    let mut cycles = vec![];
    for (folder, edges) in sibling_edges() {
        if let Some(c) = find_cycle(&edges) {
            cycles.push(format!("{folder}: {}", c.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_sees_paths_the_way_they_are_written() {
    let code = code_only(
        "use crate::{a::x, b, c::{d, e}};\n// crate::commented\nlet s = \"crate::quoted\";\nuse super::f;\nx::crate::g;",
    );
    let got: Vec<_> = first_segments(&code, "crate").into_iter().collect();
    assert_eq!(got, ["a", "b", "c"]);
    assert_eq!(
        first_segments(&code, "super")
            .into_iter()
            .collect::<Vec<_>>(),
        ["f"]
    );
    let cycle: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a")]
        .iter()
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect();
    assert!(find_cycle(&cycle).is_some());
    let chain: BTreeSet<(String, String)> = [("a", "b"), ("b", "c")]
        .iter()
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect();
    assert_eq!(find_cycle(&chain), None);
}
