//! Liveness and graceful shutdown (issue 12, items 1 and 4): a peer that
//! freezes is found by ping/pong and handled exactly as a disconnect; a
//! frame left half-written is closed at its deadline; a client gives up
//! on a broker that never answers its hello; a closing broker tells its
//! clients it is going away, and their calls end with `broker_gone` once.
//!
//! Frozen peers are `stagebus` processes stopped with SIGSTOP. Every wait
//! is bounded: a wait that ends is the proof (the old code waited
//! forever); the bound only keeps a failing test from hanging. Nothing
//! asserts a duration.

#[macro_use]
mod common;
mod support;

use common::*;
use stagebus::wire::Frame;
use stagebus::*;
use std::process::Command;
use std::time::Duration;
use support::Proc;

/// The ping interval of the tests.
const PING: Duration = Duration::from_millis(100);
/// Unanswered pings before a peer is dead.
const PING_MAX: u32 = 2;
/// How long a test waits for something the liveness bound promises
/// (0.4 s here): generous, for a loaded 2-core machine.
const BOUND_WAIT: Duration = Duration::from_secs(10);

fn stagebus(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagebus"));
    cmd.args(args);
    cmd
}

/// A listen address of transport `t` (a socket in `dir` for Unix).
fn listen_address(t: Transport, dir: &TempDir) -> String {
    match t {
        Transport::Tcp => "tcp://127.0.0.1:0".to_string(),
        Transport::Unix => format!("unix:{}", dir.path().join("b.sock").display()),
    }
}

/// A CLI broker pinging every [`PING`], and its address.
fn broker_proc(t: Transport, dir: &TempDir) -> (Proc, String) {
    let listen = listen_address(t, dir);
    let secs = PING.as_secs_f64().to_string();
    let max = PING_MAX.to_string();
    let mut broker = Proc::spawn(
        "broker",
        &mut stagebus(&[
            "broker",
            "--listen",
            &listen,
            "--ping-interval",
            &secs,
            "--ping-max",
            &max,
        ]),
    );
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    let address = line["listening on ".len()..].to_string();
    (broker, address)
}

/// `stagebus serve --no-reconnect` publishing the demo stage as `Demo` on
/// `address`.
fn serve_proc(address: &str) -> Proc {
    let mut service = Proc::spawn(
        "serve",
        // Without reconnecting: a thawed publisher finds its connection
        // closed and exits (tests/reconnect.rs has the reconnecting one).
        &mut stagebus(&[
            "serve",
            "--broker",
            address,
            "--name",
            "Demo",
            "--no-reconnect",
        ]),
    );
    service.wait_line("that it serves", |l| l.starts_with("serving Demo"));
    service
}

fn parse_address(text: &str) -> Address {
    text.parse().expect("the broker printed an address")
}

fn connect(lp: &EventLoop, address: &Address, config: ClientConfig) -> Client {
    let c = Client::connect(lp, address, config);
    let done = Slot::new();
    c.on_connect(done.setter());
    wait(lp, &done).expect("connect");
    c
}

/// Runs `lp` until `slot` is set, at most [`BOUND_WAIT`].
#[track_caller]
fn within_bound<T: 'static>(lp: &EventLoop, what: &str, slot: &Slot<T>) -> T {
    assert!(
        lp.run_until(BOUND_WAIT, || slot.is_set()).unwrap(),
        "not within the liveness bound: {what}"
    );
    slot.take().unwrap()
}

fn slow() -> Args {
    arg("ms", 60_000i64)
}

// ---------------------------------------------------------------------
// Processes frozen with SIGSTOP.

over_both!(
    frozen_publisher_calls_end_publisher_gone_and_its_name_leaves_the_listing,
    frozen_broker_is_broker_gone_for_its_clients,
    broker_sigterm_ends_pending_calls_broker_gone_once_with_its_reason,
);

fn frozen_publisher_calls_end_publisher_gone_and_its_name_leaves_the_listing(t: Transport) {
    let dir = TempDir::new("frozen-pub");
    let (_broker, address) = broker_proc(t, &dir);
    let mut service = serve_proc(&address);
    let lp = EventLoop::new().unwrap();
    let caller = connect(&lp, &parse_address(&address), ClientConfig::default());
    assert_eq!(names(&caller), vec!["Demo".to_string()]);
    let calls: Vec<_> = (0..4)
        .map(|_| start_call(&caller, "Demo", "slow", &slow()).1)
        .collect();
    // The listing is answered after the calls were forwarded.
    assert_eq!(names(&caller), vec!["Demo".to_string()]);
    service.signal(libc::SIGSTOP);
    for done in &calls {
        let out = within_bound(&lp, "the frozen publisher's calls end", done);
        let e = call_error(&out.last);
        assert_eq!(e.code, ErrorCode::PublisherGone, "{e}");
        assert_eq!(done.times(), 1);
    }
    assert_eq!(names(&caller), Vec::<String>::new());
    // Thawed, the publisher finds its connection closed.
    service.signal(libc::SIGCONT);
    let status = service.wait_exit();
    assert!(!status.success(), "{}", service.transcript());
    let stderr = service.stderr.lock().unwrap().clone();
    assert!(stderr.contains("lost the broker"), "{stderr}");
}

