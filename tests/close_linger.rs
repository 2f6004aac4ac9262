//! Closing a client flushes what it already accepted for sending (issue
//! 10, item 1): a service that answers and then closes or drops its client
//! in the same turn still delivers the answer, and its caller never sees
//! `publisher_gone` for a call whose answer was accepted. The flush is
//! bounded by the client's linger time, and a graceful close reports its
//! completion through a callback.

#[macro_use]
mod common;

use common::*;
use stagebus::wire::{encode_frame, Frame, FrameDecoder, DEFAULT_MAX_FRAME};
use stagebus::*;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::Duration;

/// How the service lets go of its client after answering.
#[derive(Clone, Copy)]
enum Leave {
    /// `Client::close` inside the handler.
    Close,
    /// Drops the last handle inside the handler.
    Drop,
    /// `Client::close` from a 0 ms timer set by the handler.
    TimerClose,
}

/// A service that answers `quit` and then leaves as `leave` says; the
/// caller must get the answer.
fn answer_then_leave(t: Transport, leave: Leave) {
    let h = Harness::new(t);
    let caller = h.client();
    let service = h.client();
    let held: Rc<RefCell<Option<Client>>> = Rc::new(RefCell::new(None));
    let answered = Rc::new(RefCell::new(None));
    let (held2, answered2) = (held.clone(), answered.clone());
    publish(&service, "Svc", &["quit"], move |d: &Delivery, inbound| {
        if let Inbound::Call { .. } = inbound {
            *answered2.borrow_mut() = Some(d.respond("return", &arg("bye", 1i64)));
            let client = held2.borrow_mut().take().expect("the service's client");
            match leave {
                Leave::Close => client.close(),
                Leave::Drop => drop(client),
                Leave::TimerClose => {
                    let lp = client.event_loop().clone();
                    lp.add_timer(Duration::ZERO, move |_| client.close());
                }
            }
        }
    })
    .unwrap();
    // From here on the cell holds the service's only handle.
    *held.borrow_mut() = Some(service);
    let out = call(&caller, "Svc", "quit", &Args::new());
    assert_eq!(
        *answered.borrow(),
        Some(Ok(())),
        "respond accepted the answer"
    );
    match &out.last {
        CallEvent::Return { args, .. } => assert_eq!(*args, arg("bye", 1i64)),
        other => panic!("the caller lost the answer given before the close: {other:?}"),
    }
    assert!(held.borrow().is_none());
}

fn service_returns_then_closes_in_the_handler(t: Transport) {
    answer_then_leave(t, Leave::Close);
}

fn service_returns_then_drops_its_last_client_handle(t: Transport) {
    answer_then_leave(t, Leave::Drop);
}

fn service_returns_then_closes_from_a_zero_ms_timer(t: Transport) {
    answer_then_leave(t, Leave::TimerClose);
}

/// Emits are output accepted for sending too: an emit and a return given
/// just before `close` both arrive, in order.
fn service_emits_and_returns_then_closes(t: Transport) {
    let h = Harness::new(t);
    let caller = h.client();
    let service = h.client();
    let held: Rc<RefCell<Option<Client>>> = Rc::new(RefCell::new(None));
    let held2 = held.clone();
    publish(&service, "Svc", &["quit"], move |d: &Delivery, inbound| {
        if let Inbound::Call { .. } = inbound {
            d.emit("progress", &arg("n", 1i64)).unwrap();
            d.respond("return", &arg("n", 2i64)).unwrap();
            held2.borrow_mut().take().unwrap().close();
        }
    })
    .unwrap();
    *held.borrow_mut() = Some(service);
    let out = call(&caller, "Svc", "quit", &Args::new());
    assert_eq!(
        out.emits,
        vec![CallEvent::Emit {
            kind: "progress".into(),
            args: arg("n", 1i64)
        }]
    );
    assert!(
        matches!(&out.last, CallEvent::Return { args, .. } if *args == arg("n", 2i64)),
        "{:?}",
        out.last
    );
}

