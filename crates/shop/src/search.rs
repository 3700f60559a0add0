//! Catalogue search, the same on SQLite and PostgreSQL.
//!
//! Neither engine's own full-text search fits: SQLite's FTS5 `unicode61` tokenizer makes a
//! run of Chinese characters one token (so 咖啡 does not find 云南咖啡豆) and `trigram`
//! needs queries of three characters or more, while PostgreSQL has no Chinese parser; and
//! two engines ranking in their own ways would answer differently. So the shop indexes for
//! itself. [`terms`] tokenises in Rust: Latin (and other space-separated) scripts become
//! lower-cased words; a run of CJK characters becomes every overlapping character bigram
//! plus every single character, so any two-character word inside a longer run is found
//! (and a one-character query too). The postings, `(term, product_id, field, count)`, live
//! in `shop_postings`, written in the transaction that writes the product's text.
//!
//! A query is tokenised the same way, except that a CJK run of two or more characters
//! yields only its bigrams (single characters would match nearly everything). A product
//! matches when it holds any query term; candidates are read with one indexed statement
//! (at most [`CANDIDATE_POSTINGS_MAX`] postings) and ranked here, in Rust, with BM25
//! (k1 = 1.2, b = 0.75) per field, the title weighted [`TITLE_WEIGHT`] times the
//! description, ties broken by product id. The collection statistics (number of active
//! products, average field lengths, document frequencies) are read in the same snapshot,
//! so both engines feed the same numbers into the same `f64` formula and give the same
//! order.

use crate::service::{ShopError, ShopHandle};
use plaza_store::Row;
use std::collections::{BTreeMap, HashMap};

/// How much a title hit counts against a description hit.
pub const TITLE_WEIGHT: f64 = 3.0;
/// Query terms considered (the rest of a very long query is ignored).
pub const QUERY_TERMS_MAX: usize = 16;
/// Postings read for one query; a query matching more ranks the most recent of them.
pub const CANDIDATE_POSTINGS_MAX: i64 = 20_000;
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

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Title => "title",
            Self::Description => "description",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "title" => Some(Self::Title),
            "description" => Some(Self::Description),
            _ => None,
        }
    }
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

/// One posting of a candidate product.
#[derive(Debug, Clone)]
pub struct Posting {
    pub term: String,
    pub product_id: String,
    pub field: Field,
    pub count: i64,
    /// The number of terms in this field of the product.
    pub field_length: i64,
}

/// The numbers BM25 needs about the whole catalogue of active products.
#[derive(Debug, Clone, Copy)]
pub struct Collection {
    pub documents: i64,
    pub title_terms: i64,
    pub description_terms: i64,
}

/// Product ids by descending score, ties by id.
pub fn rank(postings: &[Posting], document_frequency: &HashMap<String, i64>, collection: Collection) -> Vec<String> {
    let documents = collection.documents.max(1) as f64;
    let average = |total: i64| (total as f64 / documents).max(1.0);
    let (title_average, description_average) = (average(collection.title_terms), average(collection.description_terms));
    let mut scores: BTreeMap<&str, f64> = BTreeMap::new();
    // Summed in a fixed order (by product, field and term), so the floating-point result
    // does not depend on the order the database returned rows in.
    let mut ordered: Vec<&Posting> = postings.iter().collect();
    ordered.sort_by(|a, b| (&a.product_id, a.field, &a.term).cmp(&(&b.product_id, b.field, &b.term)));
    for posting in ordered {
        let frequency = *document_frequency.get(&posting.term).unwrap_or(&1) as f64;
        let idf = ((documents - frequency + 0.5) / (frequency + 0.5) + 1.0).ln();
        let (weight, average_length) = match posting.field {
            Field::Title => (TITLE_WEIGHT, title_average),
            Field::Description => (1.0, description_average),
        };
        let count = posting.count as f64;
        let norm = K1 * (1.0 - B + B * posting.field_length as f64 / average_length);
        *scores.entry(&posting.product_id).or_insert(0.0) += weight * idf * count * (K1 + 1.0) / (count + norm);
    }
    let mut ranked: Vec<(&str, f64)> = scores.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked.into_iter().map(|(id, _)| id.to_string()).collect()
}

