//! Compiles every `.proto` under the workspace's `proto/` folder with a pure-Rust
//! compiler, so no `protoc` is needed, and writes the file descriptor set that
//! gRPC reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "harvest/common/v1/common.proto",
        "harvest/common/v1/audit.proto",
        "harvest/catalog/v1/catalog.proto",
        "harvest/orders/v1/orders.proto",
        "harvest/orders/storage/v1/storage.proto",
        "harvest/payments/v1/payments.proto",
        "harvest/delivery/v1/delivery.proto",
        "harvest/events/v1/envelope.proto",
    ];
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let descriptors = protox::compile(files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("harvest_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
