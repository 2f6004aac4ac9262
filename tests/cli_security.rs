//! Security of the `stagebus` command line, with real processes:
//!
//! * a token given by file or by `STAGEBUS_TOKEN` never shows in
//!   `/proc/PID/cmdline`; a token file others may read is refused;
//! * two uids (the tests run as root; children drop to `nobody` before
//!   exec): the broker's policy allows and denies publish and call by
//!   uid, each denial is `access_denied` for the child and a broker log
//!   line naming the uid, and a publisher sees the caller's uid and pid.
//! * a `gid=` rule matches a child's supplementary group, not only its
//!   primary one.

mod support;

use stagebus::{Client, ClientConfig, Delivery, EventLoop, Inbound};
use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;
use support::Proc;

const LIMIT: Duration = Duration::from_secs(20);
const NOBODY: u32 = 65534;

fn stagebus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stagebus"))
}

/// A fresh directory every user may enter, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("stagebus-sec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }

    fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `stagebus broker` with `args` and waits for its address.
fn broker(args: &[&str]) -> (Proc, String) {
    let mut p = Proc::spawn("broker", stagebus().arg("broker").args(args));
    let line = p.wait_line("the address", |l| l.starts_with("listening on "));
    let address = line.trim_start_matches("listening on ").to_string();
    (p, address)
}

fn cmdline(pid: u32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    String::from_utf8_lossy(&bytes).replace('\0', " ")
}

/// Runs a short command to completion: exit code, stdout, stderr.
fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let (status, out, err) = support::run_bounded_text(cmd, LIMIT);
    (status.code(), out, err)
}

