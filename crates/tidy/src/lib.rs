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

/// A function whose body spans more lines than the bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongFunction {
    pub name: String,
    /// The 1-based line of its `fn`.
    pub line: usize,
    /// Lines from its `fn` to its closing brace, both included.
    pub lines: usize,
}

/// Every function (free, method, nested or in a test) of a Rust source file that spans
/// more than `max_lines`, from its `fn` keyword to its closing brace. Comments, strings
/// and character literals are blanked first, so a brace inside them does not count.
pub fn long_functions(source: &str, max_lines: usize) -> Vec<LongFunction> {
    let code: Vec<char> = code_only(source).chars().collect();
    let line_at = |at: usize| 1 + code[..at].iter().filter(|c| **c == '\n').count();
    let mut found = Vec::new();
    let mut at = 0;
    while at + 2 < code.len() {
        let is_keyword = code[at] == 'f'
            && code[at + 1] == 'n'
            && code[at + 2].is_whitespace()
            && (at == 0 || !is_identifier(code[at - 1]));
        if !is_keyword {
            at += 1;
            continue;
        }
        let name_start = (at + 2..code.len()).find(|&next| !code[next].is_whitespace()).unwrap_or(code.len());
        let name_end = (name_start..code.len()).find(|&next| !is_identifier(code[next])).unwrap_or(code.len());
        let name: String = code[name_start..name_end].iter().collect();
        // A declaration without a body (in a trait or an extern block) ends at `;`.
        let Some(open) = (name_end..code.len()).find(|&next| code[next] == '{' || code[next] == ';') else { break };
        if name.is_empty() || code[open] == ';' {
            at = name_end;
            continue;
        }
        let mut depth = 0usize;
        let mut close = open;
        for (offset, c) in code[open..].iter().enumerate() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                close = open + offset;
                break;
            }
        }
        let (first, last) = (line_at(at), line_at(close));
        if last - first + 1 > max_lines {
            found.push(LongFunction { name, line: first, lines: last - first + 1 });
        }
        // Nested functions are measured on their own as the scan goes on.
        at = name_end;
    }
    found
}

/// Lines of a source file, counted as an editor shows them.
pub fn line_count(source: &str) -> usize {
    source.lines().count()
}

fn is_identifier(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The source with comments, string literals (plain, byte and raw) and character
/// literals replaced by spaces, keeping every newline so line numbers still match.
/// Lifetimes (`'a`) are kept: a quote not closed within a character's reach is one.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, text: &[char]| {
        out.extend(text.iter().map(|c| if *c == '\n' { '\n' } else { ' ' }));
    };
    let mut at = 0;
    while at < chars.len() {
        let rest = &chars[at..];
        let previous_is_identifier = at > 0 && is_identifier(chars[at - 1]);
        let end = if rest.starts_with(&['/', '/']) {
            at + rest.iter().position(|c| *c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            at + block_comment_length(rest)
        } else if let Some(length) = raw_string_length(rest).filter(|_| !previous_is_identifier) {
            at + length
        } else if rest[0] == '"' || (rest.starts_with(&['b', '"']) && !previous_is_identifier) {
            let open = if rest[0] == 'b' { 1 } else { 0 };
            let mut next = open + 1;
            while next < rest.len() && rest[next] != '"' {
                next += if rest[next] == '\\' { 2 } else { 1 };
            }
            at + (next + 1).min(rest.len())
        } else if rest[0] == '\'' {
            at + character_length(rest).unwrap_or(1)
        } else {
            out.push(rest[0]);
            at += 1;
            continue;
        };
        if rest[0] == '\'' && end == at + 1 {
            out.push('\'');
        } else {
            blank(&mut out, &chars[at..end]);
        }
        at = end;
    }
    out
}

fn block_comment_length(rest: &[char]) -> usize {
    let (mut depth, mut at) = (0usize, 0);
    while at < rest.len() {
        if rest[at..].starts_with(&['/', '*']) {
            depth += 1;
            at += 2;
        } else if rest[at..].starts_with(&['*', '/']) {
            depth -= 1;
            at += 2;
            if depth == 0 {
                return at;
            }
        } else {
            at += 1;
        }
    }
    rest.len()
}

/// `r"…"`, `r#"…"#` and `br#"…"#`, with as many hashes closing as opening.
fn raw_string_length(rest: &[char]) -> Option<usize> {
    let start = match rest {
        ['r', ..] => 1,
        ['b', 'r', ..] => 2,
        _ => return None,
    };
    let hashes = rest[start..].iter().take_while(|c| **c == '#').count();
    if rest.get(start + hashes) != Some(&'"') {
        return None;
    }
    let body = start + hashes + 1;
    let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
    let length =
        (body..rest.len()).find(|&at| rest[at..].starts_with(&close)).map_or(rest.len(), |at| at + close.len());
    Some(length)
}

/// `'x'`, `'\n'`, `'\u{1F600}'`; `None` for a lifetime or a label.
fn character_length(rest: &[char]) -> Option<usize> {
    match rest {
        ['\'', '\\', ..] => {
            rest.iter().skip(3).position(|c| *c == '\'').map(|at| at + 4).filter(|length| *length <= 12)
        }
        ['\'', _, '\'', ..] => Some(3),
        _ => None,
    }
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

    #[test]
    fn a_function_is_measured_from_fn_to_its_closing_brace() {
        let source = "fn short() {\n    one();\n}\n\nfn long() {\n    a();\n    b();\n    c();\n}\n";
        assert_eq!(long_functions(source, 3), vec![LongFunction { name: "long".into(), line: 5, lines: 5 }]);
        assert!(long_functions(source, 5).is_empty());
    }

    #[test]
    fn braces_in_strings_comments_and_characters_do_not_count() {
        let source = "fn tricky<'a>(x: &'a str) {\n    let s = \"}}}\"; // }\n    let c = '}';\n    \
                      let r = r#\"}\"#; /* } */\n}\nfn after() {\n    a();\n    b();\n}\n";
        let found = long_functions(source, 3);
        assert_eq!(
            found,
            vec![
                LongFunction { name: "tricky".into(), line: 1, lines: 5 },
                LongFunction { name: "after".into(), line: 6, lines: 4 },
            ]
        );
    }

    #[test]
    fn declarations_without_bodies_and_fn_types_are_not_functions() {
        let source = "trait T {\n    fn declared(&self);\n}\ntype F = fn(u32) -> u32;\nfn body() {\n}\n";
        assert!(long_functions(source, 1).iter().all(|function| function.name == "body"));
        assert_eq!(long_functions(source, 1).len(), 1);
    }

    #[test]
    fn an_escaped_quote_or_backslash_character_is_one_literal() {
        let source =
            "fn quotes() {\n    let q = '\\'';\n    let b = '\\\\';\n    let brace = '{';\n}\nfn next() {\n}\n";
        let names: Vec<(String, usize)> =
            long_functions(source, 1).into_iter().map(|function| (function.name, function.lines)).collect();
        assert_eq!(names, [("quotes".to_string(), 5), ("next".to_string(), 2)]);
    }
}
