//! `scripts/install.sh`, run as a user runs it, into a temporary prefix:
//!
//! * the files land where they should: the library under its full
//!   version, its SONAME and `libstagebus.so` as links, the static
//!   library, both headers, `stagebus.pc`, the binary, the man page, the
//!   bash, zsh and fish completions, the Perl binding, the systemd units
//!   (the service's ExecStart naming the installed binary);
//! * a C program (`examples/c/call_echo.c`) built with nothing but
//!   `pkg-config --cflags --libs stagebus` (`PKG_CONFIG_PATH` into the
//!   prefix, an rpath to its lib) calls the installed `stagebus serve`
//!   through the installed `stagebus broker`; a C++ program builds
//!   against the installed `stagebus.hpp` the same way;
//! * `man -l` renders the installed page; bash loads the completions and
//!   completes the commands; the installed Perl module loads the
//!   installed library (when FFI::Platypus is there);
//! * `--destdir` stages the files under it while they still name the
//!   prefix; bad arguments exit 2.
//!
//! Set-up: `cargo build --lib --bin stagebus` (the test's profile) into
//! its own target dir (`tests/support`), installed with `--from`, so the
//! test neither waits for the outer build lock nor builds in release.
//!
//! System packages (Debian): `pkg-config`, `man-db` (for `man`), `bash`;
//! `scripts/test.sh` installs them. A missing one fails its step naming
//! the package.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use support::{root, run_bounded_text, Proc};

/// The longest a compiler, `man` or the install script may take.
const STEP_LIMIT: Duration = Duration::from_secs(300);

