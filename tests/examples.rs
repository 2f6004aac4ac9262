//! The C, C++ and Rust examples, built the way a user builds them and
//! run.
//!
//! * `examples/rust/`: the service, the host loop and the caller against
//!   the command-line broker on a Unix socket in a temporary directory.
//! * `examples/c/broker.c`, `service.c`, `caller.c`: the broker runs as a
//!   child on `tcp://127.0.0.1:0` (its printed address is read back), the
//!   service publishes against it (its "ready" is awaited), the caller
//!   runs its transcript to completion (exit 0 and the key lines are
//!   checked), then the service and the broker are stopped with SIGTERM
//!   and must exit 0. A caller started before the service must fail.
//! * `examples/c/*_embed.c` (libevent, libev, GLib), `examples/c/hello.c`
//!   and `examples/cpp/dialogue.cpp`: run alone, exit 0 expected.
//!
//! Set-up: `cargo build --lib` (the test's profile) into its own target
//! dir, `<target>/lib-build` (shared with perl.rs and install.rs), so that the C library is fresh without
//! waiting for the build lock of the outer `cargo test` (the build, the
//! bounded runs and the child-process guard are `tests/support`). Each test then
//! makes a temporary directory holding `libstagebus.so` and a symlink
//! named after the library's SONAME (read with `readelf -d`, else
//! `objdump -p`), compiles with `cc -std=c99` / `c++ -std=c++17` and
//! `-Wall -Wextra -Werror -L<dir> -lstagebus -Wl,-rpath,<dir>`, and
//! removes the directory when it ends. `CC` / `CXX` pick other
//! compilers.
//!
//! System packages (Debian): `libevent-dev`, `libev-dev`,
//! `libglib2.0-dev`, and `pkg-config`; a missing one fails its test
//! with the package's name.
//!
//! Every child is killed when its test fails (a guard), and every wait
//! is bounded.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{root, run_bounded_text, Proc};

/// The longest a compiler or pkg-config may take.
const COMPILE_LIMIT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------
// The library and a place to build against it

/// Builds the C library and the Rust examples once per test binary; the
/// directory they are in.
fn built() -> &'static Path {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match OUT
        .get_or_init(|| support::build(support::SHARED_BUILD_DIR, &[], &["--lib", "--examples"]))
    {
        Ok(p) => p,
        Err(e) => panic!("cannot build the C library and the Rust examples: {e}"),
    }
}

/// The C library's path.
fn library() -> PathBuf {
    built().join("libstagebus.so")
}

/// A Rust example's program (built by `cargo build --examples`).
fn rust_example(name: &str) -> PathBuf {
    built().join("examples").join(name)
}

/// The SONAME recorded in the library, if any (readelf, else objdump).
fn soname(lib: &Path) -> Option<String> {
    let tools: [(&str, &[&str]); 2] = [("readelf", &["-d"]), ("objdump", &["-p"])];
    for (tool, args) in tools {
        let Ok(out) = Command::new(tool).args(args).arg(lib).output() else {
            continue;
        };
        if !out.status.success() {
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // readelf: "... (SONAME)  Library soname: [libstagebus.so.0.1]"
            if let Some(rest) = line.split("Library soname: [").nth(1) {
                return rest.split(']').next().map(str::to_string);
            }
            // objdump: "  SONAME               libstagebus.so.0.1"
            let mut words = line.split_whitespace();
            if words.next() == Some("SONAME") {
                return words.next().map(str::to_string);
            }
        }
        return None; // the tool ran: there is no SONAME
    }
    None
}

/// A temporary directory for one test, removed when dropped: `lib/`
/// holds the library under its link-time name and its SONAME; programs
/// are compiled into it.
struct Work {
    dir: PathBuf,
    lib: PathBuf,
}

