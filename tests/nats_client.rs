//! The NATS client of `federation::nats` against a real `nats-server`
//! (installed from the distribution when missing; skipped with a message
//! only when it cannot be): publish, subscribe, requests and
//! no-responders, headers, `max_payload`, user/password and token
//! authentication, reconnect across the server list (node killed, node
//! hung), and the JetStream KV requests (create-if-absent, get, delete,
//! purge, watch).

mod nats_support;

use nats_support::{Node, Spec};
use stagebus::federation::nats::js::{Kv, KvOp, Watch, WatchStep, ERR_WRONG_LAST_SEQUENCE};
use stagebus::federation::nats::*;
use stagebus::EventLoop;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

type Events = Rc<RefCell<Vec<NatsEvent>>>;

const LIMIT: Duration = Duration::from_secs(15);

fn options(urls: &str) -> NatsOptions {
    NatsOptions::new(parse_servers(urls).unwrap())
}

/// A client whose events are recorded.
fn client(lp: &EventLoop, options: NatsOptions) -> (Rc<NatsClient>, Events) {
    let events: Events = Rc::default();
    let log = events.clone();
    let c = NatsClient::start(lp, options, move |_, e| log.borrow_mut().push(e)).unwrap();
    (c, events)
}

/// Runs the loop until the server refuses the client's credentials.
fn refused(lp: &EventLoop, events: &Events) {
    wait_event(
        lp,
        events,
        "an authorization error",
        |e| matches!(e, NatsEvent::ServerError(t) if t.contains("Authorization")),
    );
}

/// Runs the loop until an event matches; returns it.
#[track_caller]
fn wait_event(
    lp: &EventLoop,
    events: &Events,
    what: &str,
    mut pred: impl FnMut(&NatsEvent) -> bool,
) -> NatsEvent {
    let mut found = None;
    let ok = lp
        .run_until(LIMIT, || {
            let mut ev = events.borrow_mut();
            if let Some(i) = ev.iter().position(&mut pred) {
                found = Some(ev.remove(i));
                true
            } else {
                false
            }
        })
        .unwrap();
    assert!(
        ok,
        "timed out waiting for {what}; events: {:?}",
        events.borrow()
    );
    found.unwrap()
}

#[track_caller]
fn connected(lp: &EventLoop, events: &Events) -> (u64, String) {
    match wait_event(lp, events, "Connected", |e| {
        matches!(e, NatsEvent::Connected { .. })
    }) {
        NatsEvent::Connected { epoch, server, .. } => (epoch, server),
        _ => unreachable!(),
    }
}

#[track_caller]
fn reply(lp: &EventLoop, events: &Events, token: u64) -> Msg {
    match wait_event(
        lp,
        events,
        "a reply",
        |e| matches!(e, NatsEvent::Reply { token: t, .. } if *t == token),
    ) {
        NatsEvent::Reply { msg, .. } => msg,
        _ => unreachable!(),
    }
}