/// The build installed by every test: the directory holding
/// `libstagebus.so`, `libstagebus.a` and `stagebus`.
fn built() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        support::build(
            support::SHARED_BUILD_DIR,
            &[],
            &["--lib", "--bin", "stagebus"],
        )
        .unwrap_or_else(|e| panic!("cannot build the library and binary: {e}"))
    })
}

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = tmp.join(format!("install-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `scripts/install.sh ARGS…`; its exit status, stdout and stderr.
fn install(args: &[&str]) -> (Option<i32>, String, String) {
    let (status, stdout, stderr) = run_bounded_text(
        Command::new("bash")
            .arg(root().join("scripts/install.sh"))
            .args(args)
            .env_remove("DESTDIR"),
        STEP_LIMIT,
    );
    (status.code(), stdout, stderr)
}

/// Runs a command that must succeed; its stdout. `package` provides it.
#[track_caller]
fn must(cmd: &mut Command, package: &str) -> String {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let (status, stdout, stderr) = run_bounded_text(cmd, STEP_LIMIT);
    assert!(
        status.success(),
        "{program} failed ({status}); is {package} installed? (apt-get install {package})\n{stdout}{stderr}"
    );
    stdout
}

fn soname() -> String {
    let v: Vec<&str> = env!("CARGO_PKG_VERSION").split('.').collect();
    format!("libstagebus.so.{}.{}", v[0], v[1])
}

#[test]
fn install_into_a_prefix_then_build_and_call_with_pkg_config() {
    let dir = Dir::new("prefix");
    let prefix = dir.0.join("usr");
    let p = prefix.to_str().unwrap();
    let from = built().to_str().unwrap();
    let (code, stdout, stderr) = install(&["--prefix", p, "--from", from]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // The files, and the library's links.
    let version = env!("CARGO_PKG_VERSION");
    let lib = prefix.join("lib");
    for f in [
        format!("lib/libstagebus.so.{version}"),
        "lib/libstagebus.a".into(),
        "lib/pkgconfig/stagebus.pc".into(),
        "include/stagebus.h".into(),
        "include/stagebus.hpp".into(),
        "bin/stagebus".into(),
        "share/man/man1/stagebus.1".into(),
        "share/bash-completion/completions/stagebus".into(),
        "share/zsh/site-functions/_stagebus".into(),
        "share/fish/vendor_completions.d/stagebus.fish".into(),
        "share/perl5/StageBus.pm".into(),
        "share/perl5/StageBus/Client.pm".into(),
        "lib/systemd/system/stagebus-broker.service".into(),
        "lib/systemd/system/stagebus-broker.socket".into(),
    ] {
        assert!(prefix.join(&f).is_file(), "{f} is not installed");
    }
    let link = |name: &str| std::fs::read_link(lib.join(name)).unwrap();
    assert_eq!(
        link(&soname()),
        PathBuf::from(format!("libstagebus.so.{version}"))
    );
    assert_eq!(link("libstagebus.so"), PathBuf::from(soname()));
    let pc = std::fs::read_to_string(lib.join("pkgconfig/stagebus.pc")).unwrap();
    assert!(pc.contains(&format!("prefix={p}\n")), "{pc}");
    let unit = std::fs::read_to_string(lib.join("systemd/system/stagebus-broker.service")).unwrap();
    assert!(unit.contains("\nType=notify\n"), "{unit}");
    assert!(
        unit.contains(&format!("\nExecStart={p}/bin/stagebus broker\n")),
        "{unit}"
    );
    assert!(pc.contains(&format!("Version: {version}\n")), "{pc}");

    // systemd accepts the units, where it can be asked.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let units = lib.join("systemd/system");
        must(
            Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(units.join("stagebus-broker.socket"))
                .arg(units.join("stagebus-broker.service")),
            "systemd",
        );
    } else {
        eprintln!("SKIP systemd-analyze verify of the units: systemd-analyze is not installed");
    }

    // A C program built with nothing but pkg-config.
    let pc_path = lib.join("pkgconfig");
    let flags = must(
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "stagebus"])
            .env("PKG_CONFIG_PATH", &pc_path),
        "pkg-config",
    );
    let flags: Vec<&str> = flags.split_whitespace().collect();
    assert!(flags.contains(&"-lstagebus"), "{flags:?}");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let exe = dir.0.join("call_echo");
    must(
        Command::new(&cc)
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror"])
            .arg(root().join("examples/c/call_echo.c"))
            .arg("-o")
            .arg(&exe)
            .args(&flags)
            .arg(format!("-Wl,-rpath,{}", lib.display())),
        "gcc",
    );
    // The C++ header installed beside it.
    let cpp_src = dir.0.join("version.cpp");
    std::fs::write(
        &cpp_src,
        "#include <stagebus.hpp>\n#include <cstdio>\n\
         int main() { stagebus::Loop loop; std::printf(\"%s\\n\", stagebus::version()); }\n",
    )
    .unwrap();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let cpp_exe = dir.0.join("version");
    must(
        Command::new(&cxx)
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror"])
            .arg(&cpp_src)
            .arg("-o")
            .arg(&cpp_exe)
            .args(&flags)
            .arg(format!("-Wl,-rpath,{}", lib.display())),
        "g++",
    );
    assert_eq!(must(&mut Command::new(&cpp_exe), "g++").trim(), version);

    // Against the installed broker and `stagebus serve`.
    let stagebus = prefix.join("bin/stagebus");
    let mut broker = Proc::spawn(
        "broker",
        Command::new(&stagebus).args(["broker", "--listen", "tcp://127.0.0.1:0"]),
    );
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    let address = line["listening on ".len()..].trim().to_string();
    let mut service = Proc::spawn(
        "serve",
        Command::new(&stagebus).args(["serve", "--broker", &address, "--name", "Demo"]),
    );
    service.wait_line("serving", |l| l.starts_with("serving Demo"));
    let mut call = Proc::spawn("call_echo", Command::new(&exe).arg(&address));
    assert!(call.wait_exit().success(), "{}", call.transcript());
    assert_eq!(call.output().trim(), "Demo.echo returned text=hello");
    // The program loaded the installed library, by its SONAME.
    let needed = must(Command::new("readelf").arg("-d").arg(&exe), "binutils");
    assert!(needed.contains(&format!("[{}]", soname())), "{needed}");
    service.terminate();
    assert!(service.wait_exit().success(), "{}", service.transcript());
    broker.terminate();
    assert!(broker.wait_exit().success(), "{}", broker.transcript());

    // The man page renders.
    let page = must(
        Command::new("man")
            .arg("-l")
            .arg(prefix.join("share/man/man1/stagebus.1"))
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "100"),
        "man-db",
    );
    for wanted in [
        "stagebus",
        "COMMANDS",
        "--json-args",
        "EXIT STATUS",
        "$bytes",
    ] {
        assert!(
            page.contains(wanted),
            "the man page lacks {wanted:?}:\n{page}"
        );
    }

    // bash loads the completions and completes the commands.
    let script = format!(
        "source '{}' && COMP_WORDS=(stagebus '') && COMP_CWORD=1 && \
         _stagebus stagebus '' stagebus && echo \"${{COMPREPLY[*]}}\"",
        prefix
            .join("share/bash-completion/completions/stagebus")
            .display()
    );
    let words = must(Command::new("bash").arg("-c").arg(&script), "bash");
    for command in ["broker", "list", "call", "serve", "demo"] {
        assert!(
            words.split_whitespace().any(|w| w == command),
            "bash completes {words:?}"
        );
    }
    assert!(
        !words.contains("generate"),
        "the hidden command is completed"
    );

    // The installed Perl module loads the installed library.
    let has_platypus = Command::new("perl")
        .args(["-MFFI::Platypus", "-e", "1"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_platypus {
        let out = must(
            Command::new("perl")
                .arg("-I")
                .arg(prefix.join("share/perl5"))
                .args(["-MStageBus", "-e", "print $StageBus::LIBRARY"])
                .env_remove("STAGEBUS_LIB")
                .current_dir(&dir.0),
            "libffi-platypus-perl",
        );
        assert_eq!(out, lib.join(soname()).display().to_string());
    } else {
        eprintln!(
            "SKIP the installed Perl module: FFI::Platypus is missing \
             (libffi-platypus-perl; scripts/test.sh installs it)"
        );
    }
}

#[test]
fn destdir_stages_files_that_name_the_prefix() {
    let dir = Dir::new("destdir");
    let stage = dir.0.join("stage");
    let from = built().to_str().unwrap();
    let (code, stdout, stderr) = install(&[
        "--prefix",
        "/opt/stagebus-test",
        "--destdir",
        stage.to_str().unwrap(),
        "--from",
        from,
        "--no-perl",
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let staged = stage.join("opt/stagebus-test");
    assert!(staged.join("bin/stagebus").is_file());
    assert!(staged.join("include/stagebus.h").is_file());
    assert!(
        !staged.join("share/perl5").exists(),
        "--no-perl installs Perl"
    );
    assert!(!Path::new("/opt/stagebus-test").exists());
    let pc = std::fs::read_to_string(staged.join("lib/pkgconfig/stagebus.pc")).unwrap();
    assert!(pc.contains("prefix=/opt/stagebus-test\n"), "{pc}");
    assert!(pc.contains("libdir=/opt/stagebus-test/lib\n"), "{pc}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["--prefix", "relative/dir"][..],
        &["--prefix"],
        &["--frobnicate"],
        &["--from", "/nonexistent-stagebus-build"],
    ] {
        let (code, stdout, stderr) = install(args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.starts_with("scripts/install.sh: "),
            "{args:?}: {stderr}"
        );
    }
    let (code, stdout, _) = install(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--destdir DIR"), "{stdout}");
}
