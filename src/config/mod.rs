//! Starting tessera as etcd is started: every etcd 3.5 server flag on the
//! command line, the same settings from `ETCD_*` environment variables or
//! from etcd's YAML `--config-file`, with etcd's precedence
//! (docs/ops.md, "Starting tessera as etcd").
//!
//! [`resolve`] is pure: it takes the arguments, the environment and a
//! file reader, and returns the arguments for `tessera serve`'s own parser
//! (clap) with the lines to log once logging is up; it decides, the caller
//! prints. How settings combine, as etcd 3.5 does:
//! - a config file (`--config-file`, else `ETCD_CONFIG_FILE`) is the whole
//!   configuration: every other flag and `ETCD_*` variable is ignored;
//! - otherwise flags and `ETCD_*` variables are merged; the same setting
//!   from both refuses to start (etcd's "conflicting environment variable");
//! - a flag given twice: the last one counts (Go's `flag` package).
//!
//! Keys are etcd's flag names and tessera's own `serve` flag names.

mod args;
mod env;
pub mod etcd_flags;
mod file;
pub mod listen;
pub mod log;
pub mod raft;
pub mod tls;

use std::fmt;

use etcd_flags::{EtcdFlag, Kind, Treatment};

/// Where a setting came from: named so in messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(String),
    File(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub source: Source,
}

impl fmt::Display for Setting {
    /// As the operator wrote it: `--name`, `ETCD_NAME`, `name in etcd.yaml`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Flag => write!(f, "--{}", self.name),
            Source::Env(var) => write!(f, "{var}"),
            Source::File(path) => write!(f, "{} in {path}", self.name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// One line to log at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub level: Level,
    pub msg: String,
}

impl Note {
    fn warn(msg: impl Into<String>) -> Note {
        Note { level: Level::Warn, msg: msg.into() }
    }
    fn info(msg: impl Into<String>) -> Note {
        Note { level: Level::Info, msg: msg.into() }
    }
}

/// Why tessera refuses to start; each message is etcd's where etcd has one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("flag needs an argument: --{0}")]
    MissingValue(String),
    #[error("invalid boolean value {value:?} for {setting}: parse error")]
    BadBool { setting: String, value: String },
    #[error("invalid duration {value:?} for {setting}")]
    BadDuration { setting: String, value: String },
    #[error(
        "conflicting environment variable {0:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
    )]
    Shadowed(String),
    #[error("{feature} is not supported yet ({setting}): {instead}")]
    Unsupported { feature: &'static str, setting: String, instead: &'static str },
    #[error("config file {path}: {msg}")]
    File { path: String, msg: String },
}

/// The names `tessera serve` parses itself: its own flags (etcd's honoured
/// ones among them). Everything else is looked up in etcd's table.
pub struct ServeFlags(pub Vec<String>);

/// What a flag name is to the resolver.
#[derive(Clone, Copy)]
enum Known {
    Etcd(&'static EtcdFlag),
    /// A `tessera serve` flag etcd does not have; it takes a value.
    Tessera,
}

impl Known {
    fn kind(self) -> Kind {
        match self {
            Known::Etcd(f) => f.kind,
            Known::Tessera => Kind::Value,
        }
    }
}

impl ServeFlags {
    fn lookup(&self, name: &str) -> Option<Known> {
        etcd_flags::lookup(name).map(Known::Etcd).or_else(|| self.0.iter().any(|n| n == name).then_some(Known::Tessera))
    }
}

/// What [`resolve`] decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    /// For `tessera serve`'s parser: each honoured setting as
    /// `--name=value`, then the arguments tessera does not know, as given
    /// (its parser refuses them as it always did).
    pub args: Vec<String>,
    /// One line per ignored flag, variable or key, in the order given.
    pub notes: Vec<Note>,
}

/// Resolves the command line `argv` (without the program name and
/// subcommand), the environment `env` and, if one is named, the config file
/// (read with `read`) into `tessera serve`'s arguments.
pub fn resolve(
    argv: &[String],
    env: &[(String, String)],
    flags: &ServeFlags,
    read: &dyn Fn(&str) -> std::io::Result<String>,
) -> Result<Resolved, ConfigError> {
    let scanned = args::scan(argv, flags)?;
    let mut notes = Vec::new();
    let from_flag = scanned.settings.iter().rev().find(|s| s.name == "config-file").map(|s| s.value.clone());
    let from_env = env.iter().find(|(k, v)| k == "ETCD_CONFIG_FILE" && !v.is_empty()).map(|(_, v)| v.clone());
    let settings = match from_flag.or(from_env).filter(|p| !p.is_empty()) {
        Some(path) => {
            let text = read(&path).map_err(|e| ConfigError::File { path: path.clone(), msg: e.to_string() })?;
            let settings = file::settings(&path, &text, flags, &mut notes)?;
            notes.push(ignoring_others(&path, &scanned.settings, env));
            settings
        }
        None => {
            let mut settings = scanned.settings;
            settings.extend(env::settings(env, flags, &settings, &mut notes)?);
            settings
        }
    };
    let mut args = Vec::new();
    for setting in last_of_each(settings) {
        apply(setting, flags, &mut args, &mut notes)?;
    }
    args.extend(scanned.passthrough);
    Ok(Resolved { args, notes })
}

