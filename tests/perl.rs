//! The Perl binding (`bindings/perl`), tested from Perl and run from here.
//!
//! * `prove -I bindings/perl/lib bindings/perl/t`: every `.t` file, with
//!   the library this test built (`STAGEBUS_LIB`).
//! * `bindings/perl/t/03-all-call-types-anyevent.t` once more with
//!   AnyEvent's pure-Perl backend (`PERL_ANYEVENT_MODEL=Perl`), whatever
//!   backend AnyEvent would pick by itself.
//! * `examples/perl/`: `broker.pl` runs as a child on
//!   `tcp://127.0.0.1:0` (its printed address is read back), `service.pl`
//!   (under POE) publishes against it (its "ready" is awaited),
//!   `caller.pl` (under AnyEvent) runs its transcript (exit 0 and the key
//!   lines are checked), then the service and the broker are stopped with
//!   SIGTERM and must exit 0. A caller started before the service must
//!   fail.
//!
//! * The distribution: a clean copy of `bindings/perl` (the files its
//!   MANIFEST names) passes `perl Makefile.PL && make && make test`
//!   outside the source tree, and installs (`make install`,
//!   `INSTALL_BASE`) into a temporary prefix, from which a program runs
//!   with no `STAGEBUS_LIB`, finding the library installed in that
//!   prefix.
//!
//! Set-up: `cargo build --lib` (the test's profile) into its own target
//! dir, `<target>/lib-build` (shared with examples.rs and install.rs), so that the library is fresh without waiting
//! for the build lock of the outer `cargo test` (the build, the bounded
//! runs and the child-process guard are `tests/support`); the binding loads it by
//! absolute path from `STAGEBUS_LIB` (`libstagebus.so`, whatever SONAME
//! it records).
//!
//! Perl modules (Debian): `libffi-platypus-perl`, `libpoe-perl`,
//! `libanyevent-perl` (and `perl` for `prove`; `libffi-checklib-perl`,
//! which an installed binding uses to find the library, is optional).
//! Without them every test here is skipped with a message naming the
//! packages; `scripts/test.sh`
//! installs them.
//!
//! Every wait is bounded and every child is killed when its test fails
//! (a guard).

mod nats_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use support::{root, run_bounded_text, Proc};

/// The longest `prove` may run (the leak check's 50,000 requests included).
const PROVE_LIMIT: Duration = Duration::from_secs(1200);

/// The Perl modules the binding and its tests need, and their packages.
const MODULES: [(&str, &str); 3] = [
    ("FFI::Platypus", "libffi-platypus-perl"),
    ("POE", "libpoe-perl"),
    ("AnyEvent", "libanyevent-perl"),
];

// ---------------------------------------------------------------------
// Set-up: Perl and its modules, the library

/// Why the Perl tests cannot run here (a missing module), if they cannot.
fn missing_perl() -> Option<String> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING
        .get_or_init(|| {
            let mut missing = Vec::new();
            for (module, package) in MODULES {
                let ok = Command::new("perl")
                    .arg(format!("-M{module}"))
                    .args(["-e", "1"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    missing.push(format!("{module} ({package})"));
                }
            }
            let prove = Command::new("prove")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !prove {
                missing.push("prove (perl)".to_string());
            }
            (!missing.is_empty()).then(|| missing.join(", "))
        })
        .clone()
}

/// Skips the calling test (with a message) when Perl modules are missing.
macro_rules! require_perl {
    () => {
        if let Some(missing) = missing_perl() {
            eprintln!(
                "SKIPPED: the Perl binding tests need {missing}; \
                 install them (scripts/test.sh does) to run them"
            );
            return;
        }
    };
}

/// Builds the library once per test binary; its absolute path.
fn library() -> &'static Path {
    static LIB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match LIB.get_or_init(build_library) {
        Ok(p) => p,
        Err(e) => panic!("cannot build the library: {e}"),
    }
}

