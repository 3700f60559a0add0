//! Catalogue search, the same on SQLite and PostgreSQL, answered from memory.
//!
//! Neither engine's own full-text search fits: SQLite's FTS5 `unicode61` tokenizer makes a
//! run of Chinese characters one token (so 咖啡 does not find 云南咖啡豆) and `trigram`
//! needs queries of three characters or more, while PostgreSQL has no Chinese parser; and
//! two engines ranking in their own ways would answer differently. So the shop indexes for
//! itself. [`terms`] tokenises in Rust: Latin (and other space-separated) scripts become
//! lower-cased words; a run of CJK characters becomes every overlapping character bigram
//! plus every single character, so any two-character word inside a longer run is found
//! (and a one-character query too).
//!
//! The index lives in each node's memory ([`SearchIndex`]): postings per term, and per
//! product its shop and field lengths. The database holds only the products and a change
//! clock. Every write of a product's text or status takes the next value of the one-row
//! `shop_search_clock` as the last statement of its transaction and stamps the product's
//! `search_seq` with it; the clock row stays locked until the commit, so writes commit in
//! clock order and a reader that has seen clock value n has seen every write up to n. A
//! search first reads the products whose `search_seq` is above the last one this node
//! applied (one indexed range scan, usually empty; concurrent searches share one read),
//! then ranks in memory. So a search on any node sees every product write committed before
//! it began, and the first search after start-up loads the whole catalogue.
//!
//! A query is tokenised the same way, except that a CJK run of two or more characters
//! yields only its bigrams (single characters would match nearly everything). A product
//! matches when it holds any query term, and is ranked with BM25 (k1 = 1.2, b = 0.75) per
//! field, the title weighted [`TITLE_WEIGHT`] times the description, over the statistics
//! of the whole active catalogue, ties broken by product id. The sum for one product is
//! taken in a fixed order (query terms sorted, title before description), so both engines,
//! feeding the same text into the same `f64` formula, give the same order. Ranking reads
//! every posting of the query's terms (a word found in half of 100,000 products is 50,000
//! entries of 8 bytes, well under a millisecond) and keeps only the best
//! [`RESULTS_MAX`].

use crate::service::{ShopError, ShopHandle};
use plaza_store::Row;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::RwLock;
use std::time::Instant;

/// How much a title hit counts against a description hit.
pub const TITLE_WEIGHT: f64 = 3.0;
/// Query terms considered (the rest of a very long query is ignored).
pub const QUERY_TERMS_MAX: usize = 16;
/// How deep a query's results can be paged: the best this many products.
pub const RESULTS_MAX: usize = 1_000;
/// Products read per statement while catching up with the clock.
const CATCH_UP_BATCH: i64 = 2_000;
/// Characters kept of one term.
const TERM_MAX_CHARS: usize = 48;
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// Which text of a product a term was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Title,
    Description,
}

/// Whether `c` is written without spaces between words (Han, kana).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF // hiragana, katakana
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xF900..=0xFAFF // compatibility ideographs
        | 0x20000..=0x2FA1F) // extensions B and later
}

/// The index terms of `text`, each with how often it occurs.
pub fn terms(text: &str) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for term in tokens(text, true) {
        *counts.entry(term).or_insert(0) += 1;
    }
    counts
}

/// The distinct terms of a query, in order of appearance, at most [`QUERY_TERMS_MAX`].
pub fn query_terms(query: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for term in tokens(query, false) {
        if !seen.contains(&term) {
            seen.push(term);
        }
        if seen.len() == QUERY_TERMS_MAX {
            break;
        }
    }
    seen
}

/// The words and CJK n-grams of `text`. Indexing (`for_index`) adds each CJK character
/// alone; a query adds a lone character only when its run has just one.
fn tokens(text: &str, for_index: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut run: Vec<char> = Vec::new();
    let flush_word = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(word.chars().take(TERM_MAX_CHARS).collect());
            word.clear();
        }
    };
    let flush_run = |run: &mut Vec<char>, out: &mut Vec<String>| {
        for pair in run.windows(2) {
            out.push(pair.iter().collect());
        }
        if for_index || run.len() == 1 {
            out.extend(run.iter().map(|c| c.to_string()));
        }
        run.clear();
    };
    for c in text.chars() {
        if is_cjk(c) {
            flush_word(&mut word, &mut out);
            run.push(c);
        } else if c.is_alphanumeric() {
            flush_run(&mut run, &mut out);
            word.extend(c.to_lowercase());
        } else {
            flush_word(&mut word, &mut out);
            flush_run(&mut run, &mut out);
        }
    }
    flush_word(&mut word, &mut out);
    flush_run(&mut run, &mut out);
    out
}

