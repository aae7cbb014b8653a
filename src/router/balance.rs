//! Where region leaders live (docs/cluster.md, "Leader balance"): the
//! leader store spreads them evenly over the members it hears from, once a
//! second; a store becoming the leader store first brings every region's
//! leadership to itself (its activation needs that).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Router;

/// How often the leader store looks at where region leaders are.
const BALANCE_EVERY: Duration = Duration::from_secs(1);
/// Leaderships moved per look: a returning store gets its share over a
/// few seconds rather than all at once.
const MOVES_PER_ROUND: usize = 64;
/// How often a store becoming the leader store asks for the leaderships
/// it lacks.
const GATHER_EVERY: Duration = Duration::from_millis(500);

impl Router {
    /// Moves region leaderships so that every active member leads within
    /// one of as many regions as any other. Skipped while a split, merge
    /// or membership change runs (they gather their regions here).
    pub(super) fn balance_leaders(&self) {
        if !super::due(&self.balanced, BALANCE_EVERY) {
            return;
        }
        let Ok(_admin) = self.admin_lock.try_lock() else { return };
        let stores = self.store.active_members();
        if stores.len() < 2 {
            return;
        }
        let mut led: BTreeMap<u64, Vec<u64>> = stores.iter().map(|s| (*s, Vec::new())).collect();
        for region in self.store.regions() {
            let Ok(peer) = self.store.peer(region.id) else { continue };
            // A region without a known leader, or led by a store not heard
            // from, is left to its election.
            if let Some(list) = led.get_mut(&peer.shared.leader.load(Ordering::Acquire)) {
                list.push(region.id);
            }
        }
        for (region, to) in plan_moves(led, MOVES_PER_ROUND) {
            tracing::debug!(region, to, "moving a region leader for balance");
            self.spawn_transfer(region, to);
        }
    }

    /// While this store is becoming the leader store: asks the leader of
    /// every region led elsewhere to hand over (regions without a leader
    /// get one by this store's campaign).
    pub(super) fn gather_leaders(&self) {
        if !super::due(&self.balanced, GATHER_EVERY) {
            return;
        }
        let me = self.store.store_id;
        for region in self.store.regions() {
            let Ok(peer) = self.store.peer(region.id) else { continue };
            let leader = peer.shared.leader.load(Ordering::Acquire);
            if leader != 0 && leader != me {
                self.spawn_transfer(region.id, me);
            }
        }
    }

    fn spawn_transfer(&self, region: u64, to: u64) {
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.transfer_leader(region, to).await {
                tracing::debug!(region, to, "leader transfer: {e}");
            }
        });
    }
}

/// Moves (region, to store) that bring every store within one region of
/// any other, at most `max`: each from the store leading most to the one
/// leading fewest.
fn plan_moves(mut led: BTreeMap<u64, Vec<u64>>, max: usize) -> Vec<(u64, u64)> {
    let mut moves = Vec::new();
    while moves.len() < max {
        let most = led.iter().max_by_key(|(_, r)| r.len()).map(|(s, _)| *s);
        let least = led.iter().min_by_key(|(_, r)| r.len()).map(|(s, _)| *s);
        let (Some(most), Some(least)) = (most, least) else { break };
        if led[&most].len() <= led[&least].len() + 1 {
            break;
        }
        let region = led.get_mut(&most).and_then(|r| r.pop()).expect("the fullest store leads some region");
        led.get_mut(&least).expect("a store").push(region);
        moves.push((region, least));
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_spread_leaders_within_one() {
        let led = BTreeMap::from([(1, (1..=10).collect()), (2, vec![]), (3, vec![11])]);
        let mut count = BTreeMap::from([(1, 10), (2, 0), (3, 1)]);
        for (_, to) in plan_moves(led, 100) {
            *count.get_mut(&1).unwrap() -= 1;
            *count.get_mut(&to).unwrap() += 1;
        }
        let mut spread: Vec<usize> = count.into_values().collect();
        spread.sort();
        assert_eq!(spread, vec![3, 4, 4]);
        assert_eq!(plan_moves(BTreeMap::from([(1, vec![1, 2]), (2, vec![3])]), 100), vec![]);
        assert_eq!(plan_moves(BTreeMap::from([(1, (1..=10).collect()), (2, vec![])]), 2).len(), 2);
    }
}
