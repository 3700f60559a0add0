//! `plaza-tidy`: checks that keep the code map (`ARCHITECTURE.md`) true, run as ordinary
//! tests (`cargo nextest run -p plaza-tidy`), after rust-analyzer's `tidy.rs`.
//!
//! Main design choice: the map holds the facts in two machine-readable places that its
//! prose refers to — the `crate-edges` block (which workspace crate depends on which) and
//! the table-owners table (which crate owns which table) — and `tests/tidy.rs` compares them
//! with the code: the edges with `cargo metadata`, the owners with every SQL write found in
//! each crate's `src/`.
//! This library is only the parsing, pure and unit-tested here; the test does the I/O.
//! It is a crate of its own, not a test of `plaza-server`, because it checks the whole
//! workspace, depends on no Plaza crate (so it builds in seconds and adds no edge to the
//! map), and runs before anything else has compiled.
//!
//! What counts as a write to table `t` (keywords in any case, across line breaks):
//! `INSERT [OR …] INTO t` (an `ON CONFLICT … DO UPDATE` belongs to its insert's table),
//! `UPDATE t SET`, `DELETE FROM t`, and the DDL `CREATE TABLE [IF NOT EXISTS] t`,
//! `ALTER TABLE t`, `DROP TABLE [IF EXISTS] t` and `CREATE [UNIQUE] INDEX … ON t`, which
//! migrations run and which therefore belong to the owner too.
//! Only production code is scanned: lines that are `//` comments are skipped, and so is a
//! file's `#[cfg(test)] mod …` and everything after it (Plaza keeps unit tests at the end of
//! a file); code under `tests/` is not scanned at all, since tests write rows on purpose
//! (they backdate them, or check what a crash leaves).
//! SQL assembled from pieces at run time (a table name in a `format!` argument) is not seen.

use std::collections::{BTreeMap, BTreeSet};

/// One edge of the crate graph as the map lists it: `from -> to`, `dev` when only the
/// crate's tests and benchmarks use it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub dev: bool,
}

impl std::fmt::Display for Edge {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dev = if self.dev { " (dev)" } else { "" };
        write!(formatter, "{} -> {}{dev}", self.from, self.to)
    }
}

/// The crate graph as a fenced block with the info string `crate-edges` lists it: one line
/// per workspace crate, `crate -> dependency, dependency (dev), …` (nothing after the arrow
/// for a crate that depends on no workspace crate). Returns every crate named on the left,
/// and the edges.
pub fn parse_crate_edges(markdown: &str) -> Result<(BTreeSet<String>, BTreeSet<Edge>), String> {
    let block = fenced_block(markdown, "crate-edges").ok_or("no ```crate-edges block")?;
    let mut crates = BTreeSet::new();
    let mut edges = BTreeSet::new();
    for line in block.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        let (from, targets) = line.split_once("->").ok_or_else(|| format!("`{line}` has no `->`"))?;
        let from = from.trim().to_string();
        if !crates.insert(from.clone()) {
            return Err(format!("`{from}` has two lines; put all its edges on one"));
        }
        for target in targets.split(',').map(str::trim).filter(|target| !target.is_empty()) {
            let (to, dev) = match target.strip_suffix("(dev)") {
                Some(to) => (to.trim(), true),
                None => (target, false),
            };
            edges.insert(Edge { from: from.clone(), to: to.to_string(), dev });
        }
    }
    Ok((crates, edges))
}

/// The table → owner crate rows of the Markdown table that follows the line
/// `<!-- tidy:table-owners -->`: `| `table` | `crate` | why |` (backticks optional).
pub fn parse_table_owners(markdown: &str) -> Result<BTreeMap<String, String>, String> {
    let (_, after) = markdown.split_once("<!-- tidy:table-owners -->").ok_or("no <!-- tidy:table-owners --> marker")?;
    let mut owners = BTreeMap::new();
    let rows = after.lines().map(str::trim).skip_while(|line| line.is_empty()).take_while(|line| line.starts_with('|'));
    // The header row and the separator row come first.
    for row in rows.skip(2) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(|cell| cell.trim().trim_matches('`')).collect();
        let [table, owner, ..] = cells.as_slice() else {
            return Err(format!("table-owners row `{row}` needs a table and a crate"));
        };
        if owners.insert(table.to_string(), owner.to_string()).is_some() {
            return Err(format!("table `{table}` has two owner rows"));
        }
    }
    if owners.is_empty() {
        return Err("the table-owners table has no rows".into());
    }
    Ok(owners)
}

