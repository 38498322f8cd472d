//! The lexical analyzer: text -> terms (docs/index.md "Lexical index", analyzer version 1).
//!
//! Steps, in order:
//! 1. Unicode word segmentation (UAX #29 word boundaries, `unicode-segmentation`); a segment is
//!    a word when it holds a letter or a digit (punctuation and spaces are dropped).
//! 2. Identifiers: words joined by a single `-`, `_` or `.` with nothing else between them
//!    (`left-pad`, `iobroker.opcua`, `snake_case`, `1.2.3`) form one identifier. An identifier
//!    of several parts gives its whole form first (joiners kept) and then every part:
//!    `left-pad` -> `left-pad`, `left`, `pad`. Leading and trailing joiners are not part of it.
//! 3. Each term is lowercased and ASCII-folded: canonical decomposition (NFKD) with combining
//!    marks removed (`é` -> `e`, `ﬁ` -> `fi`), then the Latin letters that do not decompose
//!    mapped by a fixed table (`ß` -> `ss`, `æ` -> `ae`, `ø` -> `o`, `ł` -> `l`, ...).
//! 4. Optional, per tenant ([`Analyzer`], both off by default): stop words (Lucene's English
//!    list, [`ENGLISH_STOP_WORDS`]) are dropped, then English stemming (Snowball, the
//!    `rust-stemmers` crate) reduces each remaining word made of ASCII letters and apostrophes
//!    (`running` -> `run`). Both apply to single words and to the parts of an identifier,
//!    never to an identifier's whole form (`left-pads` stays whole, its part `pads` -> `pad`).
//!
//! The same analyzer analyzes a tenant's documents and its queries, so a query term matches
//! exactly the terms a document produced. Invariant: the output is a pure function of the
//! input text, the [`Analyzer`] and [`ANALYZER_VERSION`]; any change of the rules must bump it
//! (dumps hold analyzed terms, and record the [`Analyzer`] they were analyzed with). Never
//! panics, whatever the input.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_segmentation::UnicodeSegmentation;

use rust_stemmers::{Algorithm, Stemmer};

/// Version of the analysis rules; dumps of analyzed documents carry it (a dump of another
/// version is not loaded: the index is rebuilt from storage).
pub const ANALYZER_VERSION: u8 = 1;

/// Characters that join the words of an identifier.
const JOINERS: [char; 3] = ['-', '_', '.'];

/// Longest term kept, in bytes (longer ones, such as base64 blobs, are dropped).
pub const MAX_TERM_BYTES: usize = 128;

/// Lucene's English stop words (`EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`), in order.
pub const ENGLISH_STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Whether words are stemmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Stemming {
    /// Words are kept as they are (the default).
    #[default]
    None,
    /// English Snowball stemming.
    English,
}

/// Which words are dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum StopWords {
    /// None (the default).
    #[default]
    None,
    /// [`ENGLISH_STOP_WORDS`].
    English,
}

/// The optional steps of the analysis (step 4 of the module documentation); the default
/// analyzer has neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Analyzer {
    /// Stemming of words.
    pub stemming: Stemming,
    /// Stop words dropped.
    pub stop_words: StopWords,
}

/// Analyzes `text` into terms with the default analyzer, in text order (a term may repeat).
pub fn analyze(text: &str) -> Vec<String> {
    Analyzer::default().analyze(text)
}

impl Analyzer {
    /// Analyzes `text` into terms, in text order (a term may repeat).
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut terms = Vec::new();
        self.analyze_into(text, &mut terms);
        terms
    }

    /// [`Analyzer::analyze`] appending to `terms`.
    pub fn analyze_into(&self, text: &str, terms: &mut Vec<String>) {
        self.for_each_term(text, &mut |term| terms.push(term.to_owned()));
    }

    /// Calls `emit` with each term of `text`, in text order (a term may repeat): the terms
    /// [`Analyzer::analyze`] returns, without a `String` for each.
    pub fn for_each_term(&self, text: &str, emit: &mut dyn FnMut(&str)) {
        let mut out = Output {
            analyzer: self,
            stemmer: (self.stemming == Stemming::English)
                .then(|| Stemmer::create(Algorithm::English)),
            emit,
            normalized: String::new(),
        };
        if text.is_ascii() {
            segment_ascii(text, &mut out);
        } else {
            segment(text, &mut out);
        }
    }
}

/// Where the terms of one analysis go, through the analyzer's optional steps.
struct Output<'a> {
    analyzer: &'a Analyzer,
    stemmer: Option<Stemmer>,
    emit: &'a mut dyn FnMut(&str),
    /// The identifier being emitted, normalized (reused from one identifier to the next).
    normalized: String,
}

