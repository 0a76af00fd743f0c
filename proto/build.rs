//! Generates Rust for Poplar's `.proto` files with a pure-Rust compiler (protox), so a
//! build needs no `protoc`, and keeps the encoded descriptors for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/poplar/flightsql/v1/statement.proto",
    "proto/poplar/measures/v1/measures.proto",
    "proto/poplar/studies/v1/studies.proto",
    "proto/poplar/governance/v1/governance.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("poplar_descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
