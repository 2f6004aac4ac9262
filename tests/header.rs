//! The committed C header is what cbindgen makes of src/ffi today, and
//! it compiles as C99 and C++17 with warnings as errors.
//!
//! `STAGEBUS_BLESS=1 cargo test --test header` rewrites it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> String {
    let mut config = cbindgen::Config::from_file(root().join("cbindgen.toml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    let (major, minor, patch) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    config.after_includes = Some(format!(
        "\n#define STAGEBUS_VERSION \"{version}\"\n\
         #define STAGEBUS_VERSION_MAJOR {major}\n\
         #define STAGEBUS_VERSION_MINOR {minor}\n\
         #define STAGEBUS_VERSION_PATCH {patch}\n\
         #define STAGEBUS_VERSION_NUMBER ((STAGEBUS_VERSION_MAJOR << 16) | (STAGEBUS_VERSION_MINOR << 8) | STAGEBUS_VERSION_PATCH)\n"
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root())
        .with_config(config)
        .generate()
        .expect("cbindgen runs")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn committed_header_is_current() {
    let path = root().join("include/stagebus.h");
    let fresh = generate();
    if std::env::var_os("STAGEBUS_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/stagebus.h is stale: run STAGEBUS_BLESS=1 cargo test --test header"
    );
}

#[test]
fn version_macros_match_cargo_toml() {
    let header = std::fs::read_to_string(root().join("include/stagebus.h")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(header.contains(&format!("#define STAGEBUS_VERSION \"{version}\"")));
    for (name, part) in ["MAJOR", "MINOR", "PATCH"].iter().zip(version.split('.')) {
        assert!(
            header.contains(&format!("#define STAGEBUS_VERSION_{name} {part}\n")),
            "{name}"
        );
    }
}

fn compiles(compiler: &str, std: &str, ext: &str) {
    let dir = std::env::temp_dir().join(format!("stagebus-header-{}-{ext}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("use_header.{ext}"));
    std::fs::write(
        &src,
        "#include \"stagebus.h\"\n\
         int main(void) { return sb_strerror(SB_OK)[0] == 'o' && STAGEBUS_VERSION_NUMBER >= 0 ? 0 : 1; }\n",
    )
    .unwrap();
    let out = Command::new(compiler)
        .args([
            std,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(root().join("include"))
        .arg(&src)
        .output()
        .expect("the compiler runs");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
    assert!(
        out.status.success(),
        "{compiler} {std} rejects the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_c99() {
    compiles("cc", "-std=c99", "c");
}

#[test]
fn header_compiles_as_cpp17() {
    compiles("c++", "-std=c++17", "cpp");
}
