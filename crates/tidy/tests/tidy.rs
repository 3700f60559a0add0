//! The code map agrees with the code: every edge between workspace crates is listed in
//! ARCHITECTURE.md's `crate-edges` block (and nothing else is), and every table is written
//! only from its owner crate's `src/`, as the map's table-owners table says.
//!
//! Edges of every kind count (normal, build and dev): a dev-only edge is still a crate
//! reaching into another, so the map lists it, marked `(dev)`.

use plaza_tidy::{
    line_count, long_functions, parse_crate_edges, parse_table_owners, writes_in_source, Edge, WriteKind,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Writes outside the owner crate that are allowed for now, as (file, table).
/// Each one is a debt with a date: the lead empties this list when the branch that moves
/// loadgen's seeding and database-floor benchmark behind `plaza_wallet::bench_support` (and
/// its user and session seeding behind `plaza-accounts`) is merged; an entry that no longer
/// matches a write fails the test, so it cannot outlive its reason.
const WRITE_ALLOWANCES: &[(&str, &str)] = &[
    // `plaza-bench wallet` seeds 100k users and their sessions in a few multi-row inserts
    // (registering through the API would take minutes of argon2); their money goes through
    // `plaza_wallet::bench_support`, which owns the wallet's side of the seeding.
    ("crates/loadgen/src/wallet.rs", "users"),
    ("crates/loadgen/src/wallet.rs", "sessions"),
];

#[test]
fn every_edge_between_workspace_crates_is_on_the_map_and_nothing_else_is() {
    let workspace = Workspace::load();
    let map = workspace.map();
    let (listed_crates, listed_edges) =
        parse_crate_edges(&map).unwrap_or_else(|error| panic!("ARCHITECTURE.md: {error}"));
    let crates: BTreeSet<String> = workspace.packages.keys().cloned().collect();
    let mut problems = Vec::new();
    for name in crates.difference(&listed_crates) {
        problems.push(format!(
            "crate `{name}` is not on the map: add a line `{name} -> …` to the crate-edges block in ARCHITECTURE.md and an entry for it under \"Crates\""
        ));
    }
    for name in listed_crates.difference(&crates) {
        problems.push(format!("the crate-edges block lists `{name}`, which is not a workspace crate: remove its line"));
    }
    let edges = workspace.edges();
    for edge in edges.difference(&listed_edges) {
        problems.push(format!(
            "`{edge}` is in the code but not on the map: add it to `{}`'s line in ARCHITECTURE.md's crate-edges block \
             and say in the crate's entry why it needs it (or remove the dependency)",
            edge.from
        ));
    }
    for edge in listed_edges.difference(&edges) {
        problems.push(format!(
            "`{edge}` is on the map but not in the code: remove it from `{}`'s line in ARCHITECTURE.md's crate-edges block",
            edge.from
        ));
    }
    assert!(problems.is_empty(), "the map's crate graph is wrong:\n  {}", problems.join("\n  "));
}

#[test]
fn every_table_is_written_only_by_its_owner_crate() {
    let workspace = Workspace::load();
    let owners = parse_table_owners(&workspace.map()).unwrap_or_else(|error| panic!("ARCHITECTURE.md: {error}"));
    let mut problems = Vec::new();
    for owner in owners.values().collect::<BTreeSet<_>>() {
        if !workspace.packages.contains_key(owner.as_str()) {
            problems.push(format!("the table-owners table names `{owner}`, which is not a workspace crate"));
        }
    }

    // Every write in every crate's src/, with the crate and the file relative to the root.
    let mut writes = Vec::new();
    for (name, directory) in &workspace.packages {
        for file in rust_files(&directory.join("src")) {
            let source = std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            let relative = file.strip_prefix(&workspace.root).unwrap_or(&file).to_string_lossy().replace('\\', "/");
            for write in writes_in_source(&source) {
                writes.push((name.clone(), relative.clone(), write));
            }
        }
    }
    // The tables are the ones some migration creates.
    let tables: BTreeSet<&str> = writes
        .iter()
        .filter(|(_, _, write)| write.kind == WriteKind::CreateTable)
        .map(|(_, _, write)| write.table.as_str())
        .collect();
    for table in &tables {
        if !owners.contains_key(*table) {
            problems.push(format!(
                "table `{table}` has no owner: add a row `| `{table}` | `<crate>` | … |` to the table-owners table in ARCHITECTURE.md"
            ));
        }
    }
    for table in owners.keys() {
        if !tables.contains(table.as_str()) {
            problems
                .push(format!("the table-owners table lists `{table}`, which no migration creates: remove its row"));
        }
    }

    let mut allowances_used = BTreeSet::new();
    for (name, file, write) in &writes {
        let Some(owner) = owners.get(&write.table) else { continue };
        if owner == name {
            continue;
        }
        if WRITE_ALLOWANCES.contains(&(file.as_str(), write.table.as_str())) {
            allowances_used.insert((file.as_str(), write.table.as_str()));
            continue;
        }
        problems.push(format!(
            "{file}:{}: `{name}` writes `{}` ({:?}), which `{owner}` owns: call `{owner}`'s API instead \
             (or, if ownership really moves, change the table-owners table in ARCHITECTURE.md)",
            write.line, write.table, write.kind
        ));
    }
    for allowance in WRITE_ALLOWANCES {
        if !allowances_used.contains(allowance) {
            problems.push(format!(
                "WRITE_ALLOWANCES in crates/tidy/tests/tidy.rs allows {allowance:?}, which no longer happens: remove the entry"
            ));
        }
    }
    assert!(problems.is_empty(), "a table is written outside its owner:\n  {}", problems.join("\n  "));
}

/// The longest function a reader should have to hold (TIGER_STYLE's 70 lines is the
/// guide; this is the bound), and the longest file, in every crate's `src/`.
const FUNCTION_LINES_MAX: usize = 120;
const FILE_LINES_MAX: usize = 900;

#[test]
fn no_function_or_file_in_any_crate_is_longer_than_a_reader_can_hold() {
    let workspace = Workspace::load();
    let mut problems = Vec::new();
    for directory in workspace.packages.values() {
        for file in rust_files(&directory.join("src")) {
            let source = std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            let relative = file.strip_prefix(&workspace.root).unwrap_or(&file).to_string_lossy().replace('\\', "/");
            let lines = line_count(&source);
            if lines > FILE_LINES_MAX {
                problems.push(format!(
                    "{relative}: {lines} lines, over {FILE_LINES_MAX}: split it along its sections into modules"
                ));
            }
            for function in long_functions(&source, FUNCTION_LINES_MAX) {
                problems.push(format!(
                    "{relative}:{}: `{}` is {} lines, over {FUNCTION_LINES_MAX}: make its steps functions",
                    function.line, function.name, function.lines
                ));
            }
        }
    }
    assert!(problems.is_empty(), "code a reader cannot hold:\n  {}", problems.join("\n  "));
}

/// The workspace as `cargo metadata` reports it.
struct Workspace {
    root: PathBuf,
    /// Workspace crate name → its directory.
    packages: BTreeMap<String, PathBuf>,
    metadata: Value,
}

impl Workspace {
    fn load() -> Self {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let output = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
            .arg(&manifest)
            .output()
            .expect("cargo metadata runs");
        assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
        let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
        let root = PathBuf::from(metadata["workspace_root"].as_str().expect("a workspace root"));
        let packages = packages(&metadata)
            .map(|package| {
                let manifest = PathBuf::from(package["manifest_path"].as_str().expect("a manifest path"));
                let directory = manifest.parent().expect("a manifest's directory").to_path_buf();
                (name(package).to_string(), directory)
            })
            .collect();
        Workspace { root, packages, metadata }
    }

    fn map(&self) -> String {
        let path = self.root.join("ARCHITECTURE.md");
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// The edges between workspace crates; an edge is `dev` only if no normal or build
    /// dependency backs it.
    fn edges(&self) -> BTreeSet<Edge> {
        let mut kinds: BTreeMap<(String, String), bool> = BTreeMap::new();
        for package in packages(&self.metadata) {
            for dependency in package["dependencies"].as_array().into_iter().flatten() {
                let to = name(dependency);
                // A path dependency on a workspace crate (a registry crate of the same name
                // would have a `source`).
                if !self.packages.contains_key(to) || !dependency["source"].is_null() {
                    continue;
                }
                let dev = dependency["kind"].as_str() == Some("dev");
                let only_dev = kinds.entry((name(package).to_string(), to.to_string())).or_insert(dev);
                *only_dev &= dev;
            }
        }
        kinds.into_iter().map(|((from, to), dev)| Edge { from, to, dev }).collect()
    }
}

fn packages(metadata: &Value) -> impl Iterator<Item = &Value> {
    metadata["packages"].as_array().expect("packages").iter()
}

fn name(value: &Value) -> &str {
    value["name"].as_str().expect("a name")
}

/// Every `.rs` file under `directory`, in a stable order.
fn rust_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