/// A product as the index sees it: where it belongs and what it says.
#[derive(Debug, Clone)]
pub struct IndexedProduct {
    pub product_id: String,
    pub shop_id: String,
    /// Archived products are taken out of the index.
    pub active: bool,
    pub title: String,
    pub description: String,
}

/// The in-memory catalogue index of one node: documents, postings and the collection's
/// statistics, kept current by [`Catalogue::apply`].
///
/// A document is a number, and what ranking reads of it per posting sits in vectors of
/// its own by that number: whether it is live and its field lengths (8 bytes), its shop
/// (4 bytes), and the sort key of its product id (16 bytes) for ties. Ranking a word found
/// in 15,000 products so walks small dense arrays instead of 15,000 structs holding two
/// strings each, and breaks ties on integers instead of comparing ids byte by byte.
#[derive(Debug, Default)]
pub struct Catalogue {
    /// One entry per indexed version of a product; a replaced or archived one is dead.
    documents: Vec<Document>,
    /// By document: its field lengths, or `None` once dead.
    lengths: Vec<Option<Lengths>>,
    /// By document: its shop, as a number of `shops`.
    shop_of: Vec<u32>,
    /// By document: the first 16 bytes of its product id, big-endian, for ties.
    id_keys: Vec<u128>,
    /// Every shop seen, numbered.
    shops: HashMap<String, u32>,
    /// The live document of each indexed product.
    by_product: HashMap<String, u32>,
    /// Per term, its entries in document order; a document's title entry before its
    /// description entry.
    postings: HashMap<String, Vec<Entry>>,
    live: usize,
    title_terms: u64,
    description_terms: u64,
}

/// What ranking does not read per posting.
#[derive(Debug, Clone)]
struct Document {
    product_id: String,
}

#[derive(Debug, Clone, Copy)]
struct Lengths {
    title_terms: u32,
    description_terms: u32,
}

/// Bytes of a product id that its tie-breaking key holds.
const ID_KEY_BYTES: usize = 16;

/// The first [`ID_KEY_BYTES`] bytes of `id`, zero-padded, as a big-endian number: if two
/// keys differ, they order their ids as the ids' bytes do; if they are equal, the ids are
/// compared in full.
fn id_key(id: &str) -> u128 {
    let mut bytes = [0u8; ID_KEY_BYTES];
    let prefix = &id.as_bytes()[..id.len().min(ID_KEY_BYTES)];
    bytes[..prefix.len()].copy_from_slice(prefix);
    u128::from_be_bytes(bytes)
}

thread_local! {
    /// Scores by document number, all zero between calls to [`Catalogue::rank`] (each call
    /// sets back what it touched): a fresh vector per query was 800 KB at 100,000
    /// products, allocated, zeroed and freed on every search.
    static SCORES: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// A ranked candidate: better is greater (a higher score, then a smaller id).
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    score: f64,
    id_key: u128,
    product_id: &'a str,
}

impl Ord for Candidate<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id_key.cmp(&self.id_key))
            .then_with(|| other.product_id.cmp(self.product_id))
    }
}

impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate<'_> {}

#[derive(Debug, Clone, Copy)]
struct Entry {
    document: u32,
    field: Field,
    count: u32,
}

