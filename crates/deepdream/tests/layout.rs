//! The house plan holds: no file of the workspace's crates imports a file that imports it
//! back (directly or around a loop), and in the library no folder imports a folder of a
//! higher layer. Imports are read from the source text: every `crate::…` and `super::…`
//! path outside comments and unit-test modules, resolved to the file that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, lowest layer first: a file may use its own layer and
/// those below it, never one above.
const LIBRARY_LAYERS: &[&str] = &[
    "error", "timeline", "home", "backend", "media", "networks", "engine", "control", "modes",
    "jobs",
];

/// One crate's files, each as its module path (`["networks", "onnx", "ops"]`), and the
/// files each one imports.
struct Imports {
    /// Module path → the file's source, comments and unit tests removed.
    files: BTreeMap<Vec<String>, String>,
    /// Module path → module paths of the files it imports (itself left out).
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn crate_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `[a, b]`, `src/a/mod.rs` → `[a]`, `src/lib.rs` or `src/main.rs` → `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without `//` comments and without the unit-test module at its end.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that follows `crate::` or `super::` in `code`, groups (`{a, b::c}`) expanded,
/// each relative to the crate root.
fn paths_in(code: &str, module: &[String], is_door: bool) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    // A module's own children, named by their paths relative to it (`vgg16::SPEC`).
    let children: Vec<String> = code
        .lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("pub ").unwrap_or(line.trim());
            let child = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(format!("{child}::"))
        })
        .collect();
    let inline = inline_modules(code);
    let keywords = ["crate::".to_string(), "super::".to_string()]
        .into_iter()
        .chain(children);
    for keyword in keywords {
        let root = if keyword == "crate::" {
            Vec::new()
        } else if keyword == "super::" {
            // In `a/b.rs` super is `a`; in `a/mod.rs` (module `a`) it is the crate root.
            let mut parent = module.to_vec();
            if !is_door || !parent.is_empty() {
                parent.pop();
            }
            parent
        } else {
            module.to_vec()
        };
        let mut from = 0;
        while let Some(found) = code[from..].find(&keyword) {
            let at = from + found;
            from = at + keyword.len();
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
                continue;
            }
            // Inside an inline `mod name { … }`, `super` is the file's own module.
            let mut prefix = if keyword == "super::" && inline.iter().any(|r| r.contains(&at)) {
                module.to_vec()
            } else {
                root.clone()
            };
            if !matches!(keyword.as_str(), "crate::" | "super::") {
                prefix.push(keyword.trim_end_matches("::").to_string());
            }
            let (_, list) = parse_tree(&code[from..], prefix);
            paths.extend(list);
        }
    }
    paths
}

/// The byte ranges of the inline modules (`mod name { … }`) in `code`.
fn inline_modules(code: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("mod ") {
        let at = from + found;
        from = at + 4;
        let rest = &code[from..];
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if name_end == 0 || !rest[name_end..].trim_start().starts_with('{') {
            continue;
        }
        let open = from + name_end + rest[name_end..].find('{').unwrap();
        let mut depth = 0;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        ranges.push(open..open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    ranges
}

/// Parses `a::b::{c, d::e}` at the start of `text` under `prefix`; returns the bytes read
/// and the full paths.
fn parse_tree(text: &str, prefix: Vec<String>) -> (usize, Vec<Vec<String>>) {
    let mut path = prefix;
    let mut at = 0;
    let bytes = text.as_bytes();
    loop {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'{' {
            at += 1;
            let mut all = Vec::new();
            loop {
                while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    return (at + 1, all);
                }
                let (read, list) = parse_tree(&text[at..], path.clone());
                if read == 0 {
                    // Something this reader does not follow (`self`, `*`, `as` names): skip it.
                    at += 1;
                    continue;
                }
                at += read;
                all.extend(list);
                // Skip `as name` and the like up to the next separator.
                while at < bytes.len() && !matches!(bytes[at], b',' | b'}') {
                    at += 1;
                }
            }
        }
        let start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            at += 1;
        }
        if at == start {
            return (start, if path.is_empty() { vec![] } else { vec![path] });
        }
        path.push(text[start..at].to_string());
        if text[at..].starts_with("::") {
            at += 2;
        } else {
            return (at, vec![path]);
        }
    }
}

/// The file that defines `path`: the longest prefix of it that is a module.
fn resolve(path: &[String], files: &BTreeMap<Vec<String>, String>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| files.contains_key(prefix))
        .unwrap_or_default()
}

fn imports(crate_name: &str) -> Imports {
    let src = crate_dir(crate_name);
    let mut list = Vec::new();
    rust_files(&src, &mut list);
    let mut files = BTreeMap::new();
    let mut doors = BTreeSet::new();
    for file in &list {
        let module = module_path(&src, file);
        if file.file_name().is_some_and(|n| n == "mod.rs") {
            doors.insert(module.clone());
        }
        let text = std::fs::read_to_string(file).unwrap();
        files.insert(module, code_of(&text));
    }
    let mut edges = BTreeMap::new();
    for (module, code) in &files {
        let is_door = doors.contains(module) || module.is_empty();
        let targets: BTreeSet<Vec<String>> = paths_in(code, module, is_door)
            .iter()
            .map(|path| resolve(path, &files))
            .filter(|target| target != module)
            .collect();
        edges.insert(module.clone(), targets);
    }
    Imports { files, edges }
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "(crate root)".into()
    } else {
        module.join("/")
    }
}