impl Work {
    fn new(name: &str) -> Work {
        let library = &library();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "stagebus-examples-{name}-{}-{nanos}",
            std::process::id()
        ));
        let lib = dir.join("lib");
        std::fs::create_dir_all(&lib).unwrap_or_else(|e| panic!("mkdir {}: {e}", lib.display()));
        let work = Work { dir, lib };
        let mut names = vec!["libstagebus.so".to_string()];
        names.extend(soname(library).filter(|s| s != "libstagebus.so"));
        for n in names {
            std::os::unix::fs::symlink(library, work.lib.join(&n))
                .unwrap_or_else(|e| panic!("symlink {n}: {e}"));
        }
        work
    }

    /// Compiles one example with `compiler` and `std`, plus `extra`
    /// flags after the library; the program's path.
    fn compile(&self, compiler: &str, std: &str, src: &str, extra: &[String]) -> PathBuf {
        let src = root().join(src);
        let stem = src.file_stem().expect("a file name").to_string_lossy();
        let exe = self.dir.join(stem.as_ref());
        let mut cmd = Command::new(compiler);
        cmd.arg(format!("-std={std}"))
            .args(["-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
            .arg("-I")
            .arg(root().join("include"))
            .arg("-I")
            .arg(root().join("bindings/cpp"))
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .arg("-L")
            .arg(&self.lib)
            .arg("-lstagebus")
            .args(extra)
            .arg(format!("-Wl,-rpath,{}", self.lib.display()));
        let (status, stdout, stderr) = run_bounded_text(&mut cmd, COMPILE_LIMIT);
        assert!(
            status.success(),
            "{compiler} rejects {}:\n{stdout}{stderr}",
            src.display()
        );
        exe
    }

    fn cc(&self, src: &str, extra: &[String]) -> PathBuf {
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
        self.compile(&cc, "c99", src, extra)
    }

    fn cxx(&self, src: &str) -> PathBuf {
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
        self.compile(&cxx, "c++17", src, &[])
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `pkg-config --cflags --libs <module>`, split; fails naming the Debian
/// package that provides it.
fn pkg_config(module: &str, package: &str) -> Vec<String> {
    let (status, stdout, stderr) = run_bounded_text(
        Command::new("pkg-config").args(["--cflags", "--libs", module]),
        COMPILE_LIMIT,
    );
    assert!(
        status.success(),
        "pkg-config knows no {module}: install {package} (apt-get install {package})\n{stderr}"
    );
    stdout.split_whitespace().map(str::to_string).collect()
}

// ---------------------------------------------------------------------
// The tests

#[test]
fn broker_service_caller() {
    let work = Work::new("bsc");
    let broker_exe = work.cc("examples/c/broker.c", &[]);
    let service_exe = work.cc("examples/c/service.c", &[]);
    let caller_exe = work.cc("examples/c/caller.c", &[]);

    let mut broker = Proc::spawn("broker", Command::new(&broker_exe).arg("tcp://127.0.0.1:0"));
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    let address = line["listening on ".len()..].trim().to_string();
    assert!(address.starts_with("tcp://127.0.0.1:"), "{line}");
    assert!(!address.ends_with(":0"), "the real port is printed: {line}");

    // Without the service the caller must notice and fail.
    let mut early = Proc::spawn("early caller", Command::new(&caller_exe).arg(&address));
    let status = early.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", early.transcript());
    assert!(
        early.output().contains("no_such_session"),
        "{}",
        early.transcript()
    );

    let mut service = Proc::spawn("service", Command::new(&service_exe).arg(&address));
    service.wait_line("\"ready\"", |l| l == "ready");

    let mut caller = Proc::spawn("caller", Command::new(&caller_exe).arg(&address));
    let status = caller.wait_exit();
    let transcript = caller.output();
    println!("{transcript}");
    assert!(
        status.success(),
        "caller: {status}\n{}",
        caller.transcript()
    );
    for wanted in [
        "subscribed to Greeter",
        "hello <- return greeting=\"Hello, caller!\"",
        "count <- emit i=1",
        "count <- emit i=2",
        "count <- emit i=3",
        "count <- return total=3 after 3 emits",
        "ask <- emit question=\"What is your name?\"",
        "ask -> recall answer name=\"caller\"",
        "ask <- return reply=\"Nice to meet you, caller.\"",
        "slow -> cancel after 100 ms (the request was open)",
        "slow: no response after the cancel, as expected",
        "nosuch <- error no_such_method:",
        "caller: 5 of 5 steps passed",
    ] {
        assert!(
            transcript.lines().any(|l| l.starts_with(wanted)),
            "the caller's transcript lacks {wanted:?}\n{}",
            caller.transcript()
        );
    }

    // The service saw the cancel of the very request it was holding.
    let held = service.wait_line("the slow request", |l| {
        l.starts_with("slow: holding request ")
    });
    let id = held
        .trim_start_matches("slow: holding request ")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let wanted = format!("slow: on_cancel ran (request {id})");
    service.wait_line(&wanted, |l| l == wanted);

    // Both stop cleanly on SIGTERM.
    service.terminate();
    let status = service.wait_exit();
    assert!(
        status.success(),
        "service: {status}\n{}",
        service.transcript()
    );
    assert!(service.output().contains("stopping on signal"));
    broker.terminate();
    let status = broker.wait_exit();
    assert!(
        status.success(),
        "broker: {status}\n{}",
        broker.transcript()
    );
    assert!(broker.output().contains("stopping on signal"));
}

/// Runs one program alone: exit 0 and `wanted` printed.
fn run_alone(exe: &Path, wanted: &str) -> String {
    let mut p = Proc::spawn(&exe.display().to_string(), &mut Command::new(exe));
    let status = p.wait_exit();
    println!("{}", p.output());
    assert!(status.success(), "{status}\n{}", p.transcript());
    assert!(
        p.seen.iter().any(|l| l == wanted),
        "no {wanted:?} line\n{}",
        p.transcript()
    );
    p.output()
}

/// An embedding example: it also says its host timer ticked.
fn check_embed(src: &str, host: &str, extra: &[String]) {
    let work = Work::new(host);
    let exe = work.cc(src, extra);
    let out = run_alone(&exe, &format!("{host}: OK"));
    let prefix = format!("{host}: host ticks during the round: ");
    let ticks: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tick count in\n{out}"));
    assert!(ticks > 0, "{out}");
}

#[test]
fn libevent_embed() {
    check_embed(
        "examples/c/libevent_embed.c",
        "libevent",
        &pkg_config("libevent", "libevent-dev"),
    );
}

#[test]
fn libev_embed() {
    // libev ships no pkg-config file.
    check_embed("examples/c/libev_embed.c", "libev", &["-lev".to_string()]);
}

#[test]
fn libev_fds() {
    // The loop's fds watched one by one (sb_loop_watch_fds).
    check_embed("examples/c/libev_fds.c", "libev-fds", &["-lev".to_string()]);
}

#[test]
fn libuv_fds() {
    // libuv watches each of the loop's fds with a uv_poll_t.
    check_embed(
        "examples/c/libuv_fds.c",
        "libuv-fds",
        &pkg_config("libuv", "libuv1-dev"),
    );
}

#[test]
fn glib_embed() {
    check_embed(
        "examples/c/glib_embed.c",
        "glib",
        &pkg_config("glib-2.0", "libglib2.0-dev"),
    );
}

#[test]
fn cpp_dialogue() {
    let work = Work::new("cpp");
    let exe = work.cxx("examples/cpp/dialogue.cpp");
    run_alone(&exe, "dialogue: 5 of 5 steps passed");
}

/// The Rust examples against the command-line broker on a Unix socket:
/// the service publishes `Greeter`, the host loop greets three times
/// while its own timer ticks, the caller follows a countdown and asks the
/// service to quit, and the service exits 0 after its last answer.
#[test]
fn rust_greeter_service_host_loop_and_caller() {
    let service_exe = rust_example("greeter_service");
    let dir = std::env::temp_dir().join(format!("stagebus-rust-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let address = format!("unix:{}", dir.join("broker.sock").display());
    let mut broker = Proc::spawn(
        "broker",
        Command::new(env!("CARGO_BIN_EXE_stagebus")).args(["broker", "--listen", &address]),
    );
    broker.wait_line("its address", |l| l.starts_with("listening on "));
    let mut service = Proc::spawn("service", Command::new(&service_exe).arg(&address));
    service.wait_line("\"ready\"", |l| l == "ready");

    let mut host = Proc::spawn(
        "host_loop",
        Command::new(rust_example("host_loop")).arg(&address),
    );
    let status = host.wait_exit();
    assert!(status.success(), "{}", host.transcript());
    let out = host.output();
    assert_eq!(
        out.matches("return {\"greeting\":\"Hello, host loop!\"}")
            .count(),
        3,
        "{out}"
    );
    assert!(out.contains("3 greetings while the host ticked"), "{out}");

    let mut caller = Proc::spawn(
        "greeter_call",
        Command::new(rust_example("greeter_call")).args([&address, "Ada"]),
    );
    let status = caller.wait_exit();
    assert!(status.success(), "{}", caller.transcript());
    let want = [
        "return {\"greeting\":\"Hello, Ada!\"}",
        "tick {\"n\":3}",
        "tick {\"n\":2}",
        "tick {\"n\":1}",
        "return {\"liftoff\":true}",
        "return {\"bye\":true}",
    ];
    assert_eq!(
        caller.output().lines().collect::<Vec<_>>(),
        want,
        "{}",
        caller.transcript()
    );

    // Answering `quit` and closing in the same turn still delivered the
    // answer (above); the service then ends by itself.
    let status = service.wait_exit();
    assert!(status.success(), "{}", service.transcript());
    assert!(service.output().contains("bye"), "{}", service.transcript());
    broker.terminate();
    assert!(broker.wait_exit().success(), "{}", broker.transcript());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `examples/c/call_echo.c`, the simplest call with a reply (at most 15
/// lines without its includes and comments, shown whole in the README),
/// against the command-line
/// broker and `stagebus serve`: the answer is printed, exit 0; with no
/// service it exits 1 naming `no_such_session`.
#[test]
fn call_echo() {
    let source = std::fs::read_to_string(root().join("examples/c/call_echo.c")).unwrap();
    let body = source
        .split("*/")
        .nth(1)
        .expect("a header comment")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("#include"))
        .count();
    assert!(
        body <= 15,
        "call_echo.c has {body} lines of code, more than 15"
    );

    let work = Work::new("call_echo");
    let exe = work.cc("examples/c/call_echo.c", &[]);
    let stagebus = env!("CARGO_BIN_EXE_stagebus");
    let mut broker = Proc::spawn(
        "broker",
        Command::new(stagebus).args(["broker", "--listen", "tcp://127.0.0.1:0"]),
    );
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    let address = line["listening on ".len()..].trim().to_string();

    let mut early = Proc::spawn("early call_echo", Command::new(&exe).arg(&address));
    assert_eq!(early.wait_exit().code(), Some(1), "{}", early.transcript());
    assert!(
        early.transcript().contains("no_such_session"),
        "{}",
        early.transcript()
    );

    let mut service = Proc::spawn(
        "serve",
        Command::new(stagebus).args(["serve", "--broker", &address, "--name", "Demo"]),
    );
    service.wait_line("serving", |l| l.starts_with("serving Demo"));
    let mut call = Proc::spawn("call_echo", Command::new(&exe).arg(&address));
    assert!(call.wait_exit().success(), "{}", call.transcript());
    assert_eq!(call.output().trim(), "Demo.echo returned text=hello");
    service.terminate();
    assert!(service.wait_exit().success(), "{}", service.transcript());
    broker.terminate();
    assert!(broker.wait_exit().success(), "{}", broker.transcript());
}

/// The README's first program (`tests/readme_recipe.rs` also builds it
/// exactly as the README says): it runs alone and exits 0.
#[test]
fn hello() {
    let work = Work::new("hello");
    let exe = work.cc("examples/c/hello.c", &[]);
    run_alone(&exe, &format!("stagebus {}", env!("CARGO_PKG_VERSION")));
}

/// Every C, C++ and Rust example is run by one of the tests above.
#[test]
fn every_example_is_run() {
    let tested = [
        "c/broker.c",
        "c/call_echo.c",
        "c/caller.c",
        "c/glib_embed.c",
        "c/hello.c",
        "c/libev_embed.c",
        "c/libev_fds.c",
        "c/libevent_embed.c",
        "c/libuv_fds.c",
        "c/service.c",
        "cpp/dialogue.cpp",
        "rust/greeter_call.rs",
        "rust/greeter_service.rs",
        "rust/host_loop.rs",
    ];
    let mut found = Vec::new();
    for dir in ["c", "cpp", "rust"] {
        let Ok(entries) = std::fs::read_dir(root().join("examples").join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".c") || name.ends_with(".cpp") || name.ends_with(".rs") {
                found.push(format!("{dir}/{name}"));
            }
        }
    }
    found.sort();
    assert_eq!(
        found, tested,
        "examples/c, examples/cpp and examples/rust differ from the tested list"
    );
}
