//! Builds the drop-in library (the `uaio-capi` cdylib) so that the `uaio`
//! binary can carry it (`include_bytes!`) and `uaio run` needs no other
//! file.
//!
//! The library is built by a nested `cargo build -p uaio-capi` into a target
//! directory of its own under `OUT_DIR`, with this build's profile and
//! target: cargo's lock on the outer target directory is not shared with it,
//! so the two never wait for each other. The nested cargo takes its job
//! tokens from the outer one's jobserver (inherited through the
//! environment). The result is copied to `OUT_DIR/libaio.so`, and
//! `OUT_DIR/libaio.hash` holds a hash of its bytes (FNV-1a, 64 bits), which
//! names the directory `uaio run` installs it in.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..").canonicalize().expect("the workspace root");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for p in
        ["crates/uaio-capi", "crates/uaio/src", "crates/uaio/Cargo.toml", "crates/uaio-abi", "Cargo.toml", "Cargo.lock"]
    {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    let target_dir = out.join("capi-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let host = std::env::var("HOST").expect("cargo sets HOST");

    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", "uaio-capi", "--lib", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    if profile == "release" {
        cmd.arg("--release");
    }
    if target != host {
        cmd.args(["--target", &target]);
    }
    // A `cargo clippy` or `cargo doc` of the workspace runs this script too:
    // the nested build is a plain build whatever wraps the outer one.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the uaio-capi library");
    assert!(status.success(), "building the drop-in library (cargo build -p uaio-capi) failed: {status}");

    let mut built = target_dir.clone();
    if target != host {
        built.push(&target);
    }
    built.push(if profile == "release" { "release" } else { "debug" });
    built.push("libaio.so");
    let bytes = std::fs::read(&built).unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    write_if_changed(&out.join("libaio.so"), &bytes);
    write_if_changed(&out.join("libaio.hash"), format!("{:016x}", fnv1a(&bytes)).as_bytes());
}

/// FNV-1a over `bytes`: a name for one build of the library.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Writes `bytes` to `path` unless it already holds them (keeps its time,
/// so that what includes it is not rebuilt for nothing).
fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return;
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
