//! The command line, read as Go's `flag` package reads etcd's: `--flag
//! value`, `--flag=value`, one dash or two, a bare boolean meaning true.
//! tessera also takes `--flag true|false` for a boolean (kubeadm-style
//! manifests and the examples write them so).

use super::etcd_flags::Kind;
use super::{go_bool, ConfigError, ServeFlags, Setting, Source};

/// The command line split into the settings tessera knows and the rest.
pub struct Scanned {
    pub settings: Vec<Setting>,
    /// Arguments that are no known flag (nor its value), in order: handed
    /// to `tessera serve`'s parser, which answers `--help` and refuses
    /// anything else as it always did.
    pub passthrough: Vec<String>,
}

pub fn scan(argv: &[String], flags: &ServeFlags) -> Result<Scanned, ConfigError> {
    let mut settings = Vec::new();
    let mut passthrough = Vec::new();
    let mut rest = argv.iter().peekable();
    while let Some(arg) = rest.next() {
        let Some((name, inline)) = flag_name(arg) else {
            passthrough.push(arg.clone());
            continue;
        };
        let Some(known) = flags.lookup(name) else {
            passthrough.push(arg.clone());
            continue;
        };
        let value = match (inline, known.kind()) {
            (Some(v), _) => v.to_string(),
            (None, Kind::Bool | Kind::Legacy) => match rest.peek() {
                Some(next) if go_bool(next).is_some() => rest.next().cloned().unwrap_or_default(),
                _ => "true".to_string(),
            },
            (None, _) => rest.next().cloned().ok_or_else(|| ConfigError::MissingValue(name.to_string()))?,
        };
        settings.push(Setting { name: name.to_string(), value, source: Source::Flag });
    }
    Ok(Scanned { settings, passthrough })
}

/// `--name=value` -> (`name`, Some(`value`)); `-name` -> (`name`, None);
/// None for anything that is not a flag (`-`, `--`, a value).
fn flag_name(arg: &str) -> Option<(&str, Option<&str>)> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    if body.is_empty() || body.starts_with('-') {
        return None;
    }
    Some(match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    })
}
