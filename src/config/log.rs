//! Logging as etcd's flags ask: `--logger` (zap, the only one etcd 3.5
//! has), `--log-outputs` (`default`/`stderr`, `stdout`, files, several
//! comma-separated), `--log-level`, and etcd 3.6's `--log-format json|console`.
//! JSON lines carry zap's field names as etcd writes them: `level`, `ts`,
//! `caller`, `msg`, then the event's fields. JSON is the default, as
//! etcd 3.5's zap logger writes (etcd 3.6 names it `--log-format json`);
//! `--log-format console` writes human-readable text.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// etcd's `--log-outputs` value meaning stderr; it cannot be combined.
const DEFAULT_OUTPUT: &str = "default";
/// etcd writes there to journald directly; tessera writes stderr, which
/// systemd passes to the journal.
const JOURNAL_OUTPUT: &str = "systemd/journal";

pub struct LogOptions<'a> {
    pub logger: &'a str,
    pub outputs: &'a [String],
    pub format: &'a str,
    pub level: &'a str,
}

/// Sets up the global subscriber; returns lines to log once it is up.
/// `RUST_LOG`, when set, overrides `--log-level`.
pub fn init(opts: &LogOptions) -> Result<Vec<super::Note>, String> {
    match opts.logger {
        "zap" | "" => {}
        "capnslog" => return Err("--logger=capnslog is removed in v3.5".into()),
        other => return Err(format!("unknown logger option {other:?}")),
    }
    let json = match opts.format {
        "json" | "" => true,
        "console" => false,
        other => return Err(format!("unknown log format: {other}, supported values json, console")),
    };
    let (outputs, notes) = open_outputs(opts.outputs)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(tracing_level(opts.level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(outputs.clone());
    let installed = if json {
        builder.event_format(EtcdJson).try_init()
    } else {
        builder.with_ansi(outputs.is_terminal()).try_init()
    };
    installed.map_err(|e| e.to_string())?;
    Ok(notes)
}

/// etcd's level names as tracing filters; anything else (a tracing
/// directive such as `tessera=debug`) as it is.
fn tracing_level(level: &str) -> &str {
    match level {
        "dpanic" | "panic" | "fatal" => "error",
        other => other,
    }
}

/// Where log lines go: every one to each output.
#[derive(Clone)]
pub struct Outputs(Arc<Vec<Output>>);

enum Output {
    Stderr,
    Stdout,
    File(Mutex<File>),
}

fn open_outputs(names: &[String]) -> Result<(Outputs, Vec<super::Note>), String> {
    let names: Vec<&str> = names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    if names.len() > 1 && names.contains(&DEFAULT_OUTPUT) {
        return Err(format!("multi logoutput for {DEFAULT_OUTPUT:?} is not supported yet"));
    }
    let mut notes = Vec::new();
    let mut outputs = Vec::new();
    for name in names.iter().copied() {
        outputs.push(match name {
            DEFAULT_OUTPUT | "stderr" => Output::Stderr,
            "stdout" => Output::Stdout,
            JOURNAL_OUTPUT => {
                notes.push(super::Note::warn(format!(
                    "--log-outputs {JOURNAL_OUTPUT}: tessera logs to stderr, which systemd passes to the journal"
                )));
                Output::Stderr
            }
            path => {
                let file = File::options().create(true).append(true).open(path);
                Output::File(Mutex::new(file.map_err(|e| format!("opening log output {path}: {e}"))?))
            }
        });
    }
    if outputs.is_empty() {
        outputs.push(Output::Stderr);
    }
    Ok((Outputs(Arc::new(outputs)), notes))
}

impl Outputs {
    /// Colours only for a terminal that is the only output.
    fn is_terminal(&self) -> bool {
        matches!(self.0.as_slice(), [Output::Stderr]) && io::IsTerminal::is_terminal(&io::stderr())
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = OutputsWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        OutputsWriter(&self.0)
    }
}

/// Writes each buffer (one formatted line) to every output.
pub struct OutputsWriter<'a>(&'a [Output]);

impl Write for OutputsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for output in self.0 {
            match output {
                Output::Stderr => io::stderr().write_all(buf)?,
                Output::Stdout => io::stdout().write_all(buf)?,
                Output::File(f) => f.lock().unwrap_or_else(|e| e.into_inner()).write_all(buf)?,
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One JSON object per line, with zap's field names as etcd sets them.
pub struct EtcdJson;

impl<S, N> FormatEvent<S, N> for EtcdJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(128);
        line.push('{');
        push_pair(&mut line, "level", &zap_level(meta.level()).into());
        push_pair(&mut line, "ts", &utc_timestamp(SystemTime::now()).into());
        if let (Some(file), Some(number)) = (meta.file(), meta.line()) {
            push_pair(&mut line, "caller", &format!("{}:{number}", short_caller(file)).into());
        }
        push_pair(&mut line, "msg", &fields.msg.unwrap_or_default().into());
        for (key, value) in &fields.rest {
            push_pair(&mut line, key, value);
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

fn push_pair(line: &mut String, key: &str, value: &serde_json::Value) {
    if !line.ends_with('{') {
        line.push(',');
    }
    let key = serde_json::Value::from(key);
    let _ = write!(line, "{key}:{value}");
}

/// The message apart, the other fields as JSON values in order.
#[derive(Default)]
struct JsonFields {
    msg: Option<String>,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.msg = Some(value.as_str().map_or_else(|| value.to_string(), str::to_string));
        } else {
            self.rest.push((field.name(), value));
        }
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
}

/// zap's lowercase level names (zap has no trace).
fn zap_level(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        _ => "debug",
    }
}

/// zap's short caller: the file's directory and name (`router/mod.rs`).
fn short_caller(file: &str) -> &str {
    match file.rmatch_indices('/').nth(1) {
        Some((i, _)) => &file[i + 1..],
        None => file,
    }
}

/// etcd's timestamp layout (`2006-01-02T15:04:05.000000Z0700`), in UTC.
pub fn utc_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_in_etcds_layout() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(utc_timestamp(t), "2023-11-14T22:13:20.123456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn callers_are_short_as_zaps() {
        assert_eq!(short_caller("src/router/mod.rs"), "router/mod.rs");
        assert_eq!(short_caller("main.rs"), "main.rs");
    }

    #[test]
    fn outputs_refuse_default_among_others() {
        let err = open_outputs(&["default".into(), "stdout".into()]).err().unwrap();
        assert_eq!(err, "multi logoutput for \"default\" is not supported yet");
    }
}
