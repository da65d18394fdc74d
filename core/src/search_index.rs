//! The trainer's model: a BM25 search index over a user's texts (format `mnemo-bm25-v1`,
//! FORMAT.md §15.7). Built by the trainer from the memories it fetched, stored by mnemo as
//! the model's artifact (its BLAKE3 hash is the artifact hash in `model_trained`), and
//! queried by mnemo for the owner: each hit names the memory it came from, with the seq and
//! event hash that make it a member of the model's training set, so the owner can ask for
//! its inclusion proof. Pure logic: no I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::Hash32;
use crate::ids::MemoryId;
use crate::processing::SetMember;

/// The format name.
pub const BM25_FORMAT: &str = "mnemo-bm25-v1";
/// BM25's term-frequency saturation.
pub const K1: f64 = 1.2;
/// BM25's length normalisation.
pub const B: f64 = 0.75;
/// Words shorter than this are not indexed.
const MIN_WORD: usize = 2;
/// Common English words that carry no meaning for search.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "had", "has",
    "have", "he", "her", "his", "i", "in", "is", "it", "its", "of", "on", "or", "she", "that",
    "the", "their", "them", "there", "they", "this", "to", "was", "were", "will", "with", "you",
];

/// The words of `text` as the index sees them: maximal runs of letters and digits,
/// lowercased, at least two characters, without stop words.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= MIN_WORD)
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
}

/// How often each word occurs in `text`.
pub fn term_counts(text: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for w in words(text) {
        *out.entry(w).or_insert(0) += 1;
    }
    out
}

/// One indexed memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedDoc {
    /// The memory.
    pub memory: MemoryId,
    /// Its event's seq and hash (its training-set leaf).
    #[serde(flatten)]
    pub member: SetMember,
    /// Its length in indexed words.
    pub len: u32,
}

/// A BM25 index: documents, and for each term the documents holding it (index into
/// `docs`, term frequency), ascending.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchIndex {
    /// Always [`BM25_FORMAT`].
    pub format: String,
    /// The documents, in ascending seq.
    pub docs: Vec<IndexedDoc>,
    /// Postings: term -> (document index, term frequency), ascending document index.
    pub terms: BTreeMap<String, Vec<(u32, u32)>>,
}

/// One answer to a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The memory.
    pub memory: MemoryId,
    /// Its seq.
    pub seq: u64,
    /// Its event hash.
    pub event_hash: Hash32,
    /// Its BM25 score.
    pub score: f64,
    /// The query terms it matched.
    pub matched: Vec<String>,
}

/// Why an index is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Another format.
    #[error("not a {BM25_FORMAT} index: format {0:?}")]
    Format(String),
    /// A posting names a document that does not exist, or postings are out of order.
    #[error("posting of term {0:?} is out of order or names no document")]
    Posting(String),
}

impl SearchIndex {
    /// Indexes `docs`: memory, training-set leaf, term counts.
    pub fn build<'a>(
        docs: impl IntoIterator<Item = (MemoryId, SetMember, &'a BTreeMap<String, u32>)>,
    ) -> Self {
        let mut docs: Vec<_> = docs.into_iter().collect();
        docs.sort_by_key(|(_, m, _)| m.seq);
        let mut terms: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
        let mut out = Vec::with_capacity(docs.len());
        for (i, (memory, member, counts)) in docs.into_iter().enumerate() {
            for (t, n) in counts {
                terms.entry(t.clone()).or_default().push((i as u32, *n));
            }
            out.push(IndexedDoc {
                memory,
                member,
                len: counts.values().sum(),
            });
        }
        Self {
            format: BM25_FORMAT.into(),
            docs: out,
            terms,
        }
    }

    /// Checks what a stored index claims before it is queried.
    pub fn check(&self) -> Result<(), IndexError> {
        if self.format != BM25_FORMAT {
            return Err(IndexError::Format(self.format.clone()));
        }
        for (t, postings) in &self.terms {
            let ordered = postings.windows(2).all(|w| w[0].0 < w[1].0);
            if !ordered || postings.iter().any(|(d, _)| *d as usize >= self.docs.len()) {
                return Err(IndexError::Posting(t.clone()));
            }
        }
        Ok(())
    }

    /// The `k` best documents for `query` by BM25 (Robertson and Zaragoza's
    /// `idf = ln(1 + (N - n + 0.5) / (n + 0.5))`), best first, ties by ascending seq.
    /// Documents matching no query term are not answers.
    pub fn search(&self, query: &str, k: usize) -> Vec<Hit> {
        let n_docs = self.docs.len() as f64;
        if self.docs.is_empty() {
            return Vec::new();
        }
        let avg = self.docs.iter().map(|d| d.len as f64).sum::<f64>() / n_docs;
        let mut q: Vec<String> = words(query).collect();
        q.sort();
        q.dedup();
        let mut scores: BTreeMap<u32, (f64, Vec<String>)> = BTreeMap::new();
        for t in &q {
            let Some(postings) = self.terms.get(t) else {
                continue;
            };
            let n = postings.len() as f64;
            let idf = (1.0 + (n_docs - n + 0.5) / (n + 0.5)).ln();
            for (d, tf) in postings {
                let len = self.docs[*d as usize].len as f64;
                let tf = *tf as f64;
                let s = idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg.max(1.0)));
                let e = scores.entry(*d).or_insert((0.0, Vec::new()));
                e.0 += s;
                e.1.push(t.clone());
            }
        }
        let mut hits: Vec<Hit> = scores
            .into_iter()
            .map(|(d, (score, matched))| {
                let doc = &self.docs[d as usize];
                Hit {
                    memory: doc.memory,
                    seq: doc.member.seq.0,
                    event_hash: doc.member.event_hash,
                    score,
                    matched,
                }
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.seq.cmp(&b.seq)));
        hits.truncate(k);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seq;

    fn member(seq: u64) -> SetMember {
        SetMember {
            seq: Seq(seq),
            event_hash: Hash32([seq as u8; 32]),
        }
    }

    #[test]
    fn words_are_lowercased_without_stopwords_or_punctuation() {
        let w: Vec<_> = words("Go forward, ten meters! The a I x").collect();
        assert_eq!(w, ["go", "forward", "ten", "meters"]);
    }

    #[test]
    fn the_rarer_term_ranks_higher_and_unmatched_documents_are_not_answers() {
        let a = term_counts("go forward ten meters");
        let b = term_counts("go back home");
        let c = term_counts("nothing in common");
        let idx = SearchIndex::build([
            (MemoryId([1; 16]), member(3), &a),
            (MemoryId([2; 16]), member(5), &b),
            (MemoryId([3; 16]), member(7), &c),
        ]);
        idx.check().unwrap();
        let hits = idx.search("forward go", 10);
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].memory, MemoryId([1; 16]));
        assert_eq!(hits[0].matched, ["forward", "go"]);
        assert!(hits[0].score > hits[1].score);
        assert!(idx.search("meters", 10).iter().all(|h| h.seq == 3));
        assert!(idx.search("zebra", 10).is_empty());
    }

    #[test]
    fn a_posting_out_of_range_is_refused() {
        let a = term_counts("hello world");
        let mut idx = SearchIndex::build([(MemoryId([1; 16]), member(1), &a)]);
        idx.terms.get_mut("hello").unwrap().push((9, 1));
        assert!(matches!(idx.check(), Err(IndexError::Posting(_))));
        idx.format = "other".into();
        assert!(matches!(idx.check(), Err(IndexError::Format(_))));
    }
}