#[test]
fn publish_subscribe_request_and_no_responders() {
    let bin = need_nats!();
    let node = Node::start(
        &bin,
        "single",
        &Spec {
            extra: "max_payload: 4096".into(),
            ..Spec::default()
        },
    );
    let lp = EventLoop::new().unwrap();
    // A responder that echoes payload and headers, and sends two answers
    // to "twice".
    let responder = NatsClient::start(&lp, options(&node.url()), |c, e| {
        if let NatsEvent::Msg(m) = e {
            let reply = m.reply.clone().unwrap();
            c.publish(&reply, None, m.headers.as_ref(), &m.payload)
                .unwrap();
            if m.subject == "svc.twice" {
                c.publish(&reply, None, None, b"second").unwrap();
            }
        }
    })
    .unwrap();
    let (c, events) = client(&lp, options(&node.url()));
    assert_eq!(
        c.publish("x", None, None, b"early"),
        Err(NatsError::NotConnected),
        "nothing is queued before the connection is up"
    );
    assert!(lp.run_until(LIMIT, || responder.is_connected()).unwrap());
    responder.subscribe("svc.*", None).unwrap();
    let (epoch, server) = connected(&lp, &events);
    assert_eq!((epoch, server), (1, format!("127.0.0.1:{}", node.port)));
    assert_eq!(c.max_payload(), 4096, "max_payload comes from INFO");

    // The responder's SUB must be in place: until it is, a request gets
    // 503 (no responders); then the echo.
    let token = c.request("svc.echo", None, b"ping").unwrap();
    let m = reply(&lp, &events, token);
    assert!(m.status() == Some(503) || m.payload == b"ping", "{m:?}");
    let mut answered = m.payload == b"ping";
    for _ in 0..50 {
        if answered {
            break;
        }
        let t = c.request("svc.echo", None, b"ping").unwrap();
        let m = reply(&lp, &events, t);
        answered = m.payload == b"ping";
    }
    assert!(answered, "the echo service answers");

    // Headers survive the trip; any number of answers reach the inbox.
    let mut h = Headers::new();
    h.insert("Sb-Test", "one two");
    let t = c.request("svc.twice", Some(&h), b"x").unwrap();
    let first = reply(&lp, &events, t);
    assert_eq!(
        first.headers.as_ref().unwrap().get("sb-test"),
        Some("one two")
    );
    assert_eq!(reply(&lp, &events, t).payload, b"second");

    // Nobody listens: the server answers 503 at once.
    let t = c.request("nobody.here", None, b"?").unwrap();
    assert_eq!(reply(&lp, &events, t).status(), Some(503));

    // Plain subscriptions, and unsubscribe.
    let sid = c.subscribe("news.>", None).unwrap();
    // A PING round trip through the server orders the SUB before what
    // follows: use a request to ourselves for the same effect.
    let t = c.request("svc.echo", None, b"sync").unwrap();
    reply(&lp, &events, t);
    responder.publish("news.a.b", None, None, b"n1").unwrap();
    let m = match wait_event(&lp, &events, "news", |e| matches!(e, NatsEvent::Msg(_))) {
        NatsEvent::Msg(m) => m,
        _ => unreachable!(),
    };
    assert_eq!(
        (m.subject.as_str(), m.sid, m.payload.as_slice()),
        ("news.a.b", sid, &b"n1"[..])
    );
    c.unsubscribe(sid);
    let t = c.request("svc.echo", None, b"sync").unwrap();
    reply(&lp, &events, t);
    responder.publish("news.a.c", None, None, b"n2").unwrap();
    let t = c.request("svc.echo", None, b"sync2").unwrap();
    reply(&lp, &events, t);
    assert!(
        !events
            .borrow()
            .iter()
            .any(|e| matches!(e, NatsEvent::Msg(_))),
        "nothing after unsubscribe"
    );

    // A payload written in place, with a reply subject made once: the
    // same message as a plain publish. A writer that writes other than
    // it announced is refused, and the connection goes on.
    let echo = proto::Subject::new("svc.echo".into()).unwrap();
    let inbox = c.new_inbox();
    let inbox_sid = c.subscribe(&inbox, None).unwrap();
    let t = c.request("svc.echo", None, b"sync").unwrap();
    reply(&lp, &events, t);
    let reply_to = proto::Subject::new(inbox.clone()).unwrap();
    c.publish_with(&echo, Some(&reply_to), 5, |out| {
        out.extend_from_slice(b"in pl")
    })
    .unwrap();
    let m = match wait_event(
        &lp,
        &events,
        "the in-place echo",
        |e| matches!(e, NatsEvent::Msg(m) if m.sid == inbox_sid),
    ) {
        NatsEvent::Msg(m) => m,
        _ => unreachable!(),
    };
    assert_eq!(m.payload, b"in pl");
    assert!(matches!(
        c.publish_with(&echo, None, 3, |out| out.extend_from_slice(b"four")),
        Err(NatsError::Invalid(_))
    ));
    assert_eq!(
        c.publish_with(&echo, None, 5000, |_| unreachable!("refused first")),
        Err(NatsError::TooLarge {
            size: 5000,
            max: 4096
        })
    );
    assert!(proto::Subject::new("a b".into()).is_err());
    assert!(proto::Subject::new("a.*".into()).is_err());
    c.unsubscribe(inbox_sid);
    let t = c.request("svc.echo", None, b"after").unwrap();
    assert_eq!(reply(&lp, &events, t).payload, b"after");

    // Limits and bad input are refused without touching the connection.
    let big = vec![0u8; 5000];
    assert_eq!(
        c.publish("x", None, None, &big),
        Err(NatsError::TooLarge {
            size: 5000,
            max: 4096
        })
    );
    assert!(matches!(
        c.publish("a b", None, None, b""),
        Err(NatsError::Invalid(_))
    ));
    assert!(matches!(
        c.subscribe("a..b", None),
        Err(NatsError::Invalid(_))
    ));
    assert!(c.is_connected());
    c.close();
    assert_eq!(c.publish("x", None, None, b""), Err(NatsError::Closed));
    responder.close();
}