fn is_root() -> bool {
    // SAFETY: geteuid only reads the process's id.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_token_from_a_file_or_the_environment_stays_off_the_command_line() {
    let dir = TempDir::new("token");
    let secret = "S3cret-Never-Shown";
    let broker_file = dir.file("broker.tokens", &format!("# tokens\n{secret}\n"), 0o600);
    let client_file = dir.file("client.token", &format!("{secret}\n"), 0o400);
    let listen = format!("unix:{}/bus.sock", dir.0.display());
    let (b, address) = broker(&[
        "--listen",
        &listen,
        "--token-file",
        broker_file.to_str().unwrap(),
    ]);
    assert!(!cmdline(b.child.id()).contains(secret));

    // serve with the token in the environment.
    let mut serve = Proc::spawn(
        "serve",
        stagebus()
            .args(["serve", "--broker", &address, "--name", "Svc"])
            .env("STAGEBUS_TOKEN", secret),
    );
    serve.wait_line("serving", |l| l.starts_with("serving Svc"));
    let line = cmdline(serve.child.id());
    assert!(line.contains("serve") && !line.contains(secret), "{line}");

    // list with the token file, and without any token (refused).
    let (code, out, err) = run(stagebus().args([
        "list",
        "--broker",
        &address,
        "--token-file",
        client_file.to_str().unwrap(),
    ]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Svc"), "{out}");
    let (code, _, err) = run(stagebus()
        .args(["list", "--broker", &address])
        .env_remove("STAGEBUS_TOKEN"));
    assert_eq!(code, Some(1));
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn a_token_file_others_may_read_is_refused() {
    let dir = TempDir::new("open");
    let open = dir.file("open.token", "s3cret\n", 0o644);
    let (code, _, err) = run(stagebus().args([
        "list",
        "--broker",
        "tcp://127.0.0.1:1",
        "--token-file",
        open.to_str().unwrap(),
    ]));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
    let (code, _, err) = run(stagebus().args([
        "broker",
        "--listen",
        "tcp://127.0.0.1:0",
        "--token-file",
        open.to_str().unwrap(),
    ]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("mode 0644"), "{err}");
    let (code, _, err) = run(stagebus().args([
        "list",
        "--broker",
        "tcp://127.0.0.1:1",
        "--token",
        "a",
        "--token-file",
        open.to_str().unwrap(),
    ]));
    assert_eq!(code, Some(2), "--token and --token-file conflict: {err}");
}

/// `stagebus ARGS` as `nobody` (gid nobody, no supplementary groups).
fn as_nobody(args: &[&str]) -> Command {
    as_nobody_in(args, &[])
}

/// `stagebus ARGS` as `nobody` (gid nobody) in the supplementary
/// `groups`.
fn as_nobody_in(args: &[&str], groups: &'static [libc::gid_t]) -> Command {
    let mut cmd = stagebus();
    cmd.args(args);
    // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid)
    // between fork and exec; `groups` outlives the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Serves on `lp` until `child` exited (bounded by [`LIMIT`]); whether
/// it did. The loop turns in short slices: a child's exit is no event of
/// the loop, so one long turn would wait out its whole limit.
fn serve_until_exit(lp: &EventLoop, child: &mut Proc) -> bool {
    let deadline = std::time::Instant::now() + LIMIT;
    while std::time::Instant::now() < deadline {
        if child.child.try_wait().unwrap().is_some() {
            return true;
        }
        lp.run_until(Duration::from_millis(10), || false).unwrap();
    }
    false
}

const POLICY: &str = "
# root owns Root*, nobody owns Nobody*
allow uid=0 own Root*
allow uid=65534 own Nobody*
# nobody may only echo on RootSvc; root may call anything
allow uid=65534 call RootSvc echo
allow uid=0 call *
allow uid=65534 call Nobody*
";

#[test]
fn the_policy_allows_and_denies_by_uid_and_the_publisher_sees_the_callers_uid_and_pid() {
    if !is_root() {
        eprintln!("skipped: needs root to start children as nobody");
        return;
    }
    let dir = TempDir::new("uids");
    let policy = dir.file("policy", POLICY, 0o644);
    let listen = format!("unix:{}/bus.sock", dir.0.display());
    let (broker_proc, address) = broker(&[
        "--listen",
        &listen,
        "--socket-mode",
        "0666",
        "--policy",
        policy.to_str().unwrap(),
    ]);

    // Root publishes RootSvc in this process, recording who calls.
    let lp = EventLoop::new().unwrap();
    let client = Client::connect(&lp, &address.parse().unwrap(), ClientConfig::default());
    let seen: Rc<RefCell<Vec<stagebus::CallerInfo>>> = Rc::default();
    let s = seen.clone();
    let published = Rc::new(RefCell::new(None));
    let p = published.clone();
    client.publish(
        "RootSvc",
        &["echo", "stop"],
        move |d: &Delivery, inbound: Inbound| {
            if let Inbound::Call { args, .. } = inbound {
                s.borrow_mut().push(d.caller().cloned().unwrap_or_default());
                d.respond("return", &args).unwrap();
            }
        },
        move |r| *p.borrow_mut() = Some(r),
    );
    lp.run_until(LIMIT, || published.borrow().is_some())
        .unwrap();
    published
        .borrow_mut()
        .take()
        .unwrap()
        .expect("root may own RootSvc");

    // nobody calls echo: allowed; the publisher sees its uid and pid.
    // (The child runs while this loop serves the call, on a thread.)
    let call = |args: &[&str]| {
        let mut cmd = as_nobody(args);
        let child = Proc::spawn("call", &mut cmd);
        let pid = child.child.id();
        (child, pid)
    };
    let (mut echo, echo_pid) = call(&["call", "--broker", &address, "RootSvc", "echo", "x=1"]);
    assert!(serve_until_exit(&lp, &mut echo), "{}", echo.transcript());
    let status = echo.wait_exit();
    assert!(status.success(), "{}", echo.transcript());
    let who = seen.borrow()[0].clone();
    assert_eq!(who.uid, Some(NOBODY));
    assert_eq!(who.gid, Some(NOBODY));
    assert_eq!(who.pid, Some(echo_pid));

    // nobody calls stop: denied.
    let (mut stop, _) = call(&["call", "--broker", &address, "RootSvc", "stop"]);
    assert!(serve_until_exit(&lp, &mut stop), "{}", stop.transcript());
    let status = stop.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", stop.transcript());
    assert!(
        stop.transcript().contains("access_denied"),
        "{}",
        stop.transcript()
    );
    assert_eq!(
        seen.borrow().len(),
        1,
        "the denied call never reached the publisher"
    );

    // nobody publishes: Nobody* allowed, Root* denied.
    let mut own = as_nobody(&["serve", "--broker", &address, "--name", "NobodySvc"]);
    let mut serving = Proc::spawn("serve", &mut own);
    serving.wait_line("serving", |l| l.starts_with("serving NobodySvc"));
    let mut take = as_nobody(&["serve", "--broker", &address, "--name", "RootOther"]);
    let (code, _, err) = run(&mut take);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("access_denied"), "{err}");

    // Root calls nobody's service: allowed by uid=0 call *.
    let (code, out, err) =
        run(stagebus().args(["call", "--broker", &address, "NobodySvc", "echo", "x=2"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains('2'), "{out}");

    // Each denial left a log line with the uid.
    drop(client);
    broker_proc.terminate();
    let mut broker_proc = broker_proc;
    broker_proc.wait_exit();
    let log = broker_proc.stderr.lock().unwrap().clone();
    let denials: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("access denied"))
        .collect();
    assert_eq!(denials.len(), 2, "{log}");
    for line in &denials {
        assert!(line.contains("uid=65534"), "{line}");
    }
    assert!(
        denials
            .iter()
            .any(|l| l.contains("call 'stop' of 'RootSvc'")),
        "{log}"
    );
    assert!(
        denials.iter().any(|l| l.contains("own 'RootOther'")),
        "{log}"
    );
}

#[test]
fn a_gid_rule_matches_a_supplementary_group() {
    if !is_root() {
        eprintln!("skipped: needs root to start children as nobody");
        return;
    }
    let dir = TempDir::new("groups");
    let policy = dir.file("policy", "allow gid=4242 own Grouped*\n", 0o644);
    let listen = format!("unix:{}/bus.sock", dir.0.display());
    let (_broker, address) = broker(&[
        "--listen",
        &listen,
        "--socket-mode",
        "0666",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    // nobody (primary group nobody) in the supplementary group 4242.
    let mut own = as_nobody_in(
        &["serve", "--broker", &address, "--name", "GroupedSvc"],
        &[4242],
    );
    let mut serving = Proc::spawn("serve", &mut own);
    serving.wait_line("serving", |l| l.starts_with("serving GroupedSvc"));
    // nobody outside it: denied.
    let mut take = as_nobody(&["serve", "--broker", &address, "--name", "GroupedOther"]);
    let (code, _, err) = run(&mut take);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("access_denied"), "{err}");
    serving.terminate();
}
