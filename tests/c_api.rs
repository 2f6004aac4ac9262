//! The C API, proven from real C: every `tests/c/*.c` program (and the
//! C++ wrapper's `tests/c/*.cpp`) is built against the shared library
//! the way a user would build it, run, and run again under valgrind.
//!
//! Set-up, done once per test binary:
//!
//! 1. `cargo build --lib --features testing` (same profile as this test)
//!    into the target dir the suites that build the library share
//!    (`tests/support`), so that the `testing` entry points
//!    (`sb_debug_panic`) exist without disturbing the main build.
//! 2. A lib dir `<target>/tmp/c-api-<profile>/lib` holding a copy of the
//!    built library under its SONAME, `libstagebus.so.MAJOR.MINOR` (see
//!    build.rs), and the link-time name `libstagebus.so`, a symlink to it.
//! 3. `stagebus.pc` made from `bindings/pkgconfig/stagebus.pc.in`, pointing
//!    at the repository's `include/` and that lib dir.
//!
//! Each program is compiled with `cc -std=c99 -Wall -Wextra -Werror -g
//! -pthread $(pkg-config --cflags --libs stagebus) -Wl,-rpath,<libdir>`,
//! run (exit 0 expected), then run under `valgrind --error-exitcode=1
//! --leak-check=full --errors-for-leak-kinds=definite,indirect`. Without
//! valgrind that second run is skipped with a notice on stderr (the CI
//! script installs it); `STAGEBUS_NO_VALGRIND=1` skips it on purpose.
//! `CC` picks another compiler. Every program gets `STAGEBUS_TEST_TLS`,
//! a directory of certificates (see `tests/support/certs.rs`). A `.cpp` program is compiled the same
//! way with `c++ -std=c++17` (`CXX`) and `-I bindings/cpp`.

mod nats_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use support::root;

/// The longest a program may run (valgrind included) before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(90);

fn soname() -> String {
    format!(
        "libstagebus.so.{}.{}",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    )
}

/// What the set-up made.
struct Setup {
    /// Holds the SONAME and link-time symlinks.
    libdir: PathBuf,
    /// Holds stagebus.pc.
    pc_dir: PathBuf,
    /// Where compiled programs go.
    bin_dir: PathBuf,
    /// `pkg-config --cflags --libs stagebus`, split.
    flags: Vec<String>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
    match SETUP.get_or_init(make_setup) {
        Ok(s) => s,
        Err(e) => panic!("C API test set-up failed: {e}"),
    }
}