fn build_library() -> Result<PathBuf, String> {
    let lib = support::build_library(support::SHARED_BUILD_DIR, &[])?;
    // The link-time name: whatever SONAME the library records, loading it
    // by this absolute path works.
    lib.canonicalize()
        .map_err(|e| format!("{} was not built: {e}", lib.display()))
}

/// `perl` with the binding on @INC and the library chosen, run from the
/// repository root.
fn perl(args: &[&str]) -> Command {
    let mut cmd = Command::new("perl");
    cmd.current_dir(root())
        .env("STAGEBUS_LIB", library())
        .env("STAGEBUS_TEST_TLS", support::certs::tls_dir())
        .arg("-I")
        .arg(root().join("bindings/perl/lib"))
        .args(args);
    cmd
}

/// Test files run at once by `prove` and `make test`: each .t starts its
/// own brokers on free ports and waits on sockets more than it computes,
/// so two at a time roughly halves the suite on the 2-core CI machine.
const PROVE_JOBS: &str = "2";

fn prove(args: &[&str], env: &[(&str, &str)]) {
    let mut cmd = Command::new("prove");
    cmd.current_dir(root())
        .env("STAGEBUS_LIB", library())
        .env("STAGEBUS_TEST_TLS", support::certs::tls_dir())
        .args(["-I", "bindings/perl/lib", "-j", PROVE_JOBS])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // t/30-federation-call.t starts its own nats-server (installed here
    // when missing); it skips without one.
    if let Some(server) = nats_support::nats_server() {
        cmd.env("NATS_SERVER", server);
    }
    let (status, stdout, stderr) = run_bounded_text(&mut cmd, PROVE_LIMIT);
    assert!(
        status.success(),
        "prove {args:?} failed ({status})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("Result: PASS"),
        "prove {args:?} did not pass\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

// ---------------------------------------------------------------------
// The tests

/// Held by the tests that run the whole Perl suite (its 50,000-request
/// leak check included), so that two of them never load the machine at
/// once.
static WHOLE_SUITE: Mutex<()> = Mutex::new(());

fn whole_suite() -> MutexGuard<'static, ()> {
    WHOLE_SUITE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn prove_bindings_perl_t() {
    require_perl!();
    let _suite = whole_suite();
    prove(&["bindings/perl/t"], &[]);
}

#[test]
fn anyevent_pure_perl_backend() {
    require_perl!();
    prove(
        &["bindings/perl/t/03-all-call-types-anyevent.t"],
        &[("PERL_ANYEVENT_MODEL", "Perl")],
    );
}

/// Starts `examples/perl/broker.pl` on a free TCP port; its address.
fn start_broker() -> (Proc, String) {
    let mut broker = Proc::spawn(
        "broker.pl",
        &mut perl(&["examples/perl/broker.pl", "tcp://127.0.0.1:0"]),
    );
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    let address = line["listening on ".len()..].to_string();
    assert!(
        address.starts_with("tcp://127.0.0.1:") && !address.ends_with(":0"),
        "broker.pl printed {address}"
    );
    (broker, address)
}

#[test]
fn examples_broker_service_caller() {
    require_perl!();
    let (mut broker, address) = start_broker();

    let mut service = Proc::spawn(
        "service.pl",
        &mut perl(&["examples/perl/service.pl", &address]),
    );
    service.wait_line("ready", |l| l == "ready");

    let mut caller = Proc::spawn(
        "caller.pl",
        &mut perl(&["examples/perl/caller.pl", &address]),
    );
    let status = caller.wait_exit();
    assert!(
        status.success(),
        "caller.pl failed ({status})\n{}",
        caller.transcript()
    );
    let out = caller.output();
    for line in [
        "subscribed to Greeter",
        "hello -> Hello, Perl!",
        "count emit i=1",
        "count emit i=3",
        "count -> total 3 after 3 emits",
        "ask emit question: What is your name?",
        "ask -> Nice to meet you, Ann.",
        "slow cancelled after 50 ms",
        "nope -> error no_such_method",
        "count -1 -> error invalid_argument: n must be between 0 and 1000",
        "done",
    ] {
        assert!(
            out.contains(line),
            "caller.pl did not print {line:?}\n{}",
            caller.transcript()
        );
    }

    // The service saw the cancel of `slow`.
    service.wait_line("the cancel of slow", |l| {
        l.starts_with("slow: on_cancel ran")
    });
    service.terminate();
    let status = service.wait_exit();
    assert!(
        status.success(),
        "service.pl did not stop cleanly on SIGTERM ({status})\n{}",
        service.transcript()
    );
    assert!(
        service.output().contains("stopping on signal TERM"),
        "{}",
        service.transcript()
    );

    broker.terminate();
    let status = broker.wait_exit();
    assert!(
        status.success(),
        "broker.pl did not stop cleanly on SIGTERM ({status})\n{}",
        broker.transcript()
    );
    assert!(
        broker.output().contains("stopping on signal TERM"),
        "{}",
        broker.transcript()
    );
}

#[test]
fn example_caller_without_service_fails() {
    require_perl!();
    let (mut broker, address) = start_broker();
    let mut caller = Proc::spawn(
        "caller.pl",
        &mut perl(&["examples/perl/caller.pl", &address]),
    );
    let status = caller.wait_exit();
    assert_eq!(
        status.code(),
        Some(1),
        "caller.pl without a service must exit 1\n{}",
        caller.transcript()
    );
    let stderr = caller.stderr.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        stderr.contains("cannot subscribe to Greeter") && stderr.contains("no_such_session"),
        "{}",
        caller.transcript()
    );
    broker.terminate();
    assert!(broker.wait_exit().success(), "{}", broker.transcript());
}

// ---------------------------------------------------------------------
// The distribution (bindings/perl as a CPAN-style distribution)

/// A fresh directory under the tests' temp dir.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", support::profile()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot empty {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
    dir
}

