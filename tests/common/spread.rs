//! Region leaders spread over a cluster's stores, as tests set them up
//! and check them (through `tessera admin regions`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{admin, make_leader_store, Cluster, CLUSTER_READY};

/// Region ids by leader store, as `tessera admin regions` through
/// `endpoint` reports them (store 0: no leader known).
pub fn leaders(endpoint: &str) -> BTreeMap<u64, Vec<u64>> {
    let json = admin(endpoint, &["regions", "--json"]);
    let numbers_after = |tag: &str| -> Vec<u64> {
        json.match_indices(tag)
            .map(|(at, _)| {
                let rest = &json[at + tag.len()..];
                rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().unwrap()
            })
            .collect()
    };
    // A region object is {"id":N,"start_key":... ,"leader":S,...}.
    let ids: Vec<u64> = json
        .match_indices(",\"start_key\"")
        .map(|(at, _)| {
            let head = &json[..at];
            head[head.rfind(':').unwrap() + 1..].parse().unwrap()
        })
        .collect();
    let mut by_store: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (id, leader) in ids.into_iter().zip(numbers_after("\"leader\":")) {
        by_store.entry(leader).or_default().push(id);
    }
    by_store
}

/// Waits until `ok` holds for the leaders `endpoint` reports; returns them
/// and how long that took.
pub fn wait_leaders(
    endpoint: &str,
    what: &str,
    ok: impl Fn(&BTreeMap<u64, Vec<u64>>) -> bool,
) -> (BTreeMap<u64, Vec<u64>>, Duration) {
    let (start, deadline) = (Instant::now(), Instant::now() + CLUSTER_READY);
    loop {
        let led = leaders(endpoint);
        if ok(&led) {
            return (led, start.elapsed());
        }
        assert!(Instant::now() < deadline, "{what}: leaders by store stayed {led:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every one of `stores` leads `each` regions (give or take one), and no
/// region is without a known leader.
pub fn balanced(led: &BTreeMap<u64, Vec<u64>>, stores: &[u64], regions: usize) -> bool {
    let counts: Vec<usize> = stores.iter().map(|s| led.get(s).map_or(0, |r| r.len())).collect();
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    counts.iter().sum::<usize>() == regions && max - min <= 1
}

/// Three members, n1 the leader store, the 4 regions' leaders spread over
/// all three.
pub fn spread(rt: &tokio::runtime::Runtime) -> Cluster {
    spread_cluster(rt, Cluster::start(3))
}

/// [`spread`], with failpoint `spec` armed on member `on` (0-based).
pub fn spread_with_failpoint(rt: &tokio::runtime::Runtime, on: usize, spec: &str) -> Cluster {
    spread_cluster(
        rt,
        Cluster::start_with(3, |i| if i == on { vec!["--failpoint".into(), spec.into()] } else { vec![] }),
    )
}

fn spread_cluster(rt: &tokio::runtime::Runtime, cluster: Cluster) -> Cluster {
    rt.block_on(make_leader_store(&cluster.endpoint(0)));
    let (led, _) = wait_leaders(&cluster.endpoint(0), "leaders spread", |l| balanced(l, &[1, 2, 3], 4));
    println!("leaders: {led:?}");
    cluster
}