#[test]
fn user_password_and_token_authentication() {
    let bin = need_nats!();
    let lp = EventLoop::new().unwrap();
    let node = Node::start(
        &bin,
        "auth",
        &Spec {
            extra: "authorization { user: fed, password: \"s3cret\" }".into(),
            ..Spec::default()
        },
    );
    let mut o = options(&node.url());
    o.auth = NatsAuth::UserPassword {
        user: "fed".into(),
        password: "s3cret".into(),
    };
    let (good, events) = client(&lp, o);
    connected(&lp, &events);
    good.close();
    // Credentials in the URL work too.
    let (good, events) = client(
        &lp,
        options(&format!("nats://fed:s3cret@127.0.0.1:{}", node.port)),
    );
    connected(&lp, &events);
    good.close();
    let mut o = options(&node.url());
    o.auth = NatsAuth::UserPassword {
        user: "fed".into(),
        password: "wrong".into(),
    };
    let (bad, events) = client(&lp, o);
    match wait_event(&lp, &events, "an authorization error", |e| {
        matches!(e, NatsEvent::ServerError(_))
    }) {
        NatsEvent::ServerError(text) => assert!(text.contains("Authorization"), "{text}"),
        _ => unreachable!(),
    }
    assert!(!bad.is_connected());
    assert!(!events
        .borrow()
        .iter()
        .any(|e| matches!(e, NatsEvent::Connected { .. })));
    bad.close();
    drop(node);

    let node = Node::start(
        &bin,
        "token",
        &Spec {
            extra: "authorization { token: \"t0ken\" }".into(),
            ..Spec::default()
        },
    );
    let (good, events) = client(
        &lp,
        options(&format!("nats://t0ken@127.0.0.1:{}", node.port)),
    );
    connected(&lp, &events);
    good.close();
    let mut o = options(&node.url());
    o.auth = NatsAuth::Token("t0ken".into());
    let (good, events) = client(&lp, o);
    connected(&lp, &events);
    good.close();
    let (bad, events) = client(&lp, options(&node.url()));
    refused(&lp, &events);
    bad.close();
}

/// The NATS clients' test user: a seed and its public key.
#[cfg(feature = "tls")]
const TEST_SEED: &str = "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY";
#[cfg(feature = "tls")]
const TEST_NKEY: &str = "UAT6BWCSCWLUKJT6K6MBJJOEOTXZ5AJDOYKNEVRFC7VNO6OA43N4TRNO";

#[cfg(feature = "tls")]
#[test]
fn nkey_authentication_signs_the_servers_nonce() {
    let bin = need_nats!();
    let lp = EventLoop::new().unwrap();
    let node = Node::start(
        &bin,
        "nkey",
        &Spec {
            extra: format!("authorization {{ users = [ {{ nkey: {TEST_NKEY} }} ] }}"),
            ..Spec::default()
        },
    );
    let mut o = options(&node.url());
    o.auth = NatsAuth::NKey(NKeySeed::parse(TEST_SEED).unwrap());
    let (good, events) = client(&lp, o);
    connected(&lp, &events);
    good.close();
    // Another user's key is refused.
    // Another user's key (a seed of 32 bytes 0x42) is refused.
    let other =
        NKeySeed::parse("SUAEEQSCIJBEEQSCIJBEEQSCIJBEEQSCIJBEEQSCIJBEEQSCIJBEEQV6RY").unwrap();
    let mut o = options(&node.url());
    o.auth = NatsAuth::NKey(other);
    let (bad, events) = client(&lp, o);
    refused(&lp, &events);
    bad.close();
    // No credentials at all: refused.
    let (bad, events) = client(&lp, options(&node.url()));
    refused(&lp, &events);
    bad.close();
}

