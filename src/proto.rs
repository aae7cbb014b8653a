//! Generated protobuf and gRPC types: etcd's v3 wire contract (our own
//! .proto files under proto/etcd) and tessera's internal messages.
#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
pub mod tesserapb {
    tonic::include_proto!("tesserapb");
}
