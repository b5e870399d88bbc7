//! Link arguments that make the cdylib libaio's drop-in: its soname and
//! libaio's version nodes (`libaio.map`), all symbols bound at load time.
//!
//! rustc gives the linker a version script of its own (an anonymous node
//! that makes everything local, since this crate exports no Rust symbol by
//! name); `libaio.map` is a second one. rust-lld merges the two (the named
//! nodes win for the names they list); GNU ld refuses to combine an
//! anonymous node with named ones. rust-lld is the default linker of
//! x86_64-unknown-linux-gnu since Rust 1.90; for older toolchains it is
//! asked for here, from the toolchain's own `gcc-ld` directory.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=libaio.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libaio.so.1");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/libaio.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().ok().filter(|o| o.status.success());
    if let Some(o) = sysroot {
        let gcc_ld: PathBuf =
            [String::from_utf8_lossy(&o.stdout).trim(), "lib/rustlib", &target, "bin/gcc-ld"].iter().collect();
        if gcc_ld.join("ld.lld").exists() {
            println!("cargo:rustc-cdylib-link-arg=-B{}", gcc_ld.display());
            println!("cargo:rustc-cdylib-link-arg=-fuse-ld=lld");
        }
    }
}
