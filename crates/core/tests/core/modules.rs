//! The modules of `k3scale-core` depend on each other one way: no import
//! cycle (read from the sources, so a new `use` that closes one fails here).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `decide/scale_up.rs` → `decide::scale_up`; `lib.rs` → the crate root (`""`).
fn module_of(rel: &str) -> String {
    let rel = rel.trim_end_matches(".rs");
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    if rel == "lib" {
        String::new()
    } else {
        rel.replace('/', "::")
    }
}

/// The paths after each `prefix` (`crate::` or `super::`), one per use,
/// with brace groups (`crate::{a, b::{c, d}}`) spread out.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        expand("", rest, &mut out);
    }
    out
}

/// Read one path (or brace group) at the start of `text`, prefixed by `base`.
fn expand(base: &str, text: &str, out: &mut Vec<String>) {
    let text = text.trim_start();
    if let Some(inner) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(base, &inner[start..i], out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let ident: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        return;
    }
    let path = if base.is_empty() {
        ident.clone()
    } else {
        format!("{base}::{ident}")
    };
    match text[ident.len()..].strip_prefix("::") {
        Some(more) => {
            out.push(path.clone());
            expand(&path, more, out);
        }
        None => out.push(path),
    }
}

/// Module → the modules it uses, from `(path relative to src, source)`.
/// Comments and `#[cfg(test)]` blocks (always last in a file here) are left out.
fn graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| module_of(p)).collect();
    // The longest module a path names (`decide::context::Context` → `decide::context`).
    let resolve = |path: &str| {
        let mut best = None;
        for m in &modules {
            if !m.is_empty() && (path == m || path.starts_with(&format!("{m}::"))) {
                best = Some(m.clone());
            }
        }
        best
    };
    let mut g = Graph::new();
    for (rel, text) in files {
        let me = module_of(rel);
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .map(|l| l.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let parent = me
            .rsplit_once("::")
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        let mut used: Vec<String> = paths_after(&code, "crate::");
        for p in paths_after(&code, "super::") {
            used.push(if parent.is_empty() {
                p
            } else {
                format!("{parent}::{p}")
            });
        }
        // Children named by a relative path (`scale_up::plan` in `decide`).
        for m in &modules {
            if let Some(child) = m.strip_prefix(&format!("{me}::")).filter(|c| !c.contains("::"))
                && !paths_after(&code, &format!("{child}::")).is_empty()
            {
                used.push(m.clone());
            }
        }
        let deps = g.entry(me.clone()).or_default();
        for p in used {
            // `super::Item` resolves to the parent module itself.
            match resolve(&p) {
                Some(m) if m != me => {
                    deps.insert(m);
                }
                _ => {}
            }
        }
    }
    g
}

/// One cycle of `g`, as the modules along it, if there is any.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(n: &str, g: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

fn sources(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            sources(&entry.path(), &rel, out);
        } else if name.ends_with(".rs") {
            out.push((rel, std::fs::read_to_string(entry.path()).unwrap()));
        }
    }
}

#[test]
fn core_modules_have_no_import_cycle() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), "", &mut files);
    let g = graph(&files);
    // The reading works: the planner's modules are seen with their uses.
    assert!(g["decide"].contains("decide::scale_up"), "{g:?}");
    assert!(g["decide::scale_down"].contains("decide::context"), "{g:?}");
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "import cycle between modules of crates/core: {}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_reader_finds_cycles_through_groups_and_super() {
    let f = |p: &str, t: &str| (p.to_string(), t.to_string());
    let acyclic = [
        f("lib.rs", "mod a; mod b;"),
        f("a/mod.rs", "mod c; use c::X; use crate::b::Y;"),
        f("a/c.rs", "use crate::{b::{Y, Z}};\n// use crate::a::Comment;"),
        f(
            "b.rs",
            "pub struct Y;\n#[cfg(test)]\nmod tests { use crate::a::X; }",
        ),
    ];
    let g = graph(&acyclic);
    assert_eq!(g["a::c"], BTreeSet::from(["b".to_string()]));
    assert_eq!(find_cycle(&g), None);

    let through_group = [f("a.rs", "use crate::{x, b::Y};"), f("b.rs", "use crate::a::X;")];
    assert!(find_cycle(&graph(&through_group)).is_some());

    // A child using its parent's item while the parent uses the child.
    let through_super = [
        f("a/mod.rs", "mod c; use c::go; pub struct Ctx;"),
        f("a/c.rs", "use super::Ctx;"),
    ];
    let g = graph(&through_super);
    assert!(g["a::c"].contains("a") && g["a"].contains("a::c"), "{g:?}");
    assert!(find_cycle(&g).is_some());
    // The same child using a sibling instead: no cycle.
    let sibling = [
        f("a/mod.rs", "mod c; mod ctx; use c::go;"),
        f("a/c.rs", "use super::ctx::Ctx;"),
        f("a/ctx.rs", "pub struct Ctx;"),
    ];
    assert_eq!(find_cycle(&graph(&sibling)), None);
}
