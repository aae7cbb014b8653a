//! What a fault run records: every client operation (asked, invoked,
//! completed, answered), every watcher's stream, the authoritative history
//! of modifications (a watch from revision 1 after the run) and each
//! member's final state. The checker (`super::checker`) judges these; it
//! needs nothing else.
//!
//! Times are nanoseconds since the run started, on one monotonic clock.

/// Nanoseconds since the run started.
pub type Nanos = u64;

/// A key-value as etcd returns it (mvccpb.KeyValue).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// One event of a watch (mvccpb.Event). A delete's `kv` carries the key and
/// `mod_revision` (the delete's revision); its other fields are etcd's zeroes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: Kv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A key range as etcd's requests name one: `range_end` empty is the key
/// alone; `[0]` is every key from `key` on; otherwise `[key, range_end)`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyRange {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl KeyRange {
    pub fn single(key: &[u8]) -> Self {
        KeyRange { key: key.to_vec(), range_end: Vec::new() }
    }

    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange { key: prefix.to_vec(), range_end: prefix_end(prefix) }
    }

    /// Whether `k` is in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        if self.range_end.is_empty() {
            return k == self.key.as_slice();
        }
        k >= self.key.as_slice() && (self.range_end == [0] || k < self.range_end.as_slice())
    }
}

/// The smallest key after every key starting with `prefix` (etcd's
/// `--prefix`); `[0]` (every key) when the prefix is empty or all 0xff.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One compare of a compare-and-set txn: the key's value equals `value`,
/// or, with `value` None, the key does not exist (version == 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// What a client asked. Every put's value is unique in the run, so an
/// event in the history names the operation that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Put `value` at `key`, attached to `lease` (0: none).
    Put { key: Vec<u8>, value: Vec<u8>, lease: i64 },
    /// A Range (a get when `range.range_end` is empty) at the newest
    /// revision, linearizable unless `serializable`.
    Range { range: KeyRange, serializable: bool },
    /// DeleteRange (a single key when `range.range_end` is empty).
    Delete { range: KeyRange },
    /// Txn: if every compare holds, put every pair (else do nothing).
    Cas { compares: Vec<Compare>, puts: Vec<(Vec<u8>, Vec<u8>)> },
    /// LeaseGrant of this id (chosen by the client) and TTL in seconds.
    LeaseGrant { id: i64, ttl: i64 },
    /// LeaseRevoke: deletes every key attached to the lease at one revision.
    LeaseRevoke { id: i64 },
}

impl Op {
    /// Whether the operation may modify the store.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Range { .. })
    }
}

/// What came back. `revision` is always the response header's revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Put {
        revision: i64,
    },
    Range {
        revision: i64,
        kvs: Vec<Kv>,
    },
    /// `deleted` as DeleteRangeResponse.deleted.
    Delete {
        revision: i64,
        deleted: i64,
    },
    Cas {
        revision: i64,
        succeeded: bool,
    },
    LeaseGrant {
        revision: i64,
    },
    LeaseRevoke {
        revision: i64,
    },
}

impl Reply {
    pub fn revision(&self) -> i64 {
        match self {
            Reply::Put { revision }
            | Reply::Range { revision, .. }
            | Reply::Delete { revision, .. }
            | Reply::Cas { revision, .. }
            | Reply::LeaseGrant { revision }
            | Reply::LeaseRevoke { revision } => *revision,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: it happened, with this result.
    Ok(Reply),
    /// Refused for certain (e.g. lease not found): it did nothing.
    Failed(String),
    /// Timed out, unavailable, connection lost: it may or may not have
    /// happened (at most once).
    Unknown(String),
}

/// One client operation from invocation to completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub client: u32,
    pub op: Op,
    pub invoke: Nanos,
    pub complete: Nanos,
    pub outcome: Outcome,
}

/// What one watcher received, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// A response with events (never an empty one: progress notifications
    /// are not recorded).
    Events { at: Nanos, events: Vec<Event> },
    /// The stream broke or was cancelled; the watcher resumes from its last
    /// revision + 1 (or its start revision when it saw none).
    Broken { at: Nanos, error: String },
    /// The watcher (re)started a watch from this revision.
    Started { at: Nanos, from_revision: i64 },
}

/// One watcher of the run: its range and what it received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchLog {
    pub id: u32,
    pub range: KeyRange,
    pub start_revision: i64,
    pub items: Vec<WatchItem>,
}

/// One member's state read after the run healed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    pub member: String,
    /// A serializable Range of every key: its header revision and kvs.
    pub revision: i64,
    pub kvs: Vec<Kv>,
    /// HashKV at the revision every member reached: (revision, hash).
    pub hash_kv: Option<(i64, u32)>,
}

/// Everything one run recorded.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct History {
    pub records: Vec<Record>,
    pub watches: Vec<WatchLog>,
    /// Every modification, from a watch from revision 1 over every key
    /// after the run healed, in revision order.
    pub events: Vec<Event>,
    /// The newest revision when `events` was read (events end at or below it).
    pub final_revision: i64,
    pub members: Vec<MemberState>,
    /// The run's duration.
    pub end: Nanos,
    /// Times (start, end) during which a fault was active; the checker
    /// allows watches to stall only around these plus its bound.
    pub faults: Vec<(Nanos, Nanos)>,
}