/// A graceful close reports success once the output left; pending calls
/// still settle with `broker_gone` as with `close`.
fn graceful_close_reports_completion_and_settles_pending_calls(t: Transport) {
    let h = Harness::new(t);
    let service = h.client();
    let (_served, serve) = holder();
    publish(&service, "Slow", &["wait"], serve).unwrap();
    let caller = h.client();
    let (_, pending) = start_call(&caller, "Slow", "wait", &Args::new());
    h.until("the call reached the service", || {
        h.broker.stats().pending_calls == 1
    });
    let done = Slot::new();
    caller.close_gracefully(done.setter());
    assert!(!done.is_set(), "the callback never runs inside the call");
    assert_eq!(wait(&h.lp, &done), Ok(()));
    let out = wait(&h.lp, &pending);
    assert_eq!(call_error(&out.last).code, ErrorCode::BrokerGone);
    h.until("the broker dropped the call", || {
        h.broker.stats().pending_calls == 0
    });
    // Closing again reports that there is nothing left to close.
    let again = Slot::new();
    caller.close_gracefully(again.setter());
    assert_eq!(
        wait(&h.lp, &again).unwrap_err().code,
        ErrorCode::InvalidState
    );
}

over_both!(
    service_returns_then_closes_in_the_handler,
    service_returns_then_drops_its_last_client_handle,
    service_returns_then_closes_from_a_zero_ms_timer,
    service_emits_and_returns_then_closes,
    graceful_close_reports_completion_and_settles_pending_calls,
);

/// The accepted socket of a broker stand-in, once it welcomed its client.
type Deaf = std::thread::JoinHandle<Box<dyn Read + Send>>;

/// A broker stand-in on `t`, on a thread, that welcomes one client and
/// then never reads again. Returns its address and the thread, which ends
/// with the accepted socket (held open) once it sent the welcome.
fn deaf_broker(t: Transport, dir: &TempDir) -> (Address, Deaf) {
    fn welcome(mut s: impl Read + Write) {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut buf = [0u8; 4096];
        // The hello.
        while dec.next_body().unwrap().is_none() {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed before its hello");
            dec.push(&buf[..n]);
        }
        let mut out = Vec::new();
        let welcome = Frame::Welcome {
            connection_id: 1,
            version: stagebus::wire::PROTOCOL_VERSION,
        };
        encode_frame(&welcome, &mut out, DEFAULT_MAX_FRAME).unwrap();
        s.write_all(&out).unwrap();
    }
    match t {
        Transport::Tcp => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = Address::Tcp(l.local_addr().unwrap());
            let deaf = std::thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                welcome(&s);
                Box::new(s) as Box<dyn Read + Send>
            });
            (addr, deaf)
        }
        Transport::Unix => {
            let path = dir.path().join("deaf.sock");
            let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
            let deaf = std::thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                welcome(&s);
                Box::new(s) as Box<dyn Read + Send>
            });
            (Address::Unix(path), deaf)
        }
    }
}

/// The flush of a closing client is bounded: toward a peer that never
/// reads, with more output queued than the sockets hold, a graceful close
/// completes at the linger deadline and its callback says so.
fn linger_is_bounded_by_a_peer_that_never_reads(t: Transport) {
    let dir = TempDir::new("linger");
    let (addr, accept) = deaf_broker(t, &dir);
    let lp = EventLoop::new().unwrap();
    let config = ClientConfig::default().with_linger(Duration::from_millis(200));
    let client = Client::connect(&lp, &addr, config);
    let connected = Slot::new();
    client.on_connect(connected.setter());
    wait(&lp, &connected).expect("welcomed");
    let _peer = accept.join().unwrap();
    // 32 MiB queued: far more than the two socket buffers hold.
    let chunk = vec![7u8; 1 << 20];
    for i in 0..32 {
        client.send_custom("bulk", i, &chunk).unwrap();
    }
    let done = Slot::new();
    client.close_gracefully(done.setter());
    let outcome = wait(&lp, &done);
    let e = outcome.expect_err("the output cannot have left");
    assert_eq!(e.code, ErrorCode::Timeout, "{e}");
    assert!(e.message.contains("linger"), "{}", e.message);
}

over_both!(linger_is_bounded_by_a_peer_that_never_reads);

