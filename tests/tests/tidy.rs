//! Repository tidiness checks, run as ordinary tests (as rust-analyzer's
//! tidy does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(
        files.len() > 10,
        "found only {} .rs files under {}",
        files.len(),
        root.display()
    );
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:?}"
    );
}

#[test]
fn unsafe_code_is_forbidden_in_every_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(workspace.contains("unsafe_code = \"forbid\""));
    let mut manifests = vec![root.join("tests/Cargo.toml")];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        manifests.push(entry.unwrap().path().join("Cargo.toml"));
    }
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{} does not inherit the workspace lints",
            manifest.display()
        );
    }
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Crates that make HTTP requests. The REST client is the CLI's
/// (ferry-setup); the hub links one too, for webhook deliveries
/// (`notify`), and nothing else does: not the endpoint side.
const HTTP_CLIENTS: &[&str] = &[
    "reqwest",
    "ureq",
    "hyper-rustls",
    "isahc",
    "curl",
    "attohttpc",
    "surf",
];

/// What `cargo tree -p PACKAGE` lists for this machine: the package's
/// normal, build and dev dependencies, and the normal and build
/// dependencies of those, transitively. Offline and locked, so the check
/// never fetches or rewrites anything.
fn dependency_names(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args(["tree", "--offline", "--locked", "--prefix", "none"])
        .args([
            "--edges",
            "normal,build,dev",
            "--format",
            "{p}",
            "-p",
            package,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_string)
        .collect()
}

/// The layers of the workspace. The hub shares only ferry-proto and
/// ferry-tls with the endpoints; the endpoint side
/// never links the hub; the wire types link no other ferry crate; and
/// only the CLI (the hub client) and the hub (its webhooks) link an HTTP
/// client.
#[test]
fn crate_dependencies_keep_their_layers() {
    // (package, crates it must not link, whether it may link an HTTP client)
    let rules: &[(&str, &[&str], bool)] = &[
        (
            "ferry-hub",
            &[
                "ferry-daemon",
                "ferry-mover",
                "ferry-paths",
                "ferry-endpoint",
                "ferry-setup",
            ],
            true,
        ),
        ("ferry-daemon", &["ferry-hub", "ferry-setup"], false),
        ("ferry-mover", &["ferry-hub", "ferry-setup"], false),
        ("ferry-endpoint", &["ferry-setup"], false),
        ("ferry-tls", &["ferry-setup"], false),
    ];
    let mut broken = Vec::new();
    for (package, forbidden, http) in rules {
        let deps = dependency_names(package);
        let clients: &[&str] = if *http { &[] } else { HTTP_CLIENTS };
        for name in forbidden.iter().chain(clients) {
            if deps.contains(*name) {
                broken.push(format!("{package} depends on {name}"));
            }
        }
    }
    let proto = dependency_names("ferry-proto");
    for name in &proto {
        if name.starts_with("ferry-") || ["tokio", "mio", "nix"].contains(&name.as_str()) {
            broken.push(format!("ferry-proto depends on {name}"));
        }
    }
    assert!(
        broken.is_empty(),
        "the crate graph breaks its layers (see ARCHITECTURE.md; `cargo tree -i NAME -p PACKAGE` shows the path):\n  {}",
        broken.join("\n  ")
    );
}

/// A Rust file's lines that are compiled outside tests, with their line
/// numbers, and the files of modules declared only for tests. Skipped:
/// comment lines, and every top-level item marked `#[cfg(test)]` (from
/// the attribute to the item's closing line at column 0, which rustfmt's
/// layout guarantees; `cargo fmt --check` runs in CI). Attributes inside
/// items are not understood, so code under them counts as compiled.
fn compiled_lines(path: &Path, text: &str) -> (Vec<(usize, String)>, Vec<PathBuf>) {
    let mut compiled = Vec::new();
    let mut test_only = Vec::new();
    let module_dir = match path.file_name().unwrap().to_str().unwrap() {
        "lib.rs" | "main.rs" | "mod.rs" => path.parent().unwrap().to_path_buf(),
        _ => path.with_extension(""),
    };
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        if line != "#[cfg(test)]" {
            compiled.push((index + 1, line.to_string()));
            continue;
        }
        // The item after the attribute (and any further attributes).
        for (_, item) in lines.by_ref() {
            if item.starts_with("#[") || item.trim_start().starts_with("//") {
                continue;
            }
            if let Some(name) = item
                .strip_prefix("mod ")
                .or_else(|| item.strip_prefix("pub(crate) mod "))
                .and_then(|rest| rest.strip_suffix(';'))
            {
                test_only.push(module_dir.join(format!("{name}.rs")));
                test_only.push(module_dir.join(name).join("mod.rs"));
            }
            if !item.ends_with(';') {
                for (_, rest) in lines.by_ref() {
                    if rest.starts_with('}') {
                        break;
                    }
                }
            }
            break;
        }
    }
    (compiled, test_only)
}