#[test]
fn reconnects_across_the_server_list_with_new_epochs() {
    let bin = need_nats!();
    let lp = EventLoop::new().unwrap();
    let mut n1 = Node::start(&bin, "r1", &Spec::default());
    let n2 = Node::start(&bin, "r2", &Spec::default());
    let mut o = options(&format!("{},{}", n1.url(), n2.url()));
    o.ping_interval = Duration::from_millis(200);
    let (c, events) = client(&lp, o);
    let (epoch, server) = connected(&lp, &events);
    assert_eq!((epoch, server), (1, format!("127.0.0.1:{}", n1.port)));
    let sid = c.subscribe("after.reconnect", None).unwrap();

    // kill -9 of the server: the epoch ends, the next server takes over,
    // and the subscription is made again before Connected.
    n1.kill();
    match wait_event(&lp, &events, "Disconnected", |e| {
        matches!(e, NatsEvent::Disconnected { .. })
    }) {
        NatsEvent::Disconnected { epoch, .. } => assert_eq!(epoch, 1),
        _ => unreachable!(),
    }
    let (epoch, server) = connected(&lp, &events);
    assert_eq!((epoch, server), (2, format!("127.0.0.1:{}", n2.port)));
    let (other, other_events) = client(&lp, options(&n2.url()));
    connected(&lp, &other_events);
    other.publish("after.reconnect", None, None, b"hi").unwrap();
    match wait_event(&lp, &events, "the message", |e| {
        matches!(e, NatsEvent::Msg(_))
    }) {
        NatsEvent::Msg(m) => assert_eq!((m.sid, m.payload.as_slice()), (sid, &b"hi"[..])),
        _ => unreachable!(),
    }

    // A hung server (SIGSTOP) is found by missed PONGs, and the client
    // moves back to the first server, restarted meanwhile.
    n1.restart();
    n2.signal(libc::SIGSTOP);
    match wait_event(&lp, &events, "Disconnected (stale)", |e| {
        matches!(e, NatsEvent::Disconnected { .. })
    }) {
        NatsEvent::Disconnected { epoch, reason } => {
            assert_eq!(epoch, 2);
            assert!(
                reason.contains("stale") || reason.contains("PONG"),
                "{reason}"
            );
        }
        _ => unreachable!(),
    }
    let (epoch, server) = connected(&lp, &events);
    assert_eq!((epoch, server), (3, format!("127.0.0.1:{}", n1.port)));
    n2.signal(libc::SIGCONT);
    other.close();
    c.close();
}

#[test]
fn keeps_trying_with_back_off_until_a_server_comes() {
    let bin = need_nats!();
    let lp = EventLoop::new().unwrap();
    let mut n1 = Node::start(&bin, "late", &Spec::default());
    n1.kill();
    let (c, events) = client(&lp, options(&n1.url()));
    lp.run_until(Duration::from_millis(700), || false).unwrap();
    assert!(!c.is_connected());
    assert!(events.borrow().is_empty(), "failed attempts are no events");
    n1.restart();
    let (epoch, _) = connected(&lp, &events);
    assert_eq!(epoch, 1);
    c.close();
}

/// Runs one JetStream API request and waits for its answer.
fn js_request(
    lp: &EventLoop,
    c: &NatsClient,
    events: &Events,
    subject: &str,
    headers: Option<&Headers>,
    payload: &[u8],
) -> Msg {
    let t = c.request(subject, headers, payload).unwrap();
    reply(lp, events, t)
}