impl Output<'_> {
    /// An identifier's whole form: kept as it is.
    fn whole(&mut self, term: &str) {
        self.push(term);
    }

    /// A word (or an identifier's part): dropped when a stop word, else stemmed.
    fn word(&mut self, word: &str) {
        if self.analyzer.stop_words == StopWords::English && ENGLISH_STOP_WORDS.contains(&word) {
            return;
        }
        match &self.stemmer {
            Some(stemmer) if word.bytes().all(|b| b.is_ascii_alphabetic() || b == b'\'') => {
                let stemmed = stemmer.stem(word);
                self.push(&stemmed);
            }
            _ => self.push(word),
        }
    }

    fn push(&mut self, term: &str) {
        if !term.is_empty() && term.len() <= MAX_TERM_BYTES {
            (self.emit)(term);
        }
    }

    /// Emits the identifier `text[span]`: its whole form when it has several parts, then its
    /// parts.
    fn flush(&mut self, text: &str, span: Option<(usize, usize)>) {
        let Some((start, end)) = span else {
            return;
        };
        let raw = &text[start..end];
        match is_plain_word(raw) {
            // Its own normalized form (no copy into the buffer).
            true => self.word(raw),
            false => self.normalized_identifier(raw),
        }
    }

    /// Emits the identifier `raw` normalized: its whole form when it has several parts, then
    /// its parts.
    fn normalized_identifier(&mut self, raw: &str) {
        let mut normalized = std::mem::take(&mut self.normalized);
        normalize_into(raw, &mut normalized);
        // Joiners are ASCII: trimmed and found by their bytes.
        let bytes = normalized.as_bytes();
        let first = bytes.iter().position(|&b| !is_joiner(b));
        let last = bytes.iter().rposition(|&b| !is_joiner(b));
        let whole = match (first, last) {
            (Some(first), Some(last)) => &normalized[first..=last],
            _ => "",
        };
        if whole.bytes().any(is_joiner) {
            let parts = whole
                .split(|c| JOINERS.contains(&c))
                .filter(|p| !p.is_empty());
            if parts.clone().nth(1).is_some() {
                self.whole(whole);
            }
            for part in parts {
                self.word(part);
            }
        } else {
            // No joiner inside: the identifier is one word.
            self.word(whole);
        }
        self.normalized = normalized;
    }
}

/// Whether the identifier `raw` is ASCII without capitals or joiners: then it is one word, its
/// own normalized form (the common case, which skips the normalization; tested against it).
fn is_plain_word(raw: &str) -> bool {
    raw.bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase() && !is_joiner(b))
}

/// Steps 1 and 2: the words and identifiers of `text`, normalized, into `out`.
fn segment(text: &str, out: &mut Output<'_>) {
    // Byte span of the identifier being built, and whether a joiner ends it.
    let mut span: Option<(usize, usize)> = None;
    let mut pending_joiner = false;
    for (start, segment) in text.split_word_bound_indices() {
        let end = start + segment.len();
        if segment.chars().any(char::is_alphanumeric) {
            match span {
                Some((first, _)) if pending_joiner => span = Some((first, end)),
                _ => {
                    out.flush(text, span.take());
                    span = Some((start, end));
                }
            }
            pending_joiner = false;
        } else if span.is_some()
            && !pending_joiner
            && segment.chars().count() == 1
            && segment.starts_with(JOINERS)
        {
            pending_joiner = true;
        } else {
            out.flush(text, span.take());
            pending_joiner = false;
        }
    }
    out.flush(text, span);
}

/// [`segment`] for an ASCII `text`, with the same result (tested): one pass over its bytes
/// finds the word segments UAX #29 gives an ASCII text (the rules of the segmentation crate's
/// ASCII path, [`ascii_word_end`]: the segments holding a letter or digit, which for ASCII is
/// what `char::is_alphanumeric` accepts), and two of them join into one identifier exactly
/// when a single joiner separates them (one character between two segments is one segment).
fn segment_ascii(text: &str, out: &mut Output<'_>) {
    let bytes = text.as_bytes();
    let mut span: Option<(usize, usize)> = None;
    let mut start = 0;
    while start < bytes.len() {
        if !is_ascii_word_byte(bytes[start]) {
            start += 1;
            continue;
        }
        let end = ascii_word_end(bytes, start);
        // A segment of underscores alone is no word.
        if bytes[start..end].iter().any(u8::is_ascii_alphanumeric) {
            span = match span {
                Some((first, last)) if start == last + 1 && is_joiner(bytes[last]) => {
                    Some((first, end))
                }
                _ => {
                    out.flush(text, span);
                    Some((start, end))
                }
            };
        }
        start = end;
    }
    out.flush(text, span);
}

