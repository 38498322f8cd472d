//! The lexical (BM25) keys of `[index]`: whether every tenant has a lexical index, its analyzer
//! and BM25 parameters (`lexical_enabled`, `lexical_k1`, `lexical_b`, `lexical_stemming`,
//! `lexical_stop_words`) and those of the tenants
//! listed in `lexical_tenants` (docs/configuration.md "Lexical search"), turned into the
//! store's [`LexicalSettings`].
//!
//! Rules: `k1` is finite and in 0..=[`MAX_K1`], `b` in [0, 1]; a `lexical_tenants` item is
//! `tenant=setting:value ...` (settings separated by spaces, each of `enabled`, `k1`, `b`,
//! `stemming`, `stop_words` at most once, at least one), each tenant listed once; what an item does not
//! set is the node's default. Every refusal names the key and, for an item, the item.

use allidb_index::lexical::analyzer::{Analyzer, Stemming, StopWords};
use allidb_index::lexical::{Bm25Params, LexicalOptions, LexicalSettings};
use serde::{Deserialize, Serialize};

use super::IndexConfig;

/// Largest BM25 `k1` accepted (Lucene's default is 1.2; beyond a few, term frequency no longer
/// saturates in any real document).
pub const MAX_K1: f64 = 100.0;

/// `index.lexical_stemming`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemmingName {
    /// Words are kept as they are.
    #[default]
    None,
    /// English Snowball stemming.
    English,
}

/// `index.lexical_stop_words`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopWordsName {
    /// No word is dropped.
    #[default]
    None,
    /// Lucene's English stop words are dropped.
    English,
}

impl StemmingName {
    fn parse(value: &str) -> Option<Stemming> {
        match value {
            "none" => Some(Stemming::None),
            "english" => Some(Stemming::English),
            _ => None,
        }
    }
}

impl StopWordsName {
    fn parse(value: &str) -> Option<StopWords> {
        match value {
            "none" => Some(StopWords::None),
            "english" => Some(StopWords::English),
            _ => None,
        }
    }
}

/// A refused lexical key: the key and why.
pub type Refusal = (&'static str, String);

fn check_k1(k1: f64) -> Result<f64, String> {
    match k1.is_finite() && (0.0..=MAX_K1).contains(&k1) {
        true => Ok(k1),
        false => Err(format!("k1 must be in [0, {MAX_K1}], got {k1}")),
    }
}

fn check_b(b: f64) -> Result<f64, String> {
    match (0.0..=1.0).contains(&b) {
        true => Ok(b),
        false => Err(format!("b must be in [0, 1], got {b}")),
    }
}

impl IndexConfig {
    /// The lexical options of every tenant, or the key that is malformed and why.
    pub fn lexical(&self) -> Result<LexicalSettings, Refusal> {
        let default = LexicalOptions {
            enabled: self.lexical_enabled,
            bm25: Bm25Params {
                k1: check_k1(self.lexical_k1).map_err(|m| ("index.lexical_k1", m))?,
                b: check_b(self.lexical_b).map_err(|m| ("index.lexical_b", m))?,
            },
            analyzer: Analyzer {
                stemming: match self.lexical_stemming {
                    StemmingName::None => Stemming::None,
                    StemmingName::English => Stemming::English,
                },
                stop_words: match self.lexical_stop_words {
                    StopWordsName::None => StopWords::None,
                    StopWordsName::English => StopWords::English,
                },
            },
            ..LexicalOptions::default()
        };
        let mut settings = LexicalSettings::uniform(default);
        for item in &self.lexical_tenants {
            let (tenant, options) =
                tenant_item(item, &settings.default).map_err(|m| ("index.lexical_tenants", m))?;
            if settings.tenants.insert(tenant.clone(), options).is_some() {
                return Err((
                    "index.lexical_tenants",
                    format!("tenant {tenant:?} is listed twice"),
                ));
            }
        }
        Ok(settings)
    }
}

/// One `lexical_tenants` item: the tenant and its options (`default`'s where it sets none).
fn tenant_item(item: &str, default: &LexicalOptions) -> Result<(String, LexicalOptions), String> {
    let (tenant, settings) = item
        .split_once('=')
        .ok_or_else(|| format!("{item:?} is not tenant=setting:value ..."))?;
    let tenant = tenant.trim();
    allidb_storage::key::validate_tenant(tenant)
        .map_err(|e| format!("{item:?}: tenant id: {e}"))?;
    let mut options = default.clone();
    let mut seen: Vec<&str> = Vec::new();
    for setting in settings.split_whitespace() {
        let (name, value) = setting
            .split_once(':')
            .ok_or_else(|| format!("{item:?}: {setting:?} is not setting:value"))?;
        if seen.contains(&name) {
            return Err(format!("{item:?}: {name} is set twice"));
        }
        seen.push(name);
        let bad = |m: String| format!("{item:?}: {m}");
        match name {
            "enabled" => {
                options.enabled = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("enabled {value:?} is not true or false"))),
                };
            }
            "k1" => {
                let k1 = value
                    .parse()
                    .map_err(|_| bad(format!("k1 {value:?} is not a number")))?;
                options.bm25.k1 = check_k1(k1).map_err(bad)?;
            }
            "b" => {
                let b = value
                    .parse()
                    .map_err(|_| bad(format!("b {value:?} is not a number")))?;
                options.bm25.b = check_b(b).map_err(bad)?;
            }
            "stemming" => {
                options.analyzer.stemming = StemmingName::parse(value)
                    .ok_or_else(|| bad(format!("stemming {value:?} is not none or english")))?;
            }
            "stop_words" => {
                options.analyzer.stop_words = StopWordsName::parse(value)
                    .ok_or_else(|| bad(format!("stop_words {value:?} is not none or english")))?;
            }
            other => {
                return Err(bad(format!(
                    "unknown setting {other:?} (enabled, k1, b, stemming, stop_words)"
                )));
            }
        }
    }
    if seen.is_empty() {
        return Err(format!(
            "{item:?} sets nothing (enabled, k1, b, stemming, stop_words)"
        ));
    }
    Ok((tenant.to_owned(), options))
}
