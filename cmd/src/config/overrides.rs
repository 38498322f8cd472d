//! The overrides of the file's keys: `ALLIDB_<SECTION>_<KEY>` environment variables and
//! `--set section.key=value` (and named) flags, typed like the key's default.

use super::{ConfigError, ENV_PREFIX, SECTIONS};

/// One override of one key.
pub(super) struct Override {
    pub(super) origin: String,
    pub(super) section: String,
    pub(super) key: String,
    value: String,
}

impl Override {
    pub(super) fn path(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }
}

/// The overrides of the environment: `ALLIDB_<SECTION>_<KEY>` with a known section.
pub(super) fn env_overrides(env: &[(String, String)]) -> Vec<Override> {
    let mut overrides: Vec<Override> = env
        .iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            let (section, key) = rest.split_once('_')?;
            let section = section.to_ascii_lowercase();
            SECTIONS.contains(&section.as_str()).then(|| Override {
                origin: name.clone(),
                section,
                key: key.to_ascii_lowercase(),
                value: value.clone(),
            })
        })
        .collect();
    // Environment order is arbitrary; make the result independent of it.
    overrides.sort_by(|a, b| a.origin.cmp(&b.origin));
    overrides
}

pub(super) fn flag_overrides(
    flags: &[(String, String, String)],
) -> Result<Vec<Override>, ConfigError> {
    flags
        .iter()
        .map(|(flag, path, value)| {
            let origin = format!("{flag} {path}");
            let (section, key) = path.split_once('.').ok_or_else(|| ConfigError::Override {
                origin: origin.clone(),
                message: "the key must be section.key".to_owned(),
            })?;
            if !SECTIONS.contains(&section) {
                return Err(ConfigError::Override {
                    origin,
                    message: format!(
                        "unknown section `{section}`, expected one of {}",
                        SECTIONS.join(", ")
                    ),
                });
            }
            Ok(Override {
                origin,
                section: section.to_owned(),
                key: key.to_owned(),
                value: value.clone(),
            })
        })
        .collect()
}

/// The TOML value of an override, typed like the key's default (a list takes comma-separated
/// items; a key without a default value, i.e. an optional path or address, takes a string; an
/// unknown key is reported by deserialization).
pub(super) fn typed_value(
    defaults: &toml::Table,
    o: &Override,
) -> Result<toml::Value, ConfigError> {
    let default = defaults
        .get(&o.section)
        .and_then(|section| section.get(&o.key));
    let bad = |expected: &str| ConfigError::Key {
        key: o.path(),
        origin: format!(" (from {})", o.origin),
        message: format!("expected {expected}, got {:?}", o.value),
    };
    let raw = o.value.trim();
    Ok(match default {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.parse().map_err(|_| bad("an integer"))?)
        }
        Some(toml::Value::Float(_)) => {
            toml::Value::Float(raw.parse().map_err(|_| bad("a number"))?)
        }
        Some(toml::Value::Array(_)) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
        Some(toml::Value::Boolean(_)) => match raw.to_ascii_lowercase().as_str() {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            _ => return Err(bad("true or false")),
        },
        _ => toml::Value::String(o.value.clone()),
    })
}