/// Whether an ASCII byte is a letter, a digit or `_` (UAX #29's ALetter, Numeric and
/// ExtendNumLet in ASCII): what a word segment starts with and is made of.
fn is_ascii_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The end of the UAX #29 segment of ASCII `bytes` that starts with the word byte at `start`:
/// word bytes, and between two of them a `.`, `,`, `;` or `'` between digits (WB11, WB12) or a
/// `'`, `.` or `:` between letters (WB6, WB7).
fn ascii_word_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        let b = bytes[i];
        let infix = i + 1 < bytes.len()
            && match b {
                b'.' | b',' | b';' | b'\''
                    if bytes[i - 1].is_ascii_digit() && bytes[i + 1].is_ascii_digit() =>
                {
                    true
                }
                b'\'' | b'.' | b':' => {
                    bytes[i - 1].is_ascii_alphabetic() && bytes[i + 1].is_ascii_alphabetic()
                }
                _ => false,
            };
        if !(is_ascii_word_byte(b) || infix) {
            break;
        }
        i += 1;
    }
    i
}

/// Whether `b` is one of the [`JOINERS`] (all ASCII: a byte of UTF-8 text equals one only where
/// the character is that joiner).
fn is_joiner(b: u8) -> bool {
    matches!(b, b'-' | b'_' | b'.')
}

/// Lowercase, then ASCII folding (see the module documentation), into `out` (cleared first).
fn normalize_into(word: &str, out: &mut String) {
    out.clear();
    if word.is_ascii() {
        out.push_str(word);
        out.make_ascii_lowercase();
        return;
    }
    let lower = word.to_lowercase();
    if lower.is_ascii() {
        out.push_str(&lower);
        return;
    }
    for c in lower.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        match fold_letter(c) {
            Some(folded) => out.push_str(folded),
            None => out.extend(c.to_lowercase()),
        }
    }
}