/// etcd's line for a config file; it names what was left out, if anything.
fn ignoring_others(path: &str, flagged: &[Setting], env: &[(String, String)]) -> Note {
    let mut ignored: Vec<String> =
        flagged.iter().filter(|s| s.name != "config-file").map(|s| format!("--{}", s.name)).collect();
    ignored
        .extend(env.iter().filter(|(k, _)| k.starts_with("ETCD_") && k != "ETCD_CONFIG_FILE").map(|(k, _)| k.clone()));
    if ignored.is_empty() {
        return Note::info(format!("loaded server configuration from {path}"));
    }
    Note::warn(format!(
        "loaded server configuration from {path}; other command line flags and environment variables are ignored: {}",
        ignored.join(", ")
    ))
}

/// The settings with, for a name given more than once, only the last.
fn last_of_each(settings: Vec<Setting>) -> Vec<Setting> {
    let mut out: Vec<Setting> = Vec::with_capacity(settings.len());
    for s in settings {
        out.retain(|o| o.name != s.name);
        out.push(s);
    }
    out
}

/// Passes an honoured setting on, notes an ignored one, refuses an
/// unsupported one that asks for its feature.
fn apply(s: Setting, flags: &ServeFlags, args: &mut Vec<String>, notes: &mut Vec<Note>) -> Result<(), ConfigError> {
    // Settings are made of known names only.
    let Some(known) = flags.lookup(&s.name) else { return Ok(()) };
    let value = normalize(&s, known.kind())?;
    let treatment = match known {
        Known::Etcd(f) => f.treatment,
        Known::Tessera => Treatment::Honoured,
    };
    match treatment {
        Treatment::Resolver => {}
        // An empty value leaves tessera's default, as an unset flag.
        Treatment::Honoured if value.is_empty() => {}
        Treatment::Honoured => args.push(format!("--{}={value}", s.name)),
        Treatment::Ignored(instead) => notes.push(Note::warn(format!("{s} is ignored: {instead}"))),
        Treatment::Unsupported { feature, instead } if asks_for(known.kind(), &value) => {
            return Err(ConfigError::Unsupported { feature, setting: s.to_string(), instead });
        }
        Treatment::Unsupported { instead, .. } => notes.push(Note::warn(format!("{s} is ignored: {instead}"))),
    }
    Ok(())
}

/// Whether a value of an unsupported flag asks for its feature.
fn asks_for(kind: Kind, value: &str) -> bool {
    match kind {
        Kind::Bool => value == "true",
        _ => !value.is_empty() && value != "off",
    }
}

/// The value as `tessera serve` reads it: booleans `true`/`false`, Go
/// durations in milliseconds.
fn normalize(s: &Setting, kind: Kind) -> Result<String, ConfigError> {
    let value = s.value.trim();
    match kind {
        Kind::Bool => match go_bool(value) {
            Some(b) => Ok(b.to_string()),
            None => Err(ConfigError::BadBool { setting: s.to_string(), value: value.to_string() }),
        },
        Kind::Duration if !value.is_empty() => match go_duration_ms(value) {
            Some(ms) => Ok(format!("{ms}ms")),
            None => Err(ConfigError::BadDuration { setting: s.to_string(), value: value.to_string() }),
        },
        _ => Ok(value.to_string()),
    }
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A Go duration (`1m30s`, `500ms`, `2h`, `0`) in milliseconds.
fn go_duration_ms(s: &str) -> Option<f64> {
    if s == "0" {
        return Some(0.0);
    }
    let mut rest = s;
    let mut total = 0.0;
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).filter(|&i| i > 0)?;
        let (number, tail) = rest.split_at(split);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let ms_per_unit = match unit {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * ms_per_unit;
        rest = tail;
    }
    Some(total)
}

#[cfg(test)]
mod tests;