impl Catalogue {
    /// Indexes `product` in place of what was indexed for it before.
    pub fn apply(&mut self, product: &IndexedProduct) {
        if let Some(old) = self.by_product.remove(&product.product_id) {
            if let Some(old) = self.lengths[old as usize].take() {
                self.live -= 1;
                self.title_terms -= u64::from(old.title_terms);
                self.description_terms -= u64::from(old.description_terms);
            }
        }
        if product.active {
            let document = u32::try_from(self.documents.len()).expect("fewer than 2^32 indexed versions");
            let (title, description) = (terms(&product.title), terms(&product.description));
            let mut fields: BTreeMap<&str, Vec<(Field, u32)>> = BTreeMap::new();
            for (field, counts) in [(Field::Title, &title), (Field::Description, &description)] {
                for (term, count) in counts {
                    fields.entry(term).or_default().push((field, *count as u32));
                }
            }
            for (term, hits) in fields {
                let entries = self.postings.entry(term.to_string()).or_default();
                entries.extend(hits.into_iter().map(|(field, count)| Entry { document, field, count }));
            }
            let length = |counts: &BTreeMap<String, i64>| counts.values().sum::<i64>() as u32;
            let (title_terms, description_terms) = (length(&title), length(&description));
            self.documents.push(Document { product_id: product.product_id.clone() });
            self.lengths.push(Some(Lengths { title_terms, description_terms }));
            let next_shop = self.shops.len() as u32;
            self.shop_of.push(*self.shops.entry(product.shop_id.clone()).or_insert(next_shop));
            self.id_keys.push(id_key(&product.product_id));
            self.by_product.insert(product.product_id.clone(), document);
            self.live += 1;
            self.title_terms += u64::from(title_terms);
            self.description_terms += u64::from(description_terms);
        }
        if self.documents.len() > 1_024 && self.documents.len() > 2 * self.live {
            self.compact();
        }
    }

    /// Drops dead documents and their entries, renumbering the live ones in order (which
    /// keeps every term's entries in document order).
    fn compact(&mut self) {
        let mut renumbered = vec![u32::MAX; self.documents.len()];
        let (mut documents, mut lengths) = (Vec::with_capacity(self.live), Vec::with_capacity(self.live));
        let (mut shop_of, mut id_keys) = (Vec::with_capacity(self.live), Vec::with_capacity(self.live));
        for (old, document) in self.documents.drain(..).enumerate() {
            if let Some(length) = self.lengths[old] {
                renumbered[old] = documents.len() as u32;
                documents.push(document);
                lengths.push(Some(length));
                shop_of.push(self.shop_of[old]);
                id_keys.push(self.id_keys[old]);
            }
        }
        (self.documents, self.lengths, self.shop_of, self.id_keys) = (documents, lengths, shop_of, id_keys);
        self.postings.retain(|_, entries| {
            entries.retain_mut(|entry| {
                entry.document = renumbered[entry.document as usize];
                entry.document != u32::MAX
            });
            !entries.is_empty()
        });
        for document in self.by_product.values_mut() {
            *document = renumbered[*document as usize];
        }
    }

    /// The best `want` (at most [`RESULTS_MAX`]) product ids for `terms`, optionally only
    /// of one shop: by descending BM25 score, ties by id. The statistics are those of the
    /// whole active catalogue, whatever the shop filter.
    pub fn rank(&self, terms: &[String], shop_id: Option<&str>, want: usize) -> Vec<String> {
        let want = want.min(RESULTS_MAX);
        let shop = match shop_id {
            Some(shop_id) => match self.shops.get(shop_id) {
                Some(shop) => Some(*shop),
                None => return Vec::new(),
            },
            None => None,
        };
        if want == 0 {
            return Vec::new();
        }
        SCORES.with(|scores| {
            let mut scores = scores.borrow_mut();
            if scores.len() < self.documents.len() {
                scores.resize(self.documents.len(), 0.0);
            }
            let touched = self.score(terms, shop, &mut scores);
            // The best `want`, in a heap whose top is the worst kept: most candidates lose
            // to it on their score alone.
            let mut best: BinaryHeap<std::cmp::Reverse<Candidate<'_>>> = BinaryHeap::with_capacity(want + 1);
            for document in touched {
                let index = document as usize;
                let candidate = Candidate {
                    score: std::mem::take(&mut scores[index]),
                    id_key: self.id_keys[index],
                    product_id: &self.documents[index].product_id,
                };
                if best.len() < want {
                    best.push(std::cmp::Reverse(candidate));
                } else if best.peek().is_some_and(|worst| candidate > worst.0) {
                    best.pop();
                    best.push(std::cmp::Reverse(candidate));
                }
            }
            // Ascending `Reverse` is descending candidates: the best first.
            best.into_sorted_vec().into_iter().map(|candidate| candidate.0.product_id.to_string()).collect()
        })
    }

