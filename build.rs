//! Compiles `proto/` into Rust with protox (a pure-Rust protobuf compiler, so no
//! system `protoc` is needed) and tonic-prost-build. The encoded descriptor set is
//! kept in `OUT_DIR` for the gRPC reflection service.

use std::path::PathBuf;

use protox::prost::Message as _;

const PROTOS: &[&str] = &[
    "proto/consort/v1/types.proto",
    "proto/consort/v1/wire.proto",
    "proto/consort/v1/node.proto",
    "proto/consort/v1/tx.proto",
    "proto/consort/v1/sync.proto",
    "proto/consort/v1/storage.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("consort_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".consort.v1")
        .compile_fds(fds)?;
    Ok(())
}
