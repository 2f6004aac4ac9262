//! Embedding: a program with its own poll(2) loop hosts the stagebus
//! loop through one fd and a timeout, and calls `Greeter.hello` (see
//! greeter_service.rs) while its own timer keeps ticking.
//!
//! ```sh
//! cargo run --example host_loop -- unix:/tmp/sb.sock
//! ```
//!
//! The host does what any loop (libevent, libev, GLib, …) does: watch
//! `EventLoop::fd` for reading, wait at most `EventLoop::timeout_ms`,
//! and call `EventLoop::dispatch` when either fires.

use stagebus::{Client, ClientConfig, Error, ErrorCode, EventLoop, RemoteStage, Request};
use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the host's own timer ticks.
const HOST_TICK: Duration = Duration::from_millis(5);

fn main() -> ExitCode {
    let Some(broker) = std::env::args().nth(1) else {
        eprintln!("usage: host_loop BROKER_ADDRESS");
        return ExitCode::from(2);
    };
    match host(&broker) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("host_loop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn host(broker: &str) -> Result<(), Error> {
    let lp = EventLoop::new().map_err(|e| Error::io("cannot create a loop", &e))?;
    let client = Client::connect(&lp, &broker.parse()?, ClientConfig::default());
    let greeter: Rc<RefCell<Option<Result<RemoteStage, Error>>>> = Rc::default();
    let slot = greeter.clone();
    RemoteStage::subscribe(&client, "Greeter", move |r| *slot.borrow_mut() = Some(r));

    let greetings = Rc::new(Cell::new(0u32));
    let failure: Rc<RefCell<Option<Error>>> = Rc::default();
    let mut request: Option<Request> = None;
    let started = Instant::now();
    let (mut ticks, mut next_tick) = (0u32, Instant::now() + HOST_TICK);
    while greetings.get() < 3 {
        if let Some(e) = failure.take() {
            return Err(e);
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(Error::new(ErrorCode::Timeout, "no greeting within 10 s"));
        }
        // Start the next call from the host's side once the last ended.
        match &*greeter.borrow() {
            Some(Err(e)) => return Err(e.clone()),
            Some(Ok(stage)) if !request.as_ref().is_some_and(Request::is_open) => {
                request = Some(hello(stage, greetings.clone(), failure.clone())?);
            }
            _ => {}
        }
        poll_once(&lp, next_tick)?;
        if Instant::now() >= next_tick {
            ticks += 1;
            next_tick += HOST_TICK;
        }
        // Dispatching when nothing is due is harmless; it never blocks.
        lp.dispatch()
            .map_err(|e| Error::io("dispatch failed", &e))?;
    }
    println!("3 greetings while the host ticked {ticks} times");
    Ok(())
}

/// Waits, as a host loop does, until the stagebus fd is readable, the
/// stagebus timeout expires or the host's own timer is due.
fn poll_once(lp: &EventLoop, next_tick: Instant) -> Result<(), Error> {
    let host_wait = next_tick.saturating_duration_since(Instant::now());
    let wait = match lp.timeout_ms() {
        Some(ms) => host_wait.min(Duration::from_millis(ms)),
        None => host_wait,
    };
    let mut fds = [libc::pollfd {
        fd: lp.fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a valid array of one pollfd for the whole call.
    if unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("poll failed", &e));
        }
    }
    Ok(())
}

/// Calls `hello`; its return counts a greeting, an error is kept.
fn hello(
    greeter: &RemoteStage,
    greetings: Rc<Cell<u32>>,
    failure: Rc<RefCell<Option<Error>>>,
) -> Result<Request, Error> {
    Request::to(greeter, "hello")
        .arg("name", "host loop")
        .timeout(Duration::from_secs(5))
        .fallback(move |ctx| {
            let rsp = ctx.rsp().expect("response handlers see a response");
            match rsp.error() {
                Some(e) => *failure.borrow_mut() = Some(e.clone()),
                None if rsp.is_final() => {
                    println!("{} {}", rsp.kind(), ctx.args().to_json());
                    greetings.set(greetings.get() + 1);
                }
                None => {}
            }
            Ok(())
        })
        .send()
}