impl ShopHandle {
    /// The ids of active products matching any term of `query`, best first. Reads the
    /// postings and the collection's statistics in one transaction, so they agree.
    pub(crate) async fn search(&self, query: &str, shop_id: Option<&str>) -> Result<Vec<String>, ShopError> {
        let terms = query_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = plaza_store::numbered_parameters(3, terms.len());
        let mut transaction = self.inner.store.read().begin().await?;
        let stats = sqlx::query(
            // PostgreSQL sums BIGINTs as NUMERIC, which the driver reads as no integer.
            "SELECT COUNT(*) AS documents, CAST(COALESCE(SUM(title_terms), 0) AS BIGINT) AS title_terms,
                    CAST(COALESCE(SUM(description_terms), 0) AS BIGINT) AS description_terms
             FROM shop_products WHERE status = 'active'",
        )
        .fetch_one(&mut *transaction)
        .await?;
        let collection = Collection {
            documents: stats.try_get("documents")?,
            title_terms: stats.try_get("title_terms")?,
            description_terms: stats.try_get("description_terms")?,
        };
        let frequency_sql = format!(
            "SELECT p.term, COUNT(DISTINCT p.product_id) AS documents FROM shop_postings p
             JOIN shop_products pr ON pr.id = p.product_id
             WHERE pr.status = 'active' AND p.term IN ({}) GROUP BY p.term",
            plaza_store::numbered_parameters(1, terms.len())
        );
        let mut frequency_query = sqlx::query(&frequency_sql);
        for term in &terms {
            frequency_query = frequency_query.bind(term);
        }
        let mut document_frequency = HashMap::new();
        for row in frequency_query.fetch_all(&mut *transaction).await? {
            document_frequency.insert(row.try_get::<String, _>("term")?, row.try_get::<i64, _>("documents")?);
        }
        let postings_sql = format!(
            "SELECT p.term, p.product_id, p.field, p.term_count, pr.title_terms, pr.description_terms
             FROM shop_postings p JOIN shop_products pr ON pr.id = p.product_id
             WHERE pr.status = 'active' AND ($1 = '' OR pr.shop_id = $1) AND p.term IN ({placeholders})
             ORDER BY pr.created_at DESC, p.product_id, p.field, p.term LIMIT $2"
        );
        let mut postings_query = sqlx::query(&postings_sql).bind(shop_id.unwrap_or("")).bind(CANDIDATE_POSTINGS_MAX);
        for term in &terms {
            postings_query = postings_query.bind(term);
        }
        let mut postings = Vec::new();
        for row in postings_query.fetch_all(&mut *transaction).await? {
            let field = Field::parse(&row.try_get::<String, _>("field")?)
                .ok_or_else(|| ShopError::Invariant("a posting of an unknown field".into()))?;
            let field_length = match field {
                Field::Title => row.try_get("title_terms")?,
                Field::Description => row.try_get("description_terms")?,
            };
            postings.push(Posting {
                term: row.try_get("term")?,
                product_id: row.try_get("product_id")?,
                field,
                count: row.try_get("term_count")?,
                field_length,
            });
        }
        transaction.commit().await?;
        Ok(rank(&postings, &document_frequency, collection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let posting = |product: &str, field, length| Posting {
            term: "tea".into(),
            product_id: product.into(),
            field,
            count: 1,
            field_length: length,
        };
        let postings = [posting("a", Field::Description, 10), posting("b", Field::Title, 3)];
        let frequency = HashMap::from([("tea".to_string(), 2)]);
        let ranked = rank(&postings, &frequency, Collection { documents: 10, title_terms: 30, description_terms: 100 });
        assert_eq!(ranked, ["b", "a"]);
    }
}