/// A loop of imports, if there is one, as the files around it.
fn find_cycle(imports: &Imports) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        imports: &Imports,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in &imports.edges[node] {
            match marks[next] {
                Mark::Open => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, imports, marks, stack) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks: BTreeMap<Vec<String>, Mark> = imports
        .files
        .keys()
        .map(|k| (k.clone(), Mark::New))
        .collect();
    for node in imports.files.keys() {
        if marks[node] == Mark::New
            && let Some(cycle) = visit(node, imports, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

fn assert_acyclic(crate_name: &str) -> Imports {
    let imports = imports(crate_name);
    assert!(
        imports.files.len() > 1,
        "{crate_name}: no source files found"
    );
    if let Some(cycle) = find_cycle(&imports) {
        let around: Vec<String> = cycle.iter().map(|m| name(m)).collect();
        panic!("{crate_name}: import loop: {}", around.join(" -> "));
    }
    imports
}

#[test]
fn no_file_of_the_library_imports_itself_around_a_loop() {
    assert_acyclic("deepdream");
}

#[test]
fn no_file_of_the_cli_or_the_server_imports_itself_around_a_loop() {
    assert_acyclic("deepdream-cli");
    assert_acyclic("deepdream-server");
}

#[test]
fn library_layers_only_import_themselves_and_lower_layers() {
    let imports = imports("deepdream");
    let layer = |module: &[String]| -> usize {
        match module.first() {
            // The crate root is the library's front door, above every layer.
            None => LIBRARY_LAYERS.len(),
            Some(top) => LIBRARY_LAYERS
                .iter()
                .position(|l| l == top)
                .unwrap_or_else(|| {
                    panic!("src/{top} is in no layer: add it to LIBRARY_LAYERS where it belongs")
                }),
        }
    };
    let mut wrong = Vec::new();
    for (from, targets) in &imports.edges {
        for to in targets {
            if to.is_empty() && !from.is_empty() {
                wrong.push(format!(
                    "{} uses the crate root's re-exports; import the defining file",
                    name(from)
                ));
            } else if layer(to) > layer(from) {
                wrong.push(format!(
                    "{} (lower) imports {} (higher)",
                    name(from),
                    name(to)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_finds_a_loop_and_a_layer_broken() {
    // A loop a -> b -> a through a group import and a `super` path.
    let files: BTreeMap<Vec<String>, String> = [
        (vec![], "pub mod a;".to_string()),
        (
            vec!["a".into()],
            "use crate::{error::Error, a::b::thing};".to_string(),
        ),
        (vec!["a".into(), "b".into()], "use super::Item;".to_string()),
        (vec!["error".into()], String::new()),
    ]
    .into_iter()
    .collect();
    let a = vec!["a".to_string()];
    let b = vec!["a".to_string(), "b".to_string()];
    let paths = paths_in(&files[&a], &a, true);
    assert_eq!(
        paths,
        vec![
            vec!["error".to_string(), "Error".into()],
            vec!["a".into(), "b".into(), "thing".into()],
        ]
    );
    assert_eq!(resolve(&paths[1], &files), b);
    assert_eq!(
        paths_in(&files[&b], &b, false),
        vec![vec!["a".to_string(), "Item".into()]]
    );
    let edges = files
        .iter()
        .map(|(module, code)| {
            let door = module.len() < 2;
            let targets = paths_in(code, module, door)
                .iter()
                .map(|p| resolve(p, &files))
                .filter(|t| t != module)
                .collect();
            (module.clone(), targets)
        })
        .collect();
    let imports = Imports { files, edges };
    let cycle = find_cycle(&imports).expect("the loop is found");
    assert!(cycle.contains(&a) && cycle.contains(&b), "{cycle:?}");
    // A door's own children, by their relative paths.
    let door = "pub mod vgg16;\nmod onnx;\npub const ALL: &[&Spec] = &[&vgg16::SPEC];\nuse onnx::{Net, x::Y};";
    assert_eq!(
        paths_in(door, &a, true),
        vec![
            vec!["a".to_string(), "vgg16".into(), "SPEC".into()],
            vec!["a".to_string(), "onnx".into(), "Net".into()],
            vec!["a".to_string(), "onnx".into(), "x".into(), "Y".into()],
        ]
    );
    // In an inline module, `super` is the file itself.
    let nested = "use super::x;\nmod defaults {\n    use super::decimal;\n}";
    assert_eq!(
        paths_in(nested, &b, false),
        vec![
            vec!["a".to_string(), "x".into()],
            vec!["a".to_string(), "b".into(), "decimal".into()],
        ]
    );
    // Comments and unit tests are not imports.
    let code = code_of("use x; // crate::modes\n#[cfg(test)]\nmod tests { use crate::jobs; }");
    assert!(paths_in(&code, &a, false).is_empty());
}