    /// Adds each live document's BM25 score for `terms` (of `shop` only, if given) into
    /// `scores`, and returns the documents touched, in first-touch order.
    fn score(&self, terms: &[String], shop: Option<u32>, scores: &mut [f64]) -> Vec<u32> {
        let documents = self.live.max(1) as f64;
        let average = |total: u64| (total as f64 / documents).max(1.0);
        let (title_average, description_average) = (average(self.title_terms), average(self.description_terms));
        let mut sorted: Vec<&String> = terms.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut touched: Vec<u32> = Vec::new();
        for term in sorted {
            let Some(entries) = self.postings.get(term) else { continue };
            let mut frequency = 0u32;
            let mut previous = u32::MAX;
            for entry in entries {
                if entry.document != previous && self.lengths[entry.document as usize].is_some() {
                    frequency += 1;
                    previous = entry.document;
                }
            }
            let frequency = f64::from(frequency);
            let idf = ((documents - frequency + 0.5) / (frequency + 0.5) + 1.0).ln();
            for entry in entries {
                let index = entry.document as usize;
                let Some(lengths) = self.lengths[index] else { continue };
                if shop.is_some_and(|shop| shop != self.shop_of[index]) {
                    continue;
                }
                let (weight, length, average_length) = match entry.field {
                    Field::Title => (TITLE_WEIGHT, lengths.title_terms, title_average),
                    Field::Description => (1.0, lengths.description_terms, description_average),
                };
                let count = f64::from(entry.count);
                let norm = K1 * (1.0 - B + B * f64::from(length) / average_length);
                let score = &mut scores[index];
                if *score == 0.0 {
                    touched.push(entry.document);
                }
                *score += weight * idf * count * (K1 + 1.0) / (count + norm);
            }
        }
        touched
    }
}

/// A node's catalogue index and how far along the clock it is.
#[derive(Debug)]
pub(crate) struct SearchIndex {
    catalogue: RwLock<Catalogue>,
    /// The clock value applied last (`-1`: nothing loaded yet), and when the latest
    /// catch-up began: a search that arrived before that needs no catch-up of its own.
    catch_up: tokio::sync::Mutex<(i64, Option<Instant>)>,
}

impl Default for SearchIndex {
    fn default() -> Self {
        Self { catalogue: RwLock::default(), catch_up: tokio::sync::Mutex::new((-1, None)) }
    }
}

impl ShopHandle {
    /// Loads this node's index now, so that the first search after start-up does not
    /// wait for the whole catalogue (the shop's job calls it once when it starts).
    pub async fn warm_search_index(&self) -> Result<(), ShopError> {
        self.catch_up_search_index(Instant::now()).await
    }

    /// The ids of the best `want` active products matching any term of `query`, best
    /// first, after this node's index has caught up with every product write committed
    /// before the call.
    pub(crate) async fn search(
        &self,
        query: &str,
        shop_id: Option<&str>,
        want: usize,
    ) -> Result<Vec<String>, ShopError> {
        let terms = query_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        self.catch_up_search_index(Instant::now()).await?;
        let catalogue = self.inner.search_index.catalogue.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(catalogue.rank(&terms, shop_id, want))
    }