#[test]
fn jetstream_kv_create_if_absent_get_delete_and_watch() {
    let bin = need_nats!();
    let lp = EventLoop::new().unwrap();
    let node = Node::start(
        &bin,
        "js",
        &Spec {
            jetstream: true,
            ..Spec::default()
        },
    );
    let (c, events) = client(&lp, options(&node.url()));
    connected(&lp, &events);
    let kv = Kv::new("sb_test").unwrap();
    let (subject, body) = kv.create_request(1);
    let answer = js_request(&lp, &c, &events, &subject, None, &body);
    js::parse_response(&answer).expect("stream created");
    // Creating it again with the same settings succeeds.
    let answer = js_request(&lp, &c, &events, &subject, None, &body);
    js::parse_response(&answer).expect("stream created again");

    // Create-if-absent: one winner, then "wrong last sequence".
    let key = kv.key_subject("Greeter").unwrap();
    let create = Kv::expect_revision(0);
    let first = js_request(&lp, &c, &events, &key, Some(&create), b"b1");
    let rev = js::parse_pub_ack(&first).expect("first create wins");
    let second = js_request(&lp, &c, &events, &key, Some(&create), b"b2");
    let e = js::parse_pub_ack(&second).unwrap_err();
    assert_eq!(e.err_code, ERR_WRONG_LAST_SEQUENCE, "{e}");

    // Get reads the winner's value and revision; a missing key is None.
    let got = js_request(
        &lp,
        &c,
        &events,
        &kv.get_request("Greeter").unwrap(),
        None,
        b"",
    );
    let entry = kv.parse_get(&got).unwrap().expect("the key exists");
    assert_eq!((entry.value.as_slice(), entry.revision), (&b"b1"[..], rev));
    let got = js_request(
        &lp,
        &c,
        &events,
        &kv.get_request("Nope").unwrap(),
        None,
        b"",
    );
    assert_eq!(kv.parse_get(&got).unwrap(), None);

    // A watch: the current entries, then every change, in order.
    let inbox = c.new_inbox();
    let wsid = c.subscribe(&inbox, None).unwrap();
    let (subject, body) = kv.watch_request(&inbox, None);
    let answer = js_request(&lp, &c, &events, &subject, None, &body);
    js::parse_response(&answer).expect("consumer created");
    let mut watch = Watch::new(0);
    let mut next_entry = |what: &str| loop {
        let m = match wait_event(
            &lp,
            &events,
            what,
            |e| matches!(e, NatsEvent::Msg(m) if m.sid == wsid),
        ) {
            NatsEvent::Msg(m) => m,
            _ => unreachable!(),
        };
        match watch.on_msg(&kv, &m) {
            WatchStep::Entry { entry, caught_up } => return (entry, caught_up),
            WatchStep::Answer(subject) => c.publish(&subject, None, None, b"").unwrap(),
            WatchStep::Heartbeat | WatchStep::Ignore => {}
            WatchStep::Gap { from } => panic!("gap from {from} on loopback"),
        }
    };
    let (e, caught_up) = next_entry("the existing entry");
    assert_eq!(
        (e.key.as_str(), e.op, caught_up),
        ("Greeter", KvOp::Put, true)
    );

    // A compare-and-set delete with a reason: a stale revision is refused,
    // the right one leaves a marker the watch sees with its reason.
    let stale = Kv::delete_headers(Some(rev + 100), &[("Sb-Reason", "rescinded")]);
    let answer = js_request(&lp, &c, &events, &key, Some(&stale), b"");
    assert_eq!(
        js::parse_pub_ack(&answer).unwrap_err().err_code,
        ERR_WRONG_LAST_SEQUENCE
    );
    let del = Kv::delete_headers(Some(rev), &[("Sb-Reason", "rescinded")]);
    let answer = js_request(&lp, &c, &events, &key, Some(&del), b"");
    let del_rev = js::parse_pub_ack(&answer).unwrap();
    let (e, _) = next_entry("the delete marker");
    assert_eq!(
        (e.key.as_str(), e.op, e.revision),
        ("Greeter", KvOp::Delete, del_rev)
    );
    assert_eq!(
        e.headers.as_ref().unwrap().get("Sb-Reason"),
        Some("rescinded")
    );
    let got = js_request(
        &lp,
        &c,
        &events,
        &kv.get_request("Greeter").unwrap(),
        None,
        b"",
    );
    assert_eq!(
        kv.parse_get(&got).unwrap(),
        None,
        "deleted keys read as absent"
    );

    // After a delete, create-if-absent needs the marker's revision.
    let again = js_request(
        &lp,
        &c,
        &events,
        &key,
        Some(&Kv::expect_revision(del_rev)),
        b"b3",
    );
    js::parse_pub_ack(&again).expect("re-created");
    let (e, _) = next_entry("the new value");
    assert_eq!((e.op, e.value.as_slice()), (KvOp::Put, &b"b3"[..]));

    // Purge.
    let answer = js_request(&lp, &c, &events, &key, Some(&Kv::purge_headers()), b"");
    js::parse_pub_ack(&answer).expect("purged");
    let (e, _) = next_entry("the purge marker");
    assert_eq!(e.op, KvOp::Purge);
    c.close();
}

#[test]
fn jetstream_unavailable_reads_as_no_responders() {
    let bin = need_nats!();
    let lp = EventLoop::new().unwrap();
    let node = Node::start(&bin, "nojs", &Spec::default());
    let (c, events) = client(&lp, options(&node.url()));
    connected(&lp, &events);
    let kv = Kv::new("b").unwrap();
    let (subject, body) = kv.create_request(1);
    let answer = js_request(&lp, &c, &events, &subject, None, &body);
    assert_eq!(js::parse_response(&answer).unwrap_err().code, 503);
    c.close();
}

/// A client dropped without `close` takes its socket out of the loop: a
/// host watching the loop's fds is told to drop it, and nothing is left
/// for the closed fd.
#[test]
fn a_client_dropped_without_close_leaves_nothing_in_the_loop() {
    let bin = need_nats!();
    let node = Node::start(&bin, "dropped", &Spec::default());
    let lp = EventLoop::new().unwrap();
    let watched: Rc<RefCell<std::collections::BTreeSet<i32>>> = Rc::default();
    let w = watched.clone();
    lp.watch_fds(move |fd, events| {
        if events.is_none() {
            w.borrow_mut().remove(&fd);
        } else {
            w.borrow_mut().insert(fd);
        }
    })
    .unwrap();
    let own = watched.borrow().len();
    let (c, events) = client(&lp, options(&node.url()));
    connected(&lp, &events);
    assert_eq!(watched.borrow().len(), own + 1, "the socket is watched");
    drop(c);
    assert_eq!(
        watched.borrow().len(),
        own,
        "the socket is dropped with the client"
    );
}
