//! What a poll round's raft messages look like between stores
//! (docs/cluster.md, "Store heartbeats"). Everything a round sends to one
//! store is one `RaftBatch`. In it, heartbeats and heartbeat answers do not
//! travel as raft messages: those sharing a context (a lease round's, or
//! none) become one `Heartbeats` group of (region, term, commit) triples, so
//! the heartbeats of every region this store leads cost the destination one
//! message and a few bytes per region, and its answer likewise.

use std::collections::HashMap;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};

use crate::proto::tesserapb::{Heartbeats, RaftBatch, RaftEnvelope};

/// The batches one round sends: one per destination store. `from` is this
/// store (the sender of every message).
pub fn pack(from: u64, messages: Vec<(u64, Message)>) -> HashMap<u64, RaftBatch> {
    let mut batches: HashMap<u64, RaftBatch> = HashMap::new();
    // (destination, answer?, context) -> its group's place in the batch:
    // every ReadIndex of a client read has its own context, so there may be
    // many groups.
    let mut groups: HashMap<(u64, bool, bytes::Bytes), usize> = HashMap::new();
    for (region_id, m) in messages {
        let batch = batches.entry(m.to).or_insert_with(|| RaftBatch { from_store: from, ..Default::default() });
        let response = match m.get_msg_type() {
            MessageType::MsgHeartbeat => false,
            MessageType::MsgHeartbeatResponse => true,
            _ => {
                if let Ok(message) = m.write_to_bytes() {
                    batch.messages.push(RaftEnvelope { region_id, message });
                }
                continue;
            }
        };
        let i = *groups.entry((m.to, response, m.context.clone())).or_insert_with(|| {
            batch.heartbeats.push(Heartbeats { response, context: m.context.to_vec(), ..Default::default() });
            batch.heartbeats.len() - 1
        });
        let group = &mut batch.heartbeats[i];
        group.region_ids.push(region_id);
        group.terms.push(m.term);
        group.commits.push(m.commit);
    }
    batches
}

/// The raft messages in a batch received by store `to`, with their regions.
pub fn unpack(to: u64, batch: RaftBatch) -> Result<Vec<(u64, Message)>, String> {
    let mut out = Vec::with_capacity(batch.messages.len());
    for env in batch.messages {
        let m = Message::parse_from_bytes(&env.message).map_err(|e| format!("bad raft message: {e}"))?;
        out.push((env.region_id, m));
    }
    for g in batch.heartbeats {
        if g.terms.len() != g.region_ids.len() || g.commits.len() != g.region_ids.len() {
            return Err("heartbeat group with columns of different lengths".into());
        }
        let kind = if g.response { MessageType::MsgHeartbeatResponse } else { MessageType::MsgHeartbeat };
        let context = bytes::Bytes::from(g.context);
        for ((region, term), commit) in g.region_ids.into_iter().zip(g.terms).zip(g.commits) {
            let mut m = Message::default();
            m.set_msg_type(kind);
            m.from = batch.from_store;
            m.to = to;
            m.term = term;
            m.commit = commit;
            m.context = context.clone();
            out.push((region, m));
        }
    }
    Ok(out)
}

/// How many raft messages a batch carries (heartbeats counted one by one).
pub fn message_count(batch: &RaftBatch) -> usize {
    batch.messages.len() + batch.heartbeats.iter().map(|g| g.region_ids.len()).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: MessageType, to: u64, term: u64, commit: u64, ctx: &[u8]) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = 1;
        m.to = to;
        m.term = term;
        m.commit = commit;
        m.context = ctx.to_vec().into();
        m
    }

    #[test]
    fn heartbeats_of_many_regions_share_one_group_and_come_back_equal() {
        let mut sent = Vec::new();
        for region in 1..=1000u64 {
            sent.push((region, msg(MessageType::MsgHeartbeat, 2, region % 7 + 1, region * 3, b"L\0\0\0\0\0\0\0\x05")));
        }
        sent.push((5, msg(MessageType::MsgHeartbeatResponse, 2, 4, 9, b"")));
        sent.push((6, msg(MessageType::MsgAppend, 2, 4, 9, b"")));
        sent.push((7, msg(MessageType::MsgHeartbeat, 3, 1, 1, b"")));
        let mut batches = pack(1, sent.clone());
        assert_eq!(batches.len(), 2);
        let to2 = batches.remove(&2).unwrap();
        assert_eq!(to2.heartbeats.len(), 2, "one group per (kind, context)");
        assert_eq!(to2.messages.len(), 1, "other messages go as they are");
        assert_eq!(message_count(&to2), 1002);
        let mut back = unpack(2, to2).unwrap();
        back.extend(unpack(3, batches.remove(&3).unwrap()).unwrap());
        let key = |(r, m): &(u64, Message)| (*r, m.get_msg_type() as i32, m.to);
        back.sort_by_key(key);
        sent.sort_by_key(key);
        assert_eq!(back, sent);
    }

    #[test]
    fn a_group_with_ragged_columns_is_refused() {
        let batch = RaftBatch {
            from_store: 1,
            heartbeats: vec![Heartbeats {
                region_ids: vec![1, 2],
                terms: vec![1],
                commits: vec![1, 2],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(unpack(2, batch).is_err());
    }
}
