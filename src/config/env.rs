//! `ETCD_*` environment variables, as etcd 3.5's `flags.SetFlagsFromEnv`
//! reads them: flag `some-flag` comes from `ETCD_SOME_FLAG`; an empty
//! variable counts as unset; one whose flag is also on the command line
//! refuses to start; an unknown one is warned about.

use super::{ConfigError, Note, ServeFlags, Setting, Source};

/// The settings the environment gives, with their lines to log.
pub fn settings(
    env: &[(String, String)],
    flags: &ServeFlags,
    flagged: &[Setting],
    notes: &mut Vec<Note>,
) -> Result<Vec<Setting>, ConfigError> {
    let mut vars: Vec<&(String, String)> = env.iter().filter(|(k, _)| k.starts_with("ETCD_")).collect();
    vars.sort();
    let mut settings = Vec::new();
    for (var, value) in vars {
        let name = flag_of(var);
        if var == "ETCD_CONFIG_FILE" {
            continue; // read before any other setting
        }
        if var == "ETCD_VERSION" {
            // etcd unsets it too: container images set it to their version.
            notes.push(Note::warn(format!("cannot set special environment variable {var}={value}")));
            continue;
        }
        if flags.lookup(&name).is_none() {
            notes.push(Note::warn(format!("unrecognized environment variable {var}={value}")));
            continue;
        }
        if value.is_empty() {
            continue;
        }
        if flagged.iter().any(|s| s.name == name) {
            return Err(ConfigError::Shadowed(var.clone()));
        }
        notes.push(Note::info(format!("recognized and used environment variable {var}={value}")));
        settings.push(Setting { name, value: value.clone(), source: Source::Env(var.clone()) });
    }
    Ok(settings)
}

/// `ETCD_SOME_FLAG` -> `some-flag`.
fn flag_of(var: &str) -> String {
    var.strip_prefix("ETCD_").unwrap_or(var).to_ascii_lowercase().replace('_', "-")
}
