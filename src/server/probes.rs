//! `/livez` and `/readyz`, as etcd answers them (Kubernetes' health-check
//! format): "ok" when every check passes; with `?verbose`, one line per
//! check (`[+]name ok`) and "<probe> check passed"; on a failure status
//! 503, `[-]name failed: reason` lines and "<probe> check failed".
//! `?exclude=name` (repeatable) leaves a check out.
//!
//! Checks: `serializable_read` (this store reads its RocksDB) for both;
//! `data_corruption` (no CORRUPT alarm is up for this member) and
//! `linearizable_read` (a read point can be taken from the leader store
//! within a second) for `/readyz`.

use std::time::Duration;

use axum::http::StatusCode;

use crate::proto::etcdserverpb::AlarmType;
use crate::router::Router;

/// How long the linearizable check waits for a read point.
const READ_POINT_WAIT: Duration = Duration::from_secs(1);

/// The checks of probe `name` ("livez" or "readyz") run against `router`,
/// answered as etcd does for `query` (the URL's query, without '?').
pub async fn answer(name: &str, query: &str, router: &Router) -> (StatusCode, String) {
    let mut results = vec![("serializable_read", serializable_read(router))];
    if name == "readyz" {
        results.push(("data_corruption", data_corruption(router)));
        results.push(("linearizable_read", linearizable_read(router).await));
    }
    format(name, query, &results)
}

fn serializable_read(router: &Router) -> Result<(), String> {
    let engine = &router.store().engine;
    engine.db.get_cf(engine.meta(), b"readyz").map(|_| ()).map_err(|e| e.to_string())
}

fn data_corruption(router: &Router) -> Result<(), String> {
    match router.alarms.list(AlarmType::Corrupt as i32).is_empty() {
        true => Ok(()),
        false => Err("alarm activated: CORRUPT".into()),
    }
}

async fn linearizable_read(router: &Router) -> Result<(), String> {
    match tokio::time::timeout(READ_POINT_WAIT, router.read_point()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("etcdserver: request timed out".into()),
    }
}

/// The answer for checks `results` of probe `name`.
fn format(name: &str, query: &str, results: &[(&str, Result<(), String>)]) -> (StatusCode, String) {
    let params: Vec<(&str, &str)> =
        query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
    let verbose = params.iter().any(|(k, _)| *k == "verbose");
    let excluded = |check: &str| params.iter().any(|(k, v)| *k == "exclude" && *v == check);
    let (mut lines, mut failed) = (String::new(), false);
    for (check, result) in results {
        match result {
            _ if excluded(check) => lines.push_str(&format!("[+]{check} excluded: ok\n")),
            Ok(()) => lines.push_str(&format!("[+]{check} ok\n")),
            Err(reason) => {
                failed = true;
                lines.push_str(&format!("[-]{check} failed: {reason}\n"));
            }
        }
    }
    match (failed, verbose) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, format!("{lines}{name} check failed\n")),
        (false, false) => (StatusCode::OK, "ok".into()),
        (false, true) => (StatusCode::OK, format!("{lines}{name} check passed\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_etcd_formats_them() {
        let ok = [("serializable_read", Ok(())), ("linearizable_read", Ok(()))];
        assert_eq!(format("readyz", "", &ok), (StatusCode::OK, "ok".into()));
        assert_eq!(
            format("readyz", "verbose", &ok),
            (StatusCode::OK, "[+]serializable_read ok\n[+]linearizable_read ok\nreadyz check passed\n".into())
        );
        let failing = [("serializable_read", Ok(())), ("linearizable_read", Err("no leader".to_string()))];
        assert_eq!(
            format("readyz", "", &failing),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "[+]serializable_read ok\n[-]linearizable_read failed: no leader\nreadyz check failed\n".into()
            )
        );
        let (status, body) = format("readyz", "exclude=linearizable_read&verbose", &failing);
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("[+]linearizable_read excluded: ok\n"), "{body}");
    }
}