/// What a statement does to a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WriteKind {
    Insert,
    Update,
    Delete,
    /// `CREATE TABLE`: the table exists because of this statement.
    CreateTable,
    /// `ALTER TABLE`, `DROP TABLE`, `CREATE INDEX … ON`.
    Schema,
}

/// A write to `table` found at `line` (1-based) of a source file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Write {
    pub line: usize,
    pub table: String,
    pub kind: WriteKind,
}

/// Every write in the production part of a Rust source file (see the crate docs for what
/// counts and what is skipped).
pub fn writes_in_source(source: &str) -> Vec<Write> {
    let words = words(production_part(source));
    let word = |at: usize| words.get(at).map(|(_, word)| word.to_ascii_uppercase()).unwrap_or_default();
    let name = |at: usize| words.get(at).map(|(line, word)| (*line, word.to_string()));
    let mut writes = Vec::new();
    let mut push = |found: Option<(usize, String)>, kind| {
        if let Some((line, table)) = found {
            writes.push(Write { line, table, kind });
        }
    };
    for at in 0..words.len() {
        match word(at).as_str() {
            "INSERT" => {
                let into = if word(at + 1) == "OR" { at + 3 } else { at + 1 };
                if word(into) == "INTO" {
                    push(name(into + 1), WriteKind::Insert);
                }
            }
            // `ON CONFLICT … DO UPDATE SET` names no table: it is its insert's.
            "UPDATE" if word(at + 2) == "SET" && word(at.wrapping_sub(1)) != "DO" => {
                push(name(at + 1), WriteKind::Update)
            }
            "DELETE" if word(at + 1) == "FROM" => push(name(at + 2), WriteKind::Delete),
            "CREATE" if word(at + 1) == "TABLE" => {
                let table = if word(at + 2) == "IF" { at + 5 } else { at + 2 };
                push(name(table), WriteKind::CreateTable);
            }
            "ALTER" if word(at + 1) == "TABLE" => push(name(at + 2), WriteKind::Schema),
            "DROP" if word(at + 1) == "TABLE" => {
                let table = if word(at + 2) == "IF" { at + 4 } else { at + 2 };
                push(name(table), WriteKind::Schema);
            }
            "CREATE" if word(at + 1) == "INDEX" || (word(at + 1) == "UNIQUE" && word(at + 2) == "INDEX") => {
                // The table follows the first `ON` (the index's name comes before it).
                let on = (at + 2..words.len().min(at + 10)).find(|&next| word(next) == "ON");
                push(on.and_then(|on| name(on + 1)), WriteKind::Schema);
            }
            _ => {}
        }
    }
    writes
}

/// The source up to a file's unit tests (`#[cfg(test)]` at the start of a line, followed
/// by a `mod`), with `//` comment lines blanked, so line numbers still match.
fn production_part(source: &str) -> String {
    let mut kept = String::with_capacity(source.len());
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("#[cfg(test)]") && lines.peek().is_some_and(|next| next.trim_start().starts_with("mod ")) {
            break;
        }
        if !line.trim_start().starts_with("//") {
            kept.push_str(line);
        }
        kept.push('\n');
    }
    kept
}

/// The identifier-like words of a text with their 1-based line numbers; everything else
/// (punctuation, quotes, `$1`'s dollar) separates words.
fn words(text: String) -> Vec<(usize, String)> {
    let mut words = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|word| !word.is_empty()) {
            words.push((index + 1, word.to_string()));
        }
    }
    words
}