    /// Applies the product writes past this node's clock value. One catch-up runs at a
    /// time; a caller that arrived (`asked`) before the latest one began is served by it.
    async fn catch_up_search_index(&self, asked: Instant) -> Result<(), ShopError> {
        let index = &self.inner.search_index;
        let mut catch_up = index.catch_up.lock().await;
        if catch_up.1.is_some_and(|began| began >= asked) {
            return Ok(());
        }
        catch_up.1 = Some(Instant::now());
        loop {
            let rows = sqlx::query(
                "SELECT id, shop_id, title, description, status, search_seq FROM shop_products
                 WHERE search_seq > $1 ORDER BY search_seq LIMIT $2",
            )
            .bind(catch_up.0)
            .bind(CATCH_UP_BATCH)
            .fetch_all(self.inner.store.read())
            .await?;
            let mut products = Vec::with_capacity(rows.len());
            let mut seq = catch_up.0;
            for row in &rows {
                products.push(IndexedProduct {
                    product_id: row.try_get("id")?,
                    shop_id: row.try_get("shop_id")?,
                    active: row.try_get::<String, _>("status")? == "active",
                    title: row.try_get("title")?,
                    description: row.try_get("description")?,
                });
                seq = seq.max(row.try_get("search_seq")?);
            }
            if !products.is_empty() {
                let mut catalogue = index.catalogue.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                for product in &products {
                    catalogue.apply(product);
                }
            }
            catch_up.0 = seq;
            if (rows.len() as i64) < CATCH_UP_BATCH {
                return Ok(());
            }
        }
    }
}

/// Stamps `product_id` with the next value of the search clock. The last statement of a
/// transaction that changes a product's text or status: the clock row stays locked until
/// the commit, so such writes commit in clock order (see the module doc).
pub(crate) async fn stamp(
    transaction: &mut plaza_store::Transaction<'_, plaza_store::Any>,
    product_id: &str,
) -> Result<(), ShopError> {
    let seq: i64 = sqlx::query("UPDATE shop_search_clock SET seq = seq + 1 WHERE id = 1 RETURNING seq")
        .fetch_one(&mut **transaction)
        .await?
        .try_get("seq")?;
    sqlx::query("UPDATE shop_products SET search_seq = $2 WHERE id = $1")
        .bind(product_id)
        .bind(seq)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, shop: &str, title: &str, description: &str) -> IndexedProduct {
        IndexedProduct {
            product_id: id.into(),
            shop_id: shop.into(),
            active: true,
            title: title.into(),
            description: description.into(),
        }
    }

    #[test]
    fn latin_words_are_lower_cased_and_split_on_anything_but_letters_and_digits() {
        let found = terms("Fresh ROAST, coffee-beans 500g");
        let words: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(words, ["500g", "beans", "coffee", "fresh", "roast"]);
    }

    #[test]
    fn a_cjk_run_is_indexed_as_bigrams_and_single_characters() {
        let found = terms("云南咖啡豆");
        for term in ["云南", "南咖", "咖啡", "啡豆", "云", "咖", "豆"] {
            assert!(found.contains_key(term), "{term} missing from {found:?}");
        }
        assert_eq!(query_terms("咖啡"), ["咖啡"]);
        assert_eq!(query_terms("茶"), ["茶"]);
        assert_eq!(query_terms("Yunnan 咖啡豆"), ["yunnan", "咖啡", "啡豆"]);
    }

    #[test]
    fn a_title_hit_outranks_a_description_hit() {
        let mut catalogue = Catalogue::default();
        catalogue.apply(&product("a", "s", "Mug", "a mug for tea lovers and more"));
        catalogue.apply(&product("b", "s", "Green tea", "leaves"));
        catalogue.apply(&product("c", "s", "Spoon", "steel"));
        assert_eq!(catalogue.rank(&query_terms("tea"), None, 10), ["b", "a"]);
        assert_eq!(catalogue.rank(&query_terms("咖啡"), None, 10), Vec::<String>::new());
    }

    #[test]
    fn an_edit_replaces_what_was_indexed_and_archiving_removes_it() {
        let mut catalogue = Catalogue::default();
        catalogue.apply(&product("a", "s", "Coffee beans", ""));
        catalogue.apply(&product("a", "s", "Tea leaves", ""));
        assert!(catalogue.rank(&query_terms("coffee"), None, 10).is_empty());
        assert_eq!(catalogue.rank(&query_terms("tea"), None, 10), ["a"]);
        catalogue.apply(&IndexedProduct { active: false, ..product("a", "s", "Tea leaves", "") });
        assert!(catalogue.rank(&query_terms("tea"), None, 10).is_empty());
        assert_eq!(catalogue.live, 0);
        assert_eq!(catalogue.title_terms, 0);
    }

    #[test]
    fn compaction_keeps_the_answers() {
        let mut catalogue = Catalogue::default();
        for round in 0..5 {
            for n in 0..600 {
                let title = if (n + round) % 3 == 0 { "red tea" } else { "blue coffee" };
                catalogue.apply(&product(&format!("p{n:04}"), if n % 2 == 0 { "even" } else { "odd" }, title, "x"));
            }
        }
        assert!(catalogue.documents.len() < 2 * 600 + 1_024, "compacted: {}", catalogue.documents.len());
        let mut fresh = Catalogue::default();
        for n in 0..600 {
            let title = if (n + 4) % 3 == 0 { "red tea" } else { "blue coffee" };
            fresh.apply(&product(&format!("p{n:04}"), if n % 2 == 0 { "even" } else { "odd" }, title, "x"));
        }
        for query in ["tea", "coffee", "red coffee"] {
            assert_eq!(catalogue.rank(&query_terms(query), None, 50), fresh.rank(&query_terms(query), None, 50));
            assert_eq!(
                catalogue.rank(&query_terms(query), Some("odd"), 50),
                fresh.rank(&query_terms(query), Some("odd"), 50)
            );
        }
    }

    #[test]
    fn the_best_are_kept_in_order_with_ties_by_id() {
        let mut catalogue = Catalogue::default();
        for n in (0..50).rev() {
            catalogue.apply(&product(&format!("p{n:02}"), "s", "tea", ""));
        }
        let expected: Vec<String> = (0..5).map(|n| format!("p{n:02}")).collect();
        assert_eq!(catalogue.rank(&query_terms("tea"), None, 5), expected);
    }

    #[test]
    fn ties_past_the_id_key_and_repeated_queries_rank_the_same() {
        // Ids equal in their first 16 bytes: the tie falls through to the whole id.
        let id = |n: usize| format!("same-sixteen-pre{n:04}");
        let mut catalogue = Catalogue::default();
        for n in (0..40).rev() {
            catalogue.apply(&product(&id(n), if n % 2 == 0 { "even" } else { "odd" }, "tea", "a tea"));
        }
        let all: Vec<String> = (0..40).map(id).collect();
        let odd: Vec<String> = (0..40).filter(|n| n % 2 == 1).take(5).map(id).collect();
        for _ in 0..3 {
            assert_eq!(catalogue.rank(&query_terms("tea"), None, 7), all[..7]);
            assert_eq!(catalogue.rank(&query_terms("tea"), Some("odd"), 5), odd);
            assert!(catalogue.rank(&query_terms("tea"), Some("nobody"), 5).is_empty());
            assert_eq!(catalogue.rank(&query_terms("tea"), None, 100), all);
        }
    }
}

