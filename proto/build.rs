//! Compiles `sluice/quota/v1/quota.proto` with tonic-prost-build, using the protoc binary
//! shipped by the `protoc-bin-vendored` crate (no protoc needs to be installed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &["sluice/quota/v1/quota.proto"], &["."])?;
    Ok(())
}
