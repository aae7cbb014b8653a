//! `tessera bench` workloads, each run briefly against an in-process
//! tessera (and, where tessera has no service yet, against etcd 3.4): the
//! summary is well-formed and the operations really happened.

mod common;
mod inproc;

use std::time::Duration;

use clap::Parser;
use etcd_client::GetOptions;
use inproc::InProc;
use tessera::bench::workloads::Workload;
use tessera::bench::Summary;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

fn workload(args: &str, endpoint: &str) -> Workload {
    let mut argv = vec!["bench".to_string()];
    argv.extend(args.split_whitespace().map(str::to_string));
    argv.extend(["--endpoints", endpoint, "--no-progress", "--clients", "8", "--conns", "2"].map(str::to_string));
    Cli::parse_from(argv).workload
}

fn well_formed(s: &Summary, name: &str, ops: u64) {
    assert_eq!(s.workload, name);
    assert_eq!(s.ops + s.error_count(), ops, "{}", s.text());
    assert_eq!(s.latency_us.len(), ops, "one latency per operation");
    assert!(
        (s.ops == 0 || s.ops_per_sec() > 0.0)
            && s.ms(50.0) > 0.0
            && s.ms(50.0) <= s.ms(99.0)
            && s.ms(99.0) <= s.ms(100.0)
    );
    let json = s.json();
    assert!(
        json.starts_with(&format!("{{\"workload\":\"{name}\"")) && json.ends_with('}') && !json.contains('\n'),
        "{json}"
    );
    assert!(s.hgrm().lines().count() > 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kv_workload_runs_against_tessera() {
    tokio::time::timeout(Duration::from_secs(120), async {
        // Regions cut inside the benchmark's key space (8-byte keys 0..1000).
        let node = InProc::start(&["00000250", "00000500", "00000750"]).await;
        let ep = node.endpoint.clone();
        let mut c = node.client().await;
        let rev = |r: &etcd_client::GetResponse| r.header().unwrap().revision();
        let count = |c: &mut etcd_client::Client| {
            let mut c = c.clone();
            async move { c.get("\0", Some(GetOptions::new().with_from_key().with_count_only())).await.unwrap() }
        };

        let put =
            workload("put --total 300 --key-space-size 1000 --sequential-keys --seed 1", &ep).run(1).await.unwrap();
        well_formed(&put[0], "put", 300);
        let after_put = count(&mut c).await;
        assert_eq!(after_put.count(), 300, "300 sequential keys were written");
        assert_eq!(rev(&after_put), 301, "each put took one revision");

        for (args, name) in [
            ("range --total 200 --key-space-size 1000", "range-l-1"),
            ("range --consistency s --range-keys 10 --total 200 --key-space-size 1000", "range-s-10"),
        ] {
            let before = rev(&count(&mut c).await);
            let s = workload(args, &ep).run(2).await.unwrap();
            well_formed(&s[0], name, 200);
            assert_eq!(s[0].error_count(), 0, "{}", s[0].text());
            // The preload wrote the whole key space (once more).
            assert_eq!(rev(&count(&mut c).await), before + 1000, "{name} preloaded 1000 keys");
        }

        let before = rev(&count(&mut c).await);
        let cas = workload("txn-put --total 200 --key-space-size 20 --seed 3", &ep).run(3).await.unwrap();
        well_formed(&cas[0], "txn-put-mod", 200);
        assert_eq!(cas[0].error_count(), 0);
        let advanced = rev(&count(&mut c).await) - before;
        assert!(advanced > 0 && advanced <= 200, "compare-and-set txns wrote {advanced} times");

        let txn =
            workload("txn-mixed --txn-ops 4 --total 100 --key-space-size 200 --seed 4", &ep).run(4).await.unwrap();
        well_formed(&txn[0], "txn-mixed-4", 100);
        // Spread over the whole key space the txns cross regions: each
        // commits at one revision.
        let before = rev(&count(&mut c).await);
        let spread =
            workload("txn-mixed --txn-ops 4 --spread --total 50 --key-space-size 1000", &ep).run(5).await.unwrap();
        well_formed(&spread[0], "txn-mixed-4-spread", 50);
        assert_eq!(spread[0].error_count(), 0, "{}", spread[0].text());
        assert_eq!(rev(&count(&mut c).await), before + 50, "one revision per cross-region txn");

        let mixed = workload("mixed --ratio 1:1 --total 100 --key-space-size 100", &ep).run(6).await.unwrap();
        well_formed(&mixed[0], "mixed-1:1", 100);
        assert_eq!(mixed[0].error_count(), 0);

        let open = workload("put --rate 400 --duration 500ms --key-space-size 50 --key-prefix open/", &ep)
            .run(7)
            .await
            .unwrap();
        assert!(open[0].ops >= 100 && open[0].ops <= 260, "about 200 puts in 0.5 s at 400/s: {}", open[0].text());
        assert_eq!(
            c.get("open/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count() as u64,
            open[0].ops.min(50)
        );

        let del = workload("delete --total 100 --key-prefix del/", &ep).run(8).await.unwrap();
        well_formed(&del[0], "delete", 100);
        assert_eq!(
            c.get("del/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count(),
            0,
            "every preloaded key was deleted"
        );

        let w = workload("watch-latency --watchers 3 --rate 200 --total 100", &ep).run(10).await.unwrap();
        well_formed(&w[0], "watch-latency", 300);
        assert_eq!(w[0].error_count(), 0, "every watcher saw every put: {}", w[0].text());

        let k = workload("lease-keepalive --total 100", &ep).run(9).await.unwrap();
        well_formed(&k[0], "lease-keepalive", 100);
        assert_eq!(k[0].error_count(), 0);
        node.stop().await;
    })
    .await
    .expect("timed out");
}

/// watch-latency and lease-keepalive checked against etcd 3.4 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_and_lease_workloads_run_against_etcd() {
    let etcd = tokio::task::spawn_blocking(common::Etcd::start).await.unwrap();
    let ep = etcd.endpoint().to_string();
    tokio::time::timeout(Duration::from_secs(60), async {
        let w = workload("watch-latency --watchers 3 --rate 200 --total 100", &ep).run(1).await.unwrap();
        assert_eq!(w.len(), 2);
        well_formed(&w[0], "watch-latency", 300);
        assert_eq!(w[0].error_count(), 0, "every watcher saw every put: {}", w[0].text());
        assert_eq!(w[1].workload, "watch-latency-from-ack");
        assert!(w[1].ms(50.0) <= w[0].ms(50.0), "events arrive after the put was sent, and after its ack by less");
        let k = workload("lease-keepalive --total 100", &ep).run(2).await.unwrap();
        well_formed(&k[0], "lease-keepalive", 100);
        assert_eq!(k[0].error_count(), 0);
    })
    .await
    .expect("timed out");
}