/// A measurement, not a check (nothing here is timed against a bound): ranking over a
/// catalogue shaped like `plaza-bench shop`'s, in-process. Run it with
/// `cargo test --release -p plaza-shop --lib ranking_at_100000_products -- --ignored --nocapture`.
#[cfg(test)]
mod measurement {
    use super::*;

    #[test]
    #[ignore = "a measurement: run it in release, by name"]
    fn ranking_at_100000_products() {
        const WORDS: &[&str] = &[
            "coffee", "beans", "tea", "green", "oolong", "mango", "phone", "case", "cable", "lamp", "desk", "chair",
            "咖啡", "茶叶", "手机", "云南", "芒果", "台灯", "椅子", "绿茶",
        ];
        let mut catalogue = Catalogue::default();
        let started = Instant::now();
        for n in 0..100_000usize {
            let (first, second) = (WORDS[n % WORDS.len()], WORDS[(n / WORDS.len() + 7 * n) % WORDS.len()]);
            catalogue.apply(&IndexedProduct {
                product_id: format!("{n:026}"),
                shop_id: "shop".into(),
                active: true,
                title: format!("{first} {second} {n}"),
                description: format!("A {second} for the benchmark, number {n}"),
            });
        }
        eprintln!("indexed 100000 products in {:?}", started.elapsed());
        let started = Instant::now();
        for word in WORDS {
            assert_eq!(catalogue.rank(&query_terms(word), None, 21).len(), 21);
        }
        eprintln!("ranked each of {} words in {:?} on average", WORDS.len(), started.elapsed() / WORDS.len() as u32);
    }
}
