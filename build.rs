// Compiles our own .proto files with a vendored protoc, set here only: the
// raft-proto and etcd-client crates build with the system protoc 3.x.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let files = [
        "proto/etcd/mvccpb/kv.proto",
        "proto/etcd/authpb/auth.proto",
        "proto/etcd/etcdserverpb/rpc.proto",
        "proto/etcd/v3lockpb/v3lock.proto",
        "proto/etcd/v3electionpb/v3election.proto",
        "proto/tessera/tessera.proto",
        "proto/tessera/admin.proto",
        "proto/tessera/peer.proto",
    ];
    tonic_prost_build::configure().build_client(true).build_server(true).compile_protos(&files, &["proto"])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
