//! Gives the C library (the cdylib) a SONAME, and nothing else.
//!
//! The SONAME is `libstagebus.so.MAJOR.MINOR`: while the version is 0.x,
//! every minor release may break the C ABI (Cargo's semver reading of
//! 0.x), so programs linked against 0.1 must not load 0.2. From 1.0 on
//! the minor part could be dropped; until then both parts are kept.
//!
//! A program linked with `-lstagebus` records the SONAME and loads it at
//! start, but cargo makes only `libstagebus.so`; so `make` (the Makefile)
//! runs `cargo build --release` and adds `target/release/libstagebus.so.0.1`
//! as a symlink to it, which is the README's recipe. A build script
//! cannot do that: it runs before the library is linked, and where the
//! final artifacts go is not its to know or write. The Makefile derives
//! the same MAJOR.MINOR from Cargo.toml.
//!
//! Installing: put `libstagebus.so` under that name
//! (`libstagebus.so.0.1`), with `libstagebus.so` as a symlink to it for
//! the link editor; programs then record `libstagebus.so.0.1`.
//! `bindings/pkgconfig/stagebus.pc.in` is the matching pkg-config
//! template.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // -soname is an ELF linker option; Apple and Windows linkers name
    // their libraries differently.
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let family = env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    if family != "unix"
        || matches!(
            os.as_str(),
            "macos" | "ios" | "tvos" | "watchos" | "visionos"
        )
    {
        return;
    }
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    let minor = env::var("CARGO_PKG_VERSION_MINOR").expect("cargo sets the version");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libstagebus.so.{major}.{minor}");
}
