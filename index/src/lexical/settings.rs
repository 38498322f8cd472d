//! The lexical options of every tenant of a store: one default and per-tenant replacements
//! (docs/configuration.md `index.lexical_tenants`), so each tenant's index analyzes and scores
//! with its own BM25 parameters and analyzer.
//!
//! Invariant: a tenant's options are the same wherever they are asked for (the commit path,
//! queries, dumps, rebuilds), for as long as the store is open. Must never: hold state that
//! changes after the store opens.

use std::collections::BTreeMap;

use super::LexicalOptions;
use crate::error::{Error, Result};

/// Lexical options by tenant (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LexicalSettings {
    /// The options of every tenant not listed in `tenants`.
    pub default: LexicalOptions,
    /// The tenants with options of their own.
    pub tenants: BTreeMap<String, LexicalOptions>,
}

impl LexicalSettings {
    /// Every tenant with `options`.
    pub fn uniform(options: LexicalOptions) -> Self {
        Self {
            default: options,
            tenants: BTreeMap::new(),
        }
    }

    /// The options of `tenant`.
    pub fn of(&self, tenant: &str) -> &LexicalOptions {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    /// Checks every tenant's options (the error names the tenant).
    pub fn validate(&self) -> Result<()> {
        self.default.validate()?;
        for (tenant, options) in &self.tenants {
            options.validate().map_err(|e| {
                Error::invalid(format!(
                    "lexical options of tenant {tenant:?}: {}",
                    e.cause()
                ))
            })?;
        }
        Ok(())
    }
}
