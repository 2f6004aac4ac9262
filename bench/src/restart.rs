//! The `reconnect` case: how long after its broker is restarted a
//! reconnecting caller gets its first answer again.
//!
//! A `stagebus broker` on a Unix socket, a publisher and a caller that
//! both reconnect with the default policy (`ReconnectPolicy::default`:
//! 100 ms doubling to 5 s, 20% jitter). Each round kills the broker with
//! SIGKILL, waits until the caller saw the loss (`DOWN`), and starts a new
//! broker on the same socket; the sample is from just before that start
//! to the caller's first answered call (`UP`, the same monotonic clock).
//! It includes the broker's start, the back-off, the handshake, the
//! publisher's republish and the caller's retries of `no_such_session`
//! until the publisher is back: what a user waits.

use crate::cases::{broker_on, self_cmd, Proc, TempDir};
use crate::roles::{config, connect_with};
use crate::{fail, now_ns, payload};
use stagebus::{Address, CallEvent, Client, ConnectionEvent, EventLoop, ReconnectPolicy};
use std::cell::Cell;
use std::io::Write;
use std::process::ExitCode;
use std::rc::Rc;

/// Runs `rounds` restarts; the samples in nanoseconds.
pub fn case(rounds: usize) -> Vec<u64> {
    let dir = TempDir::new();
    let listen = format!("unix:{}", dir.0.join("broker.sock").display());
    let (mut broker, addr) = broker_on(&listen);
    let mut cmd = self_cmd();
    cmd.args(["publisher", &addr, "--reconnect"]);
    let mut publisher = Proc::spawn(cmd, "publisher", false);
    publisher.expect("ready");
    let mut cmd = self_cmd();
    cmd.args(["restart-caller", &addr]);
    let mut caller = Proc::spawn(cmd, "restart caller", false);
    caller.expect("ready");
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(broker.pid() as i32, libc::SIGKILL) };
        broker.reap();
        caller.expect("DOWN");
        let t0 = now_ns();
        let (b, _) = broker_on(&listen);
        broker = b;
        let up: u64 = caller
            .expect("UP")
            .parse()
            .unwrap_or_else(|e| fail(format!("bad UP line: {e}")));
        samples.push(up.saturating_sub(t0));
    }
    caller.stop();
    publisher.stop();
    broker.stop();
    samples
}

struct State {
    client: Client,
    /// A loss was seen and no call has been answered since.
    need_up: Cell<bool>,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Calls `bench.echo` until one is answered, then says `UP <ns>`.
fn issue(state: &Rc<State>) {
    let s = state.clone();
    let sent = state
        .client
        .call("bench", "echo", &payload(), move |_, event| match event {
            CallEvent::Return { .. } => {
                if s.need_up.replace(false) {
                    say(&format!("UP {}", now_ns()));
                }
            }
            // broker_gone (in flight at the loss) or no_such_session (the
            // publisher is not back yet): again.
            CallEvent::Error(_) => {
                if s.need_up.get() {
                    issue(&s);
                }
            }
            CallEvent::Emit { .. } => {}
        });
    if let Err(e) = sent {
        fail(format!("call: {e}"));
    }
}

/// `restart-caller ADDR`: says `ready`, then `DOWN` at each loss and `UP
/// <monotonic ns>` at the first answer after it; runs until killed.
pub fn caller(args: &[String]) -> ExitCode {
    let addr: Address = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| fail("restart-caller: missing or bad broker address"));
    let lp = EventLoop::new().unwrap();
    let client = connect_with(
        &lp,
        &addr,
        config().with_reconnect(ReconnectPolicy::default()),
    );
    let state = Rc::new(State {
        client: client.clone(),
        need_up: Cell::new(false),
    });
    let weak = Rc::downgrade(&state);
    client.on_connection_event(move |event| {
        if let (ConnectionEvent::Disconnected(_), Some(state)) = (event, weak.upgrade()) {
            say("DOWN");
            if !state.need_up.replace(true) {
                issue(&state);
            }
        }
    });
    client.on_disconnect(|e| fail(format!("the caller gave up: {e}")));
    say("ready");
    let _ = lp.run();
    drop(state);
    ExitCode::SUCCESS
}