/// A clean copy of the distribution: exactly the files its MANIFEST
/// names (what `make dist` would pack), in `<dir>/StageBus`.
fn clean_copy(dir: &Path) -> PathBuf {
    let src = root().join("bindings/perl");
    let dst = dir.join("StageBus");
    let manifest = std::fs::read_to_string(src.join("MANIFEST")).expect("bindings/perl/MANIFEST");
    for line in manifest.lines() {
        let file = line.split_whitespace().next().unwrap_or("");
        if file.is_empty() || file.starts_with('#') {
            continue;
        }
        let to = dst.join(file);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(src.join(file), &to).unwrap_or_else(|e| panic!("cannot copy {file}: {e}"));
    }
    dst
}

/// Runs one build step in `dir`; its stdout (the test fails on an error).
fn make_step(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).args(args).env_remove("PERL5LIB");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // t/30-federation-call.t starts its own nats-server (installed here
    // when missing); it skips without one.
    if let Some(server) = nats_support::nats_server() {
        cmd.env("NATS_SERVER", server);
    }
    let (status, stdout, stderr) = run_bounded_text(&mut cmd, PROVE_LIMIT);
    assert!(
        status.success(),
        "{program} {args:?} in {} failed ({status})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        dir.display()
    );
    stdout
}

fn make_available() -> bool {
    Command::new("make")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `perl Makefile.PL && make && make test` from a clean copy of
/// bindings/perl, outside the source tree (so the library comes from
/// `STAGEBUS_LIB`); the leak check runs shorter here (prove_bindings_perl_t
/// runs it in full).
#[test]
fn distribution_make_test_from_clean_copy() {
    require_perl!();
    if !make_available() {
        eprintln!("SKIPPED: no make");
        return;
    }
    let _suite = whole_suite();
    let dist = clean_copy(&fresh_dir("perl-dist-test"));
    let lib = library().to_str().expect("a UTF-8 path").to_string();
    make_step(&dist, "perl", &["Makefile.PL"], &[]);
    make_step(&dist, "make", &[], &[]);
    let out = make_step(
        &dist,
        "make",
        &["test"],
        &[
            ("STAGEBUS_LIB", &lib),
            ("HARNESS_OPTIONS", &format!("j{PROVE_JOBS}")),
            ("STAGEBUS_LEAK_WARMUP", "5000"),
            ("STAGEBUS_LEAK_REQUESTS", "5000"),
        ],
    );
    assert!(
        out.contains("Result: PASS"),
        "make test did not pass:\n{out}"
    );
    // Outside the source tree: the C test skips, everything else ran.
    assert!(
        out.contains("t/25-c-calls-published-poe.t") && out.contains("skipped"),
        "{out}"
    );
}

/// The program run against the installed distribution: a broker, an
/// ordinary POE session published, a proxy session posted to.
const INSTALLED_PROGRAM: &str = r#"
use strict;
use warnings;
use POE;
use StageBus;
use StageBus::POE;
use StageBus::POE::Proxy;
use StageBus::POE::Publish;

print "module $INC{'StageBus.pm'}\n";
print "library $StageBus::LIBRARY\n";
my $loop   = StageBus::Loop->new;
my $host   = StageBus::POE->new(loop => $loop);
my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
my $client = StageBus::Client->new(loop => $loop, address => $broker->address);
POE::Session->create(inline_states => {
    _start => sub {
        $_[KERNEL]->alias_set('calc');
        $_[KERNEL]->delay(timeout => 30);
        StageBus::POE::Publish->new(client => $client, name => 'Calc', events => ['add'],
            return_event => 'published');
    },
    add        => sub { $_[ARG0] + $_[ARG1] },
    published  => sub {
        StageBus::POE::Proxy->subscribe(client => $client, session => 'Calc',
            return_event => 'subscribed', response_event => 'answered');
    },
    subscribed => sub { $_[KERNEL]->post(Calc => add => 2, 40) },
    answered   => sub {
        print "add -> $_[ARG1]{result}\n";
        $_[KERNEL]->delay('timeout');
        $_[KERNEL]->alias_remove('calc');
        StageBus::POE::Proxy->by_alias('Calc')->unsubscribe(on_done => sub { $host->shutdown });
    },
    timeout    => sub { print "timed out\n"; exit 1 },
});
POE::Kernel->run;
print "done\n";
"#;

/// `make install` into a temporary prefix (INSTALL_BASE), the library
/// put in that prefix's lib dir as an installed libstagebus would be;
/// then a program using the installed modules runs from elsewhere, with
/// no `STAGEBUS_LIB`: it loads the installed modules and finds the
/// installed library itself.
#[test]
fn distribution_installs_into_a_prefix() {
    require_perl!();
    if !make_available() {
        eprintln!("SKIPPED: no make");
        return;
    }
    let work = fresh_dir("perl-dist-install");
    let dist = clean_copy(&work);
    let prefix = work.join("prefix");
    let prefix_arg = format!("INSTALL_BASE={}", prefix.display());
    make_step(&dist, "perl", &["Makefile.PL", &prefix_arg], &[]);
    make_step(&dist, "make", &[], &[]);
    make_step(&dist, "make", &["install"], &[]);
    let installed_lib = prefix.join("lib/libstagebus.so");
    std::fs::copy(library(), &installed_lib).expect("install the library");
    let modules = prefix.join("lib/perl5");
    assert!(
        modules.join("StageBus/POE/Proxy.pm").exists(),
        "make install put no StageBus/POE/Proxy.pm in {}",
        modules.display()
    );

    let program = work.join("program.pl");
    std::fs::write(&program, INSTALLED_PROGRAM).expect("write the program");
    let mut cmd = Command::new("perl");
    cmd.current_dir(&work)
        .env_remove("STAGEBUS_LIB")
        .env("PERL5LIB", &modules)
        .arg(&program);
    let (status, stdout, stderr) = run_bounded_text(&mut cmd, Duration::from_secs(120));
    assert!(
        status.success(),
        "the program failed ({status})\n{stdout}\n{stderr}"
    );
    let want_module = format!("module {}", modules.join("StageBus.pm").display());
    let want_library = format!("library {}", installed_lib.display());
    for line in [
        want_module.as_str(),
        want_library.as_str(),
        "add -> 42",
        "done",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "the program did not print {line:?}\n{stdout}\n{stderr}"
        );
    }
}
