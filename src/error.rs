//! Request errors and their one mapping to etcd's gRPC codes and messages.

use tonic::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a request can fail with. Variants either are etcd's own
/// errors (mapped to etcd's code and message) or routing conditions that
/// the router retries before a client could see them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// A lock or campaign whose key went away (its lease ended) while it waited.
    #[error("session expired")]
    SessionExpired,
    /// A lock or campaign with a lease that does not exist: etcd's lock and
    /// election servers pass their KV client's error on as a plain error.
    #[error("etcdserver: requested lease not found")]
    SessionLeaseNotFound,
    #[error("election: not leader")]
    ElectionNotLeader,
    #[error("election: no leader")]
    ElectionNoLeader,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// Past the gRPC message limit (etcd's grpc-go wording).
    #[error("grpc: received message larger than max ({len} vs. {max})")]
    MessageTooLarge { len: usize, max: usize },
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// This peer is not (or no longer) the region's leader. Retried.
    #[error("tessera: region {region} has no leader here")]
    NotLeader { region: u64 },
    /// The request was built for an older shape of the region. Retried.
    #[error("tessera: region {region} epoch changed")]
    EpochNotMatch { region: u64 },
    /// A proposal was dropped or superseded before it committed. Retried.
    #[error("tessera: proposal to region {region} was dropped")]
    ProposalDropped { region: u64 },
    /// The keys are locked by a cross-region txn in progress. Retried.
    #[error("tessera: keys in region {region} are locked by a transaction in progress")]
    Locked { region: u64 },
    /// A cross-region txn lost its locks before it could commit (nothing of
    /// it was written). Retried from the start.
    #[error("tessera: transaction aborted")]
    TxnAborted,
    /// No region covers the key (the routing table is being rebuilt).
    #[error("tessera: no region for key")]
    RegionNotFound,
    /// Admin: no region with this id.
    #[error("tessera: region {region} not found")]
    NoSuchRegion { region: u64 },
    /// Admin: a split key must lie inside the region, past its start.
    #[error("tessera: split key {key:?} is not inside region {region} (or is its start key)")]
    KeyOutsideRegion { key: String, region: u64 },
    /// Admin: a split names neither a key nor a region.
    #[error("tessera: a split needs a key or a region id")]
    SplitWhere,
    /// Admin: the keys of a split at many keys are empty, unsorted or repeated.
    #[error("tessera: {0}")]
    SplitKeys(String),
    /// Admin: a region without two keys has no middle to split at.
    #[error("tessera: region {region} has fewer than two keys; give a split key")]
    NoMiddleKey { region: u64 },
    /// Admin: merge takes a region and its right-hand neighbour.
    #[error("tessera: region {right} does not start where region {left} ends (not adjacent)")]
    NotAdjacent { left: u64, right: u64 },
    /// Admin: the region is in another split or merge, or holds locks of a
    /// cross-region txn, for longer than the request could wait.
    #[error("tessera: region {region} is busy (a split, merge or cross-region transaction is in progress)")]
    RegionBusy { region: u64 },
    /// Admin: leadership can only move to a store with a peer of the region.
    #[error("tessera: store {store} has no peer of region {region}")]
    NoPeerOnStore { store: u64, region: u64 },
    /// A merge rolled back: a peer of its source did not apply the prepare
    /// in time (its store down or cut off).
    #[error("tessera: merge rolled back: a peer of region {region} did not catch up (a store down or cut off?)")]
    MergeCatchUp { region: u64 },
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// MemberAdd would leave fewer active voters than the new quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// MemberRemove would leave fewer active voters than the new quorum.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// A membership change tessera does not make (learners, a single
    /// store growing, more than 5 members): says what and why.
    #[error("tessera: {0}")]
    Membership(String),
    #[error("etcdserver: request timed out")]
    Timeout,
    /// A region refused a write whose revision an older leader store handed
    /// out (docs/cluster.md, "Revision fencing"): its outcome is the new
    /// leader store's to decide; the client retries.
    #[error("etcdserver: leader changed")]
    Fenced,
    /// A write this store's router cannot finish without the leader store
    /// (docs/serve-anywhere.md, "Writes through any store"): the call is
    /// passed on there whole, nothing of it having been proposed. Marked
    /// for the forwarding layer ([`NEEDS_LEADER_STORE`]); a client that
    /// sees it anyway retries, as on any "leader changed".
    #[error("etcdserver: leader changed")]
    NeedsLeaderStore,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("tessera: storage error: {0}")]
    Storage(String),
    /// An error for the client that another store's region leader answered
    /// with (its gRPC code and message, passed on as they are).
    #[error("{message}")]
    Remote { code: i32, message: String },
}

impl Error {
    /// Routing conditions the router retries inside tessera.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. }
                | Error::EpochNotMatch { .. }
                | Error::ProposalDropped { .. }
                | Error::RegionNotFound
                | Error::Locked { .. }
                | Error::TxnAborted
        )
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::Storage(e.into_string())
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::EmptyKey
            | Error::ValueProvided
            | Error::LeaseProvided
            | Error::KeyNotFound
            | Error::InvalidSortOption
            | Error::TooManyOps
            | Error::DuplicateKey
            | Error::RequestTooLarge => Code::InvalidArgument,
            Error::LeaseNotFound => Code::NotFound,
            Error::LeaseExists => Code::FailedPrecondition,
            Error::LeaseTtlTooLarge => Code::OutOfRange,
            Error::NoSpace => Code::ResourceExhausted,
            Error::BadLeaderTransferee => Code::FailedPrecondition,
            // etcd's lock and election servers pass these on as plain errors.
            Error::SessionExpired
            | Error::SessionLeaseNotFound
            | Error::ElectionNotLeader
            | Error::ElectionNoLeader
            | Error::MissingLeaderKey => Code::Unknown,
            Error::MessageTooLarge { .. } => Code::ResourceExhausted,
            Error::Compacted | Error::FutureRevision => Code::OutOfRange,
            Error::NotLeader { .. }
            | Error::EpochNotMatch { .. }
            | Error::ProposalDropped { .. }
            | Error::RegionNotFound
            | Error::Locked { .. }
            | Error::TxnAborted
            | Error::Timeout
            | Error::Fenced
            | Error::NeedsLeaderStore
            | Error::Stopped => Code::Unavailable,
            Error::NoSuchRegion { .. } => Code::NotFound,
            Error::KeyOutsideRegion { .. } | Error::NoPeerOnStore { .. } | Error::SplitWhere | Error::SplitKeys(_) => {
                Code::InvalidArgument
            }
            Error::MergeCatchUp { .. } => Code::Unavailable,
            Error::NoMiddleKey { .. } | Error::NotAdjacent { .. } | Error::RegionBusy { .. } => {
                Code::FailedPrecondition
            }
            Error::MemberNotFound => Code::NotFound,
            Error::PeerUrlExists | Error::NotEnoughStartedMembers | Error::Membership(_) => Code::FailedPrecondition,
            Error::MemberBadUrls => Code::InvalidArgument,
            Error::Unhealthy => Code::Unavailable,
            Error::Storage(_) => Code::Internal,
            Error::Remote { code, .. } => Code::from_i32(*code),
        };
        let mut status = Status::new(code, e.to_string());
        if matches!(e, Error::NeedsLeaderStore) {
            status.metadata_mut().insert(NEEDS_LEADER_STORE, tonic::metadata::MetadataValue::from_static("1"));
        }
        status
    }
}

/// The metadata key marking [`Error::NeedsLeaderStore`] on its way out.
pub const NEEDS_LEADER_STORE: &str = "tessera-leader-store";