fn make_setup() -> Result<Setup, String> {
    let profile = support::profile();
    let built = support::build_library(support::SHARED_BUILD_DIR, &["testing"])?;
    // CARGO_TARGET_TMPDIR is <target>/tmp, wherever the target dir is.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let work = tmp.join(format!("c-api-{profile}"));
    let _ = std::fs::remove_dir_all(&work);
    let libdir = work.join("lib");
    let pc_dir = work.join("pkgconfig");
    let bin_dir = work.join("bin");
    for d in [&libdir, &pc_dir, &bin_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    // A copy: the shared build dir's `libstagebus.so` is the next
    // suite's build (without `testing`) once this one is done.
    std::fs::copy(&built, libdir.join(soname()))
        .map_err(|e| format!("copy {}: {e}", built.display()))?;
    std::os::unix::fs::symlink(soname(), libdir.join("libstagebus.so"))
        .map_err(|e| format!("symlink libstagebus.so: {e}"))?;

    let template = std::fs::read_to_string(root().join("bindings/pkgconfig/stagebus.pc.in"))
        .map_err(|e| format!("cannot read the pkg-config template: {e}"))?;
    let pc = template
        .replace("@PREFIX@", &root().display().to_string())
        .replace("@LIBDIR@", &libdir.display().to_string())
        .replace(
            "@INCLUDEDIR@",
            &root().join("include").display().to_string(),
        )
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    if pc.contains('@') {
        return Err("the pkg-config template has an unreplaced @NAME@".into());
    }
    std::fs::write(pc_dir.join("stagebus.pc"), pc).map_err(|e| format!("write .pc: {e}"))?;

    let flags = pkg_config(&pc_dir, &["--cflags", "--libs", "stagebus"])?;
    Ok(Setup {
        libdir,
        pc_dir,
        bin_dir,
        flags: flags.split_whitespace().map(str::to_string).collect(),
    })
}

fn pkg_config(pc_dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("pkg-config")
        .args(args)
        .env("PKG_CONFIG_PATH", pc_dir)
        .output()
        .map_err(|e| format!("cannot run pkg-config: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pkg-config {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Compiles tests/c/<name>.c (as C99) or tests/c/<name>.cpp (as C++17,
/// with the C++ wrapper on the include path) into the program
/// `exe_name`; returns its path.
fn compile(name: &str, exe_name: &str) -> PathBuf {
    let s = setup();
    let c_src = root().join("tests/c").join(format!("{name}.c"));
    let (src, cc, std) = if c_src.exists() {
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
        (c_src, cc, "-std=c99")
    } else {
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
        let src = root().join("tests/c").join(format!("{name}.cpp"));
        (src, cxx, "-std=c++17")
    };
    let exe = s.bin_dir.join(exe_name);
    let out = Command::new(&cc)
        .arg(std)
        .args(["-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
        .arg("-I")
        .arg(root().join("bindings/cpp"))
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .args(&s.flags)
        .arg(format!("-Wl,-rpath,{}", s.libdir.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        out.status.success(),
        "{cc} rejects {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Runs a command to completion, killing it after RUN_LIMIT.
fn run_bounded(cmd: &mut Command) -> (Output, Duration) {
    support::run_bounded(cmd, RUN_LIMIT)
}

fn assert_passed(what: &str, out: &Output, took: Duration) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    // Keep the TAP lines visible with --nocapture.
    println!("{what}: passed in {took:.2?}\n{stdout}");
    if !stderr.trim().is_empty() {
        println!("{what}: stderr:\n{stderr}");
    }
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Compiles, runs, and runs under valgrind one program.
fn check_program(name: &str) {
    let exe = compile(name, name);
    let tls = support::certs::tls_dir();
    // federation_call calls across two brokers over a real NATS cluster,
    // started here (nats-server installed when missing); each run gets a
    // namespace of its own.
    let mut nats: Vec<(&str, String)> = Vec::new();
    let _cluster = if name == "federation_call" {
        let Some(bin) = nats_support::nats_server() else {
            eprintln!("SKIP {name}: no nats-server");
            return;
        };
        let spec = nats_support::Spec {
            jetstream: true,
            ..nats_support::Spec::default()
        };
        let nodes = nats_support::cluster(&bin, 3, &spec);
        nats.push(("STAGEBUS_TEST_NATS_A", nodes[0].url()));
        nats.push(("STAGEBUS_TEST_NATS_B", nodes[1].url()));
        Some(nodes)
    } else {
        None
    };
    let with_nats = |cmd: &mut Command, run: &str| {
        for (k, v) in &nats {
            cmd.env(k, v);
        }
        if !nats.is_empty() {
            cmd.env("STAGEBUS_TEST_NATS_NS", run);
        }
    };
    let mut cmd = Command::new(&exe);
    cmd.env("STAGEBUS_TEST_TLS", tls);
    with_nats(&mut cmd, "c1");
    let (out, took) = run_bounded(&mut cmd);
    assert_passed(name, &out, took);

    if std::env::var_os("STAGEBUS_NO_VALGRIND").is_some() {
        eprintln!("SKIP valgrind run of {name}: STAGEBUS_NO_VALGRIND is set");
        return;
    }
    if !valgrind_available() {
        eprintln!(
            "SKIP valgrind run of {name}: valgrind is not installed \
             (the project's test script installs it)"
        );
        return;
    }
    let mut vg = Command::new("valgrind");
    vg.args([
        "--quiet",
        "--error-exitcode=1",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect",
    ])
    // ring's crypto assembly, which memcheck misreads (see the
    // file).
    .arg(format!(
        "--suppressions={}",
        root().join("tests/c/valgrind.supp").display()
    ))
    .arg(&exe)
    .env("STAGEBUS_TEST_TLS", tls)
    // Timing-bound programs (liveness) stretch their intervals:
    // code under valgrind runs many times slower.
    .env("STAGEBUS_UNDER_VALGRIND", "1");
    with_nats(&mut vg, "c2");
    let (out, took) = run_bounded(&mut vg);
    assert_passed(&format!("{name} under valgrind"), &out, took);
}

/// One test per C program of tests/c, named like it, and the list of
/// them all (checked against the directory).
macro_rules! c_programs {
    ($($name:ident),* $(,)?) => {
        const PROGRAMS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                check_program(stringify!($name));
            }
        )*
    };
}

c_programs!(
    proxysession_basic,
    custom_messages,
    accessors,
    cpp_wrapper,
    dialogue,
    cancel_cascade,
    publisher_killed,
    errors,
    robustness,
    threads,
    dropped_at_once,
    exports,
    answer_then_close,
    unanswered,
    wait_for_name,
    deadlines,
    liveness,
    log_handler,
    stats,
    monitor,
    limits,
    reconnect,
    reconnect_restore,
    call_sync,
    signals,
    name_modes,
    identity,
    tls,
    federation,
    federation_call,
);

#[test]
fn every_c_program_has_a_test() {
    let mut found: Vec<String> = std::fs::read_dir(root().join("tests/c"))
        .expect("tests/c exists")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".c")
                .or_else(|| name.strip_suffix(".cpp"))
                .map(str::to_string)
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = PROGRAMS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "tests/c/*.c, tests/c/*.cpp and the programs tests/c_api.rs runs differ"
    );
}

#[test]
fn pkg_config_reports_the_crate_version() {
    let s = setup();
    let version = pkg_config(&s.pc_dir, &["--modversion", "stagebus"]).unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let cflags = pkg_config(&s.pc_dir, &["--cflags", "stagebus"]).unwrap();
    assert!(cflags.contains(&root().join("include").display().to_string()));
}

#[test]
fn programs_record_the_soname() {
    // Under another name: the program's own test builds it concurrently.
    let exe = compile(PROGRAMS[0], "soname-check");
    let out = match Command::new("readelf").arg("-d").arg(&exe).output() {
        Ok(out) if out.status.success() => out,
        _ => {
            eprintln!("SKIP programs_record_the_soname: readelf is not available");
            return;
        }
    };
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(
        dynamic.contains(&format!("Shared library: [{}]", soname())),
        "{} does not need {}:\n{dynamic}",
        exe.display(),
        soname()
    );
}

/// The functions the header declares.
fn header_functions() -> Vec<String> {
    let header = std::fs::read_to_string(root().join("include/stagebus.h")).unwrap();
    let mut names = Vec::new();
    for line in header.lines() {
        let line = line.trim_start();
        if line.starts_with("//") || line.starts_with("typedef") || line.starts_with('#') {
            continue;
        }
        if let Some((before, _)) = line.split_once('(') {
            let name: String = before
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if name.starts_with("sb_") {
                names.push(name);
            }
        }
    }
    names
}

#[test]
fn robustness_calls_every_entry_point() {
    let names = header_functions();
    assert!(names.len() > 100, "found only {names:?}");
    let source = std::fs::read_to_string(root().join("tests/c/robustness.c")).unwrap();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !source.contains(&format!("{n}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "tests/c/robustness.c never calls {missing:?}: give each a NULL test"
    );
}
