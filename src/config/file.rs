//! etcd's YAML configuration file (`--config-file`): a mapping of flag
//! names to values, as etcd's `embed.ConfigFromFile` reads it. URL lists
//! are comma-separated strings, `log-outputs` and `cipher-suites` lists,
//! durations integers of nanoseconds, and the TLS files live under
//! `client-transport-security` and `peer-transport-security`. etcd skips
//! unknown keys silently; tessera warns about each.

use serde_norway::Value;

use super::etcd_flags::Kind;
use super::{ConfigError, Note, ServeFlags, Setting, Source};

/// The sections etcd reads TLS settings from.
const SECURITY: [&str; 2] = ["client-transport-security", "peer-transport-security"];

/// The settings the file `path` (its text `text`) gives.
pub fn settings(
    path: &str,
    text: &str,
    flags: &ServeFlags,
    notes: &mut Vec<Note>,
) -> Result<Vec<Setting>, ConfigError> {
    let error = |msg: String| ConfigError::File { path: path.to_string(), msg };
    let map = match serde_norway::from_str::<Value>(text).map_err(|e| error(e.to_string()))? {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(map) => map,
        _ => return Err(error("expected a mapping of flag names to values".into())),
    };
    let mut settings = Vec::new();
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            return Err(error(format!("keys are flag names, not {key:?}")));
        };
        if SECURITY.contains(&key) {
            settings.extend(security(path, key, &value, flags, notes)?);
            continue;
        }
        let Some(known) = flags.lookup(key) else {
            notes.push(Note::warn(format!("unrecognized key {key} in {path} is ignored")));
            continue;
        };
        let Some(value) = scalar(&value, known.kind()).map_err(|msg| error(format!("{key}: {msg}")))? else {
            continue; // null: unset
        };
        settings.push(Setting { name: key.to_string(), value, source: Source::File(path.to_string()) });
    }
    Ok(settings)
}

/// A value as the command line would give it; None for null.
fn scalar(value: &Value, kind: Kind) -> Result<Option<String>, String> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => b.to_string(),
        // etcd's time.Duration fields read integers as nanoseconds.
        Value::Number(n) if kind == Kind::Duration => format!("{}ns", n),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => {
            let items: Result<Vec<String>, String> =
                items.iter().map(|v| scalar(v, kind).map(Option::unwrap_or_default)).collect();
            items?.join(",")
        }
        Value::Mapping(_) | Value::Tagged(_) => return Err("expected a value, a list or null".into()),
    }))
}

/// A TLS section: its keys are the client port's flag names (`cert-file`),
/// which the peer section prefixes with `peer-` (`peer-cert-file`).
fn security(
    path: &str,
    section: &str,
    value: &Value,
    flags: &ServeFlags,
    notes: &mut Vec<Note>,
) -> Result<Vec<Setting>, ConfigError> {
    let error = |msg: String| ConfigError::File { path: path.to_string(), msg };
    let map = match value {
        Value::Mapping(map) => map,
        Value::Null => return Ok(Vec::new()),
        _ => return Err(error(format!("{section}: expected a mapping"))),
    };
    let prefix = if section == SECURITY[1] { "peer-" } else { "" };
    let mut settings = Vec::new();
    for (key, value) in map {
        let key = key.as_str().unwrap_or("?");
        let name = format!("{prefix}{key}");
        let known = SECTION_KEYS.contains(&key).then(|| flags.lookup(&name)).flatten();
        let Some(known) = known else {
            notes.push(Note::warn(format!("unrecognized key {section}.{key} in {path} is ignored")));
            continue;
        };
        if let Some(value) = scalar(value, known.kind()).map_err(|msg| error(format!("{section}.{key}: {msg}")))? {
            settings.push(Setting { name, value, source: Source::File(path.to_string()) });
        }
    }
    Ok(settings)
}

/// The keys of etcd's `securityConfig`.
const SECTION_KEYS: [&str; 7] =
    ["cert-file", "key-file", "client-cert-file", "client-key-file", "client-cert-auth", "trusted-ca-file", "auto-tls"];