fn frozen_broker_is_broker_gone_for_its_clients(t: Transport) {
    let dir = TempDir::new("frozen-broker");
    let (broker, address) = broker_proc(t, &dir);
    let _service = serve_proc(&address);
    let lp = EventLoop::new().unwrap();
    let config = ClientConfig::default().with_ping(PING, PING_MAX);
    let caller = connect(&lp, &parse_address(&address), config);
    let lost = Slot::new();
    let l = lost.clone();
    caller.on_disconnect(move |e| l.set(e.clone()));
    let (_, done) = start_call(&caller, "Demo", "slow", &slow());
    assert_eq!(names(&caller), vec!["Demo".to_string()]);
    broker.signal(libc::SIGSTOP);
    let out = within_bound(&lp, "the call ends once the broker is frozen", &done);
    let e = call_error(&out.last);
    assert_eq!(e.code, ErrorCode::BrokerGone, "{e}");
    assert!(e.message.contains("pings unanswered"), "{e}");
    let e = within_bound(&lp, "the disconnect is reported", &lost);
    assert_eq!(e.code, ErrorCode::BrokerGone, "{e}");
    assert!(!caller.is_connected());
    broker.signal(libc::SIGCONT);
}

fn broker_sigterm_ends_pending_calls_broker_gone_once_with_its_reason(t: Transport) {
    let dir = TempDir::new("sigterm");
    let (mut broker, address) = broker_proc(t, &dir);
    let _service = serve_proc(&address);
    let lp = EventLoop::new().unwrap();
    let caller = connect(&lp, &parse_address(&address), ClientConfig::default());
    let lost = Slot::new();
    let l = lost.clone();
    caller.on_disconnect(move |e| l.set(e.clone()));
    let calls: Vec<_> = (0..3)
        .map(|_| start_call(&caller, "Demo", "slow", &slow()).1)
        .collect();
    assert_eq!(names(&caller), vec!["Demo".to_string()]);
    broker.terminate();
    for done in &calls {
        let out = wait(&lp, done);
        let e = call_error(&out.last);
        assert_eq!(e.code, ErrorCode::BrokerGone, "{e}");
        assert!(e.message.contains("going away"), "{e}");
        assert!(e.message.contains("shutting down"), "{e}");
    }
    let e = wait(&lp, &lost);
    assert!(e.message.contains("going away"), "{e}");
    assert!(broker.wait_exit().success(), "{}", broker.transcript());
    // Nothing more arrives for any call.
    lp.run_until(Duration::from_millis(100), || false).unwrap();
    for done in &calls {
        assert_eq!(done.times(), 1);
    }
}

// ---------------------------------------------------------------------
// In one process.

over_both!(
    half_written_frame_is_closed_at_the_deadline,
    silent_peer_is_pinged_then_closed_and_its_session_leaves,
    broker_close_tells_clients_it_is_going_away,
);

fn half_written_frame_is_closed_at_the_deadline(t: Transport) {
    let h = Harness::with(t, |c| c.limits.frame_timeout = Duration::from_millis(150));
    let mut raw = Raw::handshaken(&h.lp, &h.addr);
    let listing = frame_bytes(&Frame::Listing { id: 1 });
    assert!(raw.send_bytes(&h.lp, &listing[..listing.len() - 1]));
    assert_eq!(raw.closed_after(&h.lp), vec![]);
    // A client that finishes its frames stays.
    let c = h.client();
    assert_eq!(listing_of(&c), 0);
    assert_eq!(h.broker.stats().connections, 1);
}

fn listing_of(c: &Client) -> usize {
    listing(c).expect("a listing").len()
}

fn silent_peer_is_pinged_then_closed_and_its_session_leaves(t: Transport) {
    let h = Harness::with(t, |c| {
        c.limits.ping_interval = PING;
        c.limits.ping_max = PING_MAX;
    });
    let mut raw = Raw::handshaken(&h.lp, &h.addr);
    raw.send(
        &h.lp,
        &Frame::Publish {
            id: 1,
            session: "Mute".into(),
            methods: vec!["m".into()],
        },
    );
    assert!(matches!(raw.next(&h.lp), Frame::Result { id: 1, .. }));
    // A client answers the broker's pings and stays.
    let c = h.client();
    let (_, done) = start_call(&c, "Mute", "m", &Args::new());
    let frames = raw.closed_after(&h.lp);
    let pings = frames.iter().filter(|f| **f == Frame::Ping).count();
    assert_eq!(pings, PING_MAX as usize, "{frames:?}");
    let out = wait(&h.lp, &done);
    assert_eq!(call_error(&out.last).code, ErrorCode::PublisherGone);
    assert_eq!(listing_of(&c), 0);
    assert!(c.is_connected());
    assert_eq!(h.broker.stats().connections, 1);
}

fn broker_close_tells_clients_it_is_going_away(t: Transport) {
    let h = Harness::new(t);
    let service = h.client();
    let (served, handler) = holder();
    publish(&service, "Svc", &["m"], handler).unwrap();
    let caller = h.client();
    let (_, done) = start_call(&caller, "Svc", "m", &Args::new());
    h.until("the service holds the call", || !served.borrow().is_empty());
    h.broker.close();
    let out = wait(&h.lp, &done);
    let e = call_error(&out.last);
    assert_eq!(e.code, ErrorCode::BrokerGone, "{e}");
    assert!(e.message.contains("going away"), "{e}");
    h.until("the notices are written", || {
        h.broker.closing_connections() == 0
    });
    assert_eq!(done.times(), 1);
}

#[test]
fn connect_timeout_fails_a_broker_that_never_answers() {
    // The kernel completes the connect; nobody ever says welcome.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = Address::Tcp(listener.local_addr().unwrap());
    let lp = EventLoop::new().unwrap();
    let config = ClientConfig::default().with_connect_timeout(Duration::from_millis(200));
    let c = Client::connect(&lp, &address, config);
    let done = Slot::new();
    c.on_connect(done.setter());
    let e = within_bound(&lp, "the connect gives up", &done).unwrap_err();
    assert_eq!(e.code, ErrorCode::BrokerGone, "{e}");
    assert!(e.message.contains("no answer within 200 ms"), "{e}");
}
