//! Compiles the management API contract (proto/idnode/v1/admin.proto) into
//! tonic servers and clients, and writes its file descriptor set for the
//! reflection service.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../proto");
    let proto = root.join("idnode/v1/admin.proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".idnode.v1.Value.data")
        .file_descriptor_set_path(out.join("idnode_v1_descriptor.bin"))
        .compile_protos(&[proto], &[root])?;
    Ok(())
}
