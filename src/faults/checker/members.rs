//! Members' final state: each member's kvs equal the history's whole state
//! at its header revision (FinalStateMismatch), and members reporting
//! HashKV at one revision agree (HashMismatch).

use std::collections::BTreeMap;

use super::reads::difference;
use super::{AnomalyClass, Ctx, Sink};
use crate::faults::history::KeyRange;

pub(crate) fn check(ctx: &Ctx, sink: &mut Sink) {
    let all = KeyRange { key: Vec::new(), range_end: vec![0] };
    let mut hashes: BTreeMap<i64, Vec<(&str, u32)>> = BTreeMap::new();
    for member in &ctx.h.members {
        let want = ctx.model.range(&all, member.revision);
        if let Some(diff) = difference(&want, &member.kvs) {
            sink.add(AnomalyClass::FinalStateMismatch, || {
                format!("member {} at revision {}: {diff}", member.member, member.revision)
            });
        }
        if let Some((rev, hash)) = member.hash_kv {
            hashes.entry(rev).or_default().push((&member.member, hash));
        }
    }
    for (rev, list) in hashes {
        if list.iter().any(|&(_, hash)| hash != list[0].1) {
            sink.add(AnomalyClass::HashMismatch, || {
                let each: Vec<String> = list.iter().map(|(m, hash)| format!("{m}={hash:#010x}")).collect();
                format!("HashKV at revision {rev} differs: {}", each.join(" "))
            });
        }
    }
}