/// Where `text` names one of `modules` (each `crate::module`, as in
/// `std::fs`): written out (`std::fs::read`, `use std::fs::File`), or in a
/// group (`use std::{fs, io}`). An alias (`use std as s`) is not followed.
fn names_module(text: &str, modules: &[&str]) -> Option<String> {
    for module in modules {
        if text.contains(module) {
            return Some((*module).to_string());
        }
        let (krate, item) = module.split_once("::").unwrap();
        let group = format!("{krate}::{{");
        let mut rest = text;
        while let Some(start) = rest.find(&group) {
            let inner = &rest[start + group.len()..];
            let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
            if inner
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == item)
            {
                return Some((*module).to_string());
            }
            rest = &rest[start + group.len()..];
        }
    }
    None
}

/// A crate's Rust files under `src/` with their compiled lines, test-only
/// module files left out.
fn compiled_sources(krate: &str) -> Vec<(PathBuf, Vec<(usize, String)>)> {
    let src = workspace_root().join("crates").join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut test_only = BTreeSet::new();
    let mut sources = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let (lines, tests) = compiled_lines(&file, &text);
        test_only.extend(tests);
        sources.push((file, lines));
    }
    sources.retain(|(file, _)| !test_only.contains(file));
    sources
}

/// The hub's HTTP client makes webhook deliveries and upstream OpenID
/// calls and nothing else: only `notify` (which checks each URL, follows
/// no redirect, bounds the time and never reads an answer's body) and
/// `oidc` (discovery, keys, the token endpoint) name reqwest.
#[test]
fn only_the_hubs_notify_and_oidc_modules_make_http_requests() {
    let mut found = Vec::new();
    for (file, lines) in compiled_sources("ferry-hub") {
        let name = file
            .strip_prefix(workspace_root())
            .unwrap()
            .display()
            .to_string();
        if name == "crates/ferry-hub/src/notify.rs" || name == "crates/ferry-hub/src/oidc.rs" {
            continue;
        }
        for (number, line) in lines {
            if line.contains("reqwest") {
                found.push(format!("{name}:{number}: {}", line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "outbound HTTP from the hub goes through notify.rs or oidc.rs (ARCHITECTURE.md):\n  {}",
        found.join("\n  ")
    );
}

/// ferry-proto is bytes and `now` in, frames and deadlines out: outside
/// its tests no line reads the clock, the filesystem, the network, the
/// environment or another process. The rule is textual (see
/// [`compiled_lines`] and [`names_module`]); its Cargo.toml is held to no
/// tokio, mio or nix by `crate_dependencies_keep_their_layers`.
#[test]
fn ferry_proto_reads_no_clock_and_does_no_io() {
    const CLOCK: &[&str] = &["SystemTime::now", "Instant::now"];
    const IO: &[&str] = &[
        "std::fs",
        "tokio::fs",
        "std::net",
        "tokio::net",
        "std::env",
        "std::process",
    ];
    let mut found = Vec::new();
    for (file, lines) in compiled_sources("ferry-proto") {
        for (number, line) in lines {
            let hit = CLOCK
                .iter()
                .find(|call| line.contains(*call))
                .map(|call| call.to_string())
                .or_else(|| names_module(&line, IO));
            if let Some(what) = hit {
                let file = file.strip_prefix(workspace_root()).unwrap();
                found.push(format!(
                    "{}:{number}: {what}: {}",
                    file.display(),
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "ferry-proto must take time and bytes as arguments (ARCHITECTURE.md); outside tests it uses:\n  {}",
        found.join("\n  ")
    );
}

/// The daemon and the mover reach user paths only through ferry-paths'
/// `RootedFs`. What else they open directly is in their own config dir or
/// already-open handles, and each file that names `std::fs` or `tokio::fs`
/// outside its tests says why here, so a new use must be justified. A file
/// listed here that no longer uses them must leave the list.
const DIRECT_FS: &[(&str, &str)] = &[
    (
        "crates/ferry-daemon/src/file_serve.rs",
        "names the type of the file RootedFs opened (positioned reads of it, nothing opened)",
    ),
    (
        "crates/ferry-daemon/src/hooks.rs",
        "reads endpoint.toml's hooks, finds their programs, and marks runs in the state dir",
    ),
    (
        "crates/ferry-daemon/src/local_api.rs",
        "the local socket in the config dir: stale-socket removal and mode 0600",
    ),
    (
        "crates/ferry-daemon/src/lock.rs",
        "the config dir's lock file (flock)",
    ),
    (
        "crates/ferry-daemon/src/logging.rs",
        "the detached daemon's log file in the config dir",
    ),
    (
        "crates/ferry-daemon/src/policy.rs",
        "reads the config dir's config-paths",
    ),
    (
        "crates/ferry-daemon/src/serve.rs",
        "removes the local socket at stop",
    ),
    (
        "crates/ferry-daemon/src/transfers.rs",
        "reads endpoint.toml's umask and /proc/self/status",
    ),
    (
        "crates/ferry-mover/src/dest.rs",
        "`File` and `Permissions` of handles RootedFs opened",
    ),
    (
        "crates/ferry-mover/src/digest.rs",
        "hashes a `File` handle RootedFs opened",
    ),
    (
        "crates/ferry-mover/src/journal.rs",
        "per-task journals in the state dir",
    ),
    (
        "crates/ferry-mover/src/source.rs",
        "reads `File` handles RootedFs opened",
    ),
];

#[test]
fn daemon_and_mover_use_the_filesystem_directly_only_where_listed() {
    let listed: BTreeSet<&str> = DIRECT_FS.iter().map(|(file, _)| *file).collect();
    let mut using = BTreeSet::new();
    let mut unlisted = Vec::new();
    for krate in ["ferry-daemon", "ferry-mover"] {
        for (file, lines) in compiled_sources(krate) {
            let file = file
                .strip_prefix(workspace_root())
                .unwrap()
                .display()
                .to_string();
            for (number, line) in lines {
                if let Some(module) = names_module(&line, &["std::fs", "tokio::fs"]) {
                    if !listed.contains(file.as_str()) {
                        unlisted.push(format!("{file}:{number}: {module}: {}", line.trim()));
                    }
                    using.insert(file.clone());
                }
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "user paths go through ferry-paths' RootedFs; a direct use of the filesystem needs a line in tests/tests/tidy.rs's DIRECT_FS saying why:\n  {}",
        unlisted.join("\n  ")
    );
    let stale: Vec<_> = listed.iter().filter(|f| !using.contains(**f)).collect();
    assert!(
        stale.is_empty(),
        "DIRECT_FS lists files that no longer use std::fs or tokio::fs; remove them: {stale:?}"
    );
}

/// The top-level modules of `crate_dir`'s library or binary: `src/x.rs`
/// and `src/x/` (but not `lib.rs`, `main.rs`).
fn top_level_modules(crate_dir: &Path) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(crate_dir.join("src")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            modules.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs")
            && stem != "lib"
            && stem != "main"
        {
            modules.insert(stem.to_string());
        }
    }
    modules
}

/// Whether `text` names `module` in backticks: `module`, `module::Item`,
/// `module.rs`, or `module` + `other` inside one span.
fn names_in_backticks(text: &str, module: &str) -> bool {
    text.split('`').skip(1).step_by(2).any(|span| {
        span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == module)
    })
}

/// ARCHITECTURE.md's code map has a section for every crate, and each
/// section names every module its crate has: a module added, split or
/// renamed without a word there fails here.
#[test]
fn the_code_map_names_every_crate_and_module_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let heading = format!("### `crates/{name}`");
        let Some(start) = map.find(&heading) else {
            missing.push(format!("no section `{heading}`"));
            continue;
        };
        let rest = &map[start + heading.len()..];
        // Up to the next heading of any level.
        let end = [rest.find("\n## "), rest.find("\n### ")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        let section = &rest[..end];
        for module in top_level_modules(&dir) {
            if !names_in_backticks(section, &module) {
                missing.push(format!(
                    "crates/{name}: module `{module}` is not named in its section"
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map is out of date:\n  {}",
        missing.join("\n  ")
    );
}
/// Whether `line` calls `skip(` (`ferry_tests::skip` or an imported
/// `skip`), not an iterator's `.skip(`.
fn calls_skip(line: &str) -> bool {
    line.match_indices("skip(").any(|(at, _)| {
        let before = line[..at].chars().next_back();
        !before.is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric())
    })
}

/// Early returns from tests that do not say why, in the text of one test
/// file. A textual rule over rustfmt'ed code: a test is the `fn` after a
/// `#[test]` (or `#[tokio::test]`), up to the next `}` in column 0; a
/// `return` in it needs a `skip(` before it in its block, and a test that
/// asks `is_root()` or `on_path(` needs a `skip(` somewhere.
fn silent_skips(file: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let attr = lines[i].trim_start();
        if !attr.starts_with("#[test]") && !attr.starts_with("#[tokio::test") {
            i += 1;
            continue;
        }
        let Some(start) = (i..lines.len())
            .find(|&j| lines[j].starts_with("fn ") || lines[j].starts_with("async fn "))
        else {
            break;
        };
        let end = (start..lines.len())
            .find(|&j| lines[j] == "}")
            .unwrap_or(lines.len());
        let name = lines[start]
            .trim_start_matches("async ")
            .trim_start_matches("fn ")
            .split('(')
            .next()
            .unwrap_or_default();
        let body = &lines[start + 1..end];
        for (k, line) in body.iter().enumerate() {
            let statement = line.trim_start();
            if statement != "return;" && !statement.starts_with("return ") {
                continue;
            }
            let indent = line.len() - statement.len();
            let block = (0..k)
                .rev()
                .find(|&m| {
                    let l = body[m];
                    !l.trim().is_empty() && l.len() - l.trim_start().len() < indent
                })
                .unwrap_or(0);
            if !body[block..k].iter().any(|l| calls_skip(l)) {
                found.push(format!(
                    "{file}:{}: `{name}` returns early without calling ferry_tests::skip(WHY) first",
                    start + k + 2
                ));
            }
        }
        let guarded = body
            .iter()
            .any(|l| l.contains("is_root()") || l.contains("on_path("));
        if guarded && !body.iter().any(|l| calls_skip(l)) {
            found.push(format!(
                "{file}:{}: `{name}` asks is_root() or on_path() but never calls ferry_tests::skip(WHY)",
                start + 1
            ));
        }
        i = end;
    }
    found
}

#[test]
fn a_test_that_cannot_run_here_says_so() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let mut found = Vec::new();
    for path in files {
        let file = path.strip_prefix(workspace_root()).unwrap().display();
        found.extend(silent_skips(
            &file.to_string(),
            &std::fs::read_to_string(&path).unwrap(),
        ));
    }
    assert!(
        found.is_empty(),
        "a test that returns early passes without having run; call ferry_tests::skip(\"why\") before the return, so `SKIPPED: TEST: WHY` shows in the output:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_silent_skip_rule_finds_a_return_without_skip() {
    let quiet =
        "#[test]\nfn quiet() {\n    if !is_root() {\n        return;\n    }\n    work();\n}\n";
    assert_eq!(
        silent_skips("t.rs", quiet),
        [
            "t.rs:4: `quiet` returns early without calling ferry_tests::skip(WHY) first",
            "t.rs:2: `quiet` asks is_root() or on_path() but never calls ferry_tests::skip(WHY)",
        ]
    );
    let told = quiet.replace(
        "        return;",
        "        ferry_tests::skip(\"needs root\");\n        return;",
    );
    assert_eq!(silent_skips("t.rs", &told), Vec::<String>::new());
    let iterator = quiet.replace(
        "        return;",
        "        let _ = [1].iter().skip(1);\n        return;",
    );
    assert_eq!(silent_skips("t.rs", &iterator).len(), 2);
}