/// Latin letters without a canonical decomposition and their ASCII forms.
fn fold_letter(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'ø' => "o",
        'ł' => "l",
        'đ' | 'ð' => "d",
        'þ' => "th",
        'ı' => "i",
        'ħ' => "h",
        'ŧ' => "t",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        analyze(text)
    }

    #[test]
    fn identifiers_are_kept_whole_and_split() {
        assert_eq!(terms("left-pad"), ["left-pad", "left", "pad"]);
        assert_eq!(
            terms("iobroker.opcua: The adapter"),
            ["iobroker.opcua", "iobroker", "opcua", "the", "adapter"]
        );
        assert_eq!(
            terms("snake_case_name"),
            ["snake_case_name", "snake", "case", "name"]
        );
        assert_eq!(
            terms("X-Clacks-Overhead HTTP-Header"),
            [
                "x-clacks-overhead",
                "x",
                "clacks",
                "overhead",
                "http-header",
                "http",
                "header"
            ]
        );
        assert_eq!(terms("v1.2.3"), ["v1.2.3", "v1", "2", "3"]);
    }

    #[test]
    fn joiners_at_the_edges_and_other_punctuation_separate() {
        assert_eq!(terms("newlines. Next"), ["newlines", "next"]);
        assert_eq!(terms("-flag_"), ["flag"]);
        assert_eq!(
            terms("@vvo/tzdb: time zones"),
            ["vvo", "tzdb", "time", "zones"]
        );
        assert_eq!(terms("a--b"), ["a", "b"]);
        assert_eq!(terms("a - b"), ["a", "b"]);
        assert_eq!(
            terms("(file-content) minifier."),
            ["file-content", "file", "content", "minifier"]
        );
    }

    #[test]
    fn lowercase_and_ascii_folding() {
        assert_eq!(terms("Crème Brûlée"), ["creme", "brulee"]);
        assert_eq!(
            terms("Straße ÆON Øresund Łódź"),
            ["strasse", "aeon", "oresund", "lodz"]
        );
        assert_eq!(
            terms("ﬁle naïve-café"),
            ["file", "naive-cafe", "naive", "cafe"]
        );
        assert_eq!(terms("JQuery"), ["jquery"]);
    }

    #[test]
    fn unicode_words_and_empty_input() {
        assert_eq!(terms(""), Vec::<String>::new());
        assert_eq!(terms("  ,;!  "), Vec::<String>::new());
        assert_eq!(terms("東京 タワー"), ["東", "京", "タワー"]);
        assert_eq!(terms("don't stop"), ["don't", "stop"]);
        assert_eq!(terms("42 items"), ["42", "items"]);
        let long = "x".repeat(MAX_TERM_BYTES + 1);
        assert_eq!(terms(&format!("{long} short")), ["short"]);
    }

    #[test]
    fn stemming_and_stop_words_are_off_by_default_and_optional() {
        let text = "The runners are running to the left-pads, a user's packages";
        assert_eq!(
            terms(text),
            [
                "the",
                "runners",
                "are",
                "running",
                "to",
                "the",
                "left-pads",
                "left",
                "pads",
                "a",
                "user's",
                "packages"
            ]
        );
        let stop = Analyzer {
            stop_words: StopWords::English,
            ..Analyzer::default()
        };
        assert_eq!(
            stop.analyze(text),
            [
                "runners",
                "running",
                "left-pads",
                "left",
                "pads",
                "user's",
                "packages"
            ]
        );
        let both = Analyzer {
            stemming: Stemming::English,
            stop_words: StopWords::English,
        };
        assert_eq!(
            both.analyze(text),
            [
                "runner",
                "run",
                "left-pads",
                "left",
                "pad",
                "user",
                "packag"
            ]
        );
        // Only words of ASCII letters are stemmed; numbers and other scripts stay.
        assert_eq!(
            both.analyze("42 Crème 東京 v1.2"),
            ["42", "creme", "東", "京", "v1.2", "v1", "2"]
        );
        assert_eq!(both.analyze("the and of"), Vec::<String>::new());
    }

    /// The terms `feed` makes an [`Output`] of the default analyzer emit.
    fn emitted(feed: impl FnOnce(&mut Output<'_>)) -> Vec<String> {
        let mut terms = Vec::new();
        {
            let mut emit = |term: &str| terms.push(term.to_owned());
            let mut out = Output {
                analyzer: &Analyzer::default(),
                stemmer: None,
                emit: &mut emit,
                normalized: String::new(),
            };
            feed(&mut out);
        }
        terms
    }

    /// The terms of `text` through [`segment`] (`ascii` false) or [`segment_ascii`].
    fn segmented(text: &str, ascii: bool) -> Vec<String> {
        emitted(|out| match ascii {
            true => segment_ascii(text, out),
            false => segment(text, out),
        })
    }

    /// Characters whose word-break classes differ for UAX #29 (letters, digits, the
    /// joiners, `'`, `:`, `,`, `;`, spaces, line ends, other punctuation).
    const ASCII_CLASSES: &[u8] = b"aZ09_.-':,; \t\r\n@/";

    /// Every ASCII text of up to 5 characters from [`ASCII_CLASSES`] gives the same terms
    /// through both segmentations.
    #[test]
    fn the_ascii_segmentation_gives_what_the_general_one_gives() {
        let n = ASCII_CLASSES.len();
        let mut checked = 0;
        for len in 0..=5u32 {
            for mut code in 0..n.pow(len) {
                let text: String = (0..len)
                    .map(|_| {
                        let c = char::from(ASCII_CLASSES[code % n]);
                        code /= n;
                        c
                    })
                    .collect();
                assert_eq!(segmented(&text, true), segmented(&text, false), "{text:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, (0..=5).map(|len| n.pow(len)).sum::<usize>());
    }

    proptest::proptest! {
        /// Longer ASCII texts (any printable character, tabs and line ends) agree too.
        #[test]
        fn longer_ascii_texts_segment_alike(text in "[ -~\t\r\n]{0,80}") {
            proptest::prop_assert_eq!(segmented(&text, true), segmented(&text, false));
        }
    }

    proptest::proptest! {
        /// An identifier taken as a plain word is what its normalization gives: itself, once.
        #[test]
        fn a_plain_word_is_its_own_normalized_form(raw in "[a-zA-Z0-9_.,;:'-]{1,12}") {
            let terms = emitted(|out| out.normalized_identifier(&raw));
            if is_plain_word(&raw) {
                proptest::prop_assert_eq!(terms, [raw]);
            }
        }
    }

    #[test]
    fn query_and_document_analysis_agree() {
        let doc = terms("left-pad: String left pad");
        for q in ["left-pad", "LEFT", "pad"] {
            for t in terms(q) {
                assert!(doc.contains(&t), "{t}");
            }
        }
    }
}
