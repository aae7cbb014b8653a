//! etcd's auto-compaction flags (docs/ops.md): with periodic mode and a
//! retention of 2 s, the history older than that is compacted by itself
//! (a read at an early revision gets etcd's "compacted" error) while
//! current reads keep working; an unknown mode refuses to start, as
//! etcd's flag parsing does. Revision mode's 5-minute schedule is unit
//! tested (`router::auto_compact`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{connect, Tessera};
use etcd_client::GetOptions;

#[test]
fn periodic_auto_compaction_drops_history_older_than_the_retention() {
    let node = Tessera::start(&["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = connect(node.endpoint()).await;
        let first = c.put("k", "0", None).await.unwrap().header().unwrap().revision();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut i = 0;
        loop {
            i += 1;
            c.put("k", format!("{i}"), None).await.unwrap();
            let old = c.get("k", Some(GetOptions::new().with_revision(first))).await;
            match old {
                Err(e) if e.to_string().contains("required revision has been compacted") => break,
                Err(e) => panic!("reading revision {first}: {e}"),
                Ok(_) => assert!(Instant::now() < deadline, "revision {first} still readable after 30 s"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let now = c.get("k", None).await.unwrap();
        assert_eq!(now.kvs()[0].value(), format!("{i}").as_bytes(), "the newest value survives");
        println!("revision {first} compacted after {i} puts");
    });
}

#[test]
fn an_unknown_auto_compaction_mode_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen-client-urls", "http://127.0.0.1:0", "--auto-compaction-mode", "hourly"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait_exit(&mut child, Duration::from_secs(20), "tessera with --auto-compaction-mode hourly");
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    // Logged as etcd's JSON line (the default format): the message is its msg.
    let said = common::log_messages(&err);
    assert!(said.iter().any(|m| m == "unknown auto-compaction-mode \"hourly\""), "{err}");
}