/// The text of the first fenced block whose info string is `info`.
fn fenced_block<'a>(markdown: &'a str, info: &str) -> Option<&'a str> {
    let opening = format!("```{info}\n");
    let start = markdown.find(&opening)? + opening.len();
    let length = markdown[start..].find("```")?;
    Some(&markdown[start..start + length])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(source: &str) -> Vec<(usize, String, WriteKind)> {
        writes_in_source(source).into_iter().map(|write| (write.line, write.table, write.kind)).collect()
    }

    fn expected(writes: &[(usize, &str, WriteKind)]) -> Vec<(usize, String, WriteKind)> {
        writes.iter().map(|&(line, table, kind)| (line, table.to_string(), kind)).collect()
    }

    #[test]
    fn every_kind_of_write_is_found_with_its_line() {
        let source = r#"
            sqlx::query("INSERT INTO users (id) VALUES ($1)");
            sqlx::query("insert or ignore into sessions (id) values (?)");
            sqlx::query("UPDATE wallet_accounts SET balance = balance - $2 WHERE id = $1");
            sqlx::query("DELETE
                FROM contacts WHERE a = $1");
            "CREATE TABLE IF NOT EXISTS plaza_migrations (service TEXT)";
            "CREATE UNIQUE INDEX rides_open ON rides (rider_id) WHERE status IN ('requested')";
            "ALTER TABLE ride_drivers ADD COLUMN seats INTEGER";
        "#;
        assert_eq!(
            tables(source),
            expected(&[
                (2, "users", WriteKind::Insert),
                (3, "sessions", WriteKind::Insert),
                (4, "wallet_accounts", WriteKind::Update),
                (6, "contacts", WriteKind::Delete),
                (7, "plaza_migrations", WriteKind::CreateTable),
                (8, "rides", WriteKind::Schema),
                (9, "ride_drivers", WriteKind::Schema),
            ])
        );
    }

    #[test]
    fn an_upsert_counts_once_as_its_inserts_table() {
        let source = "\"INSERT INTO wallet_accounts (id) VALUES ($1)
             ON CONFLICT (id) DO UPDATE SET balance = wallet_accounts.balance + excluded.balance\"";
        assert_eq!(tables(source), expected(&[(1, "wallet_accounts", WriteKind::Insert)]));
    }

    #[test]
    fn a_cte_feeding_an_update_is_the_updates_table() {
        let source = "\"WITH changes AS ({}) UPDATE wallet_accounts SET balance = balance + changes.delta\"";
        assert_eq!(tables(source), expected(&[(1, "wallet_accounts", WriteKind::Update)]));
    }

    #[test]
    fn reads_comments_and_unit_tests_are_not_writes() {
        assert!(tables("\"SELECT balance FROM wallet_accounts WHERE id = $1 FOR UPDATE\"").is_empty());
        let source = "/// `UPDATE conversations SET last_seq = last_seq + 1`\n\
                      fn send() {}\n\
                      #[cfg(test)]\n\
                      mod tests {\n\
                          const SQL: &str = \"DELETE FROM users\";\n\
                      }\n";
        assert!(tables(source).is_empty());
    }

    #[test]
    fn the_edges_block_lists_crates_and_their_edges() {
        let map = "prose\n```crate-edges\nplaza-kernel ->\nplaza-store -> plaza-kernel\nplaza-x -> plaza-store, plaza-kernel (dev)\n```\n";
        let (crates, edges) = parse_crate_edges(map).expect("parses");
        assert_eq!(crates.into_iter().collect::<Vec<_>>(), ["plaza-kernel", "plaza-store", "plaza-x"]);
        let edges: Vec<String> = edges.iter().map(Edge::to_string).collect();
        assert_eq!(edges, ["plaza-store -> plaza-kernel", "plaza-x -> plaza-kernel (dev)", "plaza-x -> plaza-store"]);
    }

    #[test]
    fn a_crate_on_two_lines_is_refused() {
        let map = "```crate-edges\nplaza-a -> plaza-b\nplaza-a -> plaza-c\n```\n";
        assert!(parse_crate_edges(map).is_err());
    }

    #[test]
    fn the_owners_table_maps_tables_to_crates() {
        let map = "<!-- tidy:table-owners -->\n| table | owner | note |\n| --- | --- | --- |\n\
                   | `users` | `plaza-accounts` | identity |\n| `media` | `plaza-media` | |\n\nafter\n| x | y |\n";
        let owners = parse_table_owners(map).expect("parses");
        assert_eq!(owners.get("users").map(String::as_str), Some("plaza-accounts"));
        assert_eq!(owners.get("media").map(String::as_str), Some("plaza-media"));
        assert_eq!(owners.len(), 2);
    }
}
