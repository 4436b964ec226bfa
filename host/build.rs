//! Copies the protobuf descriptor set that `envoy-types` ships (every Envoy API message, as
//! `protoc` described them) into `OUT_DIR`, where `src/envoy/json.rs` embeds it. The crate
//! generates its Rust types from the same set but does not export the bytes; with them
//! prost-reflect renders a typed value as Envoy's own JSON (the static bootstrap) without a
//! hand-written mapping that could drift from the API.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let envoy_types = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .map(PathBuf::from)
        .expect("envoy-types is a dependency");
    let set = envoy_types
        .parent()
        .expect("a manifest has a directory")
        .join("src/generated/types.bin");
    println!("cargo:rerun-if-changed={}", set.display());
    println!("cargo:rerun-if-changed=build.rs");
    std::fs::copy(&set, out.join("envoy-descriptors.bin"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", set.display()));
}