/// `EventLoop::shutdown` (what `sb_loop_free` does) drops a lingering
/// connection with its output, and the graceful close's callback with it,
/// without running it.
#[test]
fn loop_shutdown_drops_lingering_output_and_the_callback() {
    let dir = TempDir::new("linger");
    let (addr, accept) = deaf_broker(Transport::Unix, &dir);
    let lp = EventLoop::new().unwrap();
    let client = Client::connect(&lp, &addr, ClientConfig::default());
    let connected = Slot::new();
    client.on_connect(connected.setter());
    wait(&lp, &connected).expect("welcomed");
    let mut peer = accept.join().unwrap();
    let chunk = vec![7u8; 1 << 20];
    for i in 0..8 {
        client.send_custom("bulk", i, &chunk).unwrap();
    }
    struct Dropped(Rc<RefCell<bool>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            *self.0.borrow_mut() = true;
        }
    }
    let ran = Rc::new(RefCell::new(false));
    let dropped = Rc::new(RefCell::new(false));
    let (ran2, guard) = (ran.clone(), Dropped(dropped.clone()));
    client.close_gracefully(move |_| {
        let _guard = &guard;
        *ran2.borrow_mut() = true;
    });
    drop(client);
    lp.shutdown();
    assert!(!*ran.borrow(), "the callback does not run at shutdown");
    assert!(*dropped.borrow(), "the callback was dropped at shutdown");
    // The connection was closed: the stand-in reads to the end.
    let mut sink = Vec::new();
    peer.read_to_end(&mut sink).unwrap();
    assert!(sink.len() < 8 << 20, "not all output left before shutdown");
}

/// The broker's side: a publisher that writes its result and closes at
/// once (here with a second call's deliver still unread, so that its
/// close is a reset on TCP) still has its result forwarded; only the call
/// it left unanswered fails with `publisher_gone`.
fn broker_forwards_a_result_sent_just_before_the_publisher_closed(t: Transport) {
    use stagebus::wire::{Payload, Reply};
    let h = Harness::new(t);
    let mut publisher = Raw::handshaken(&h.lp, &h.addr);
    publisher.send(
        &h.lp,
        &Frame::Publish {
            id: 1,
            session: "Raw".into(),
            methods: vec!["quit".into()],
        },
    );
    match publisher.next(&h.lp) {
        Frame::Result {
            id: 1,
            outcome: Ok(_),
        } => {}
        other => panic!("expected the publish result, got {other:?}"),
    }
    let caller = h.client();
    let (_, first) = start_call(&caller, "Raw", "quit", &Args::new());
    let route = match publisher.next(&h.lp) {
        Frame::Deliver { id, .. } => id,
        other => panic!("expected a deliver, got {other:?}"),
    };
    let (_, second) = start_call(&caller, "Raw", "quit", &Args::new());
    h.until("the second call reached the broker", || {
        h.broker.stats().pending_calls == 2
    });
    // Let the broker write the second deliver, which stays unread.
    h.lp.dispatch().unwrap();
    let answer = Frame::Result {
        id: route,
        outcome: Ok(Reply::Return {
            kind: "return".into(),
            payload: Payload::encode(&arg("bye", 1i64)),
        }),
    };
    publisher.send(&h.lp, &answer);
    drop(publisher);
    let first = wait(&h.lp, &first);
    assert_eq!(
        first.last,
        CallEvent::Return {
            kind: "return".into(),
            args: arg("bye", 1i64)
        }
    );
    let second = wait(&h.lp, &second);
    assert_eq!(call_error(&second.last).code, ErrorCode::PublisherGone);
}

over_both!(broker_forwards_a_result_sent_just_before_the_publisher_closed);

/// A linger time too long to be a deadline (`Duration::MAX`) lingers as
/// long as needed; it is not an overflow.
#[test]
fn a_linger_of_duration_max_closes_normally() {
    let h = Harness::new(Transport::Unix);
    let c = h.client_with(ClientConfig::default().with_linger(Duration::MAX));
    let done = Slot::new();
    c.close_gracefully(done.setter());
    assert_eq!(wait(&h.lp, &done), Ok(()));
}
