//! Generates the node-to-node protocol (`proto/replica.proto`) without `protoc`: `protox`
//! compiles it to a descriptor set and `tonic-prost-build` generates the Rust client and server.

const PROTO: &str = "proto/replica.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
