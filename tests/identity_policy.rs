//! Who calls and who may: the caller identity a publisher sees (Unix
//! peer credentials, token names, client names), named tokens, the
//! policy's checks on publish and call (`access_denied`, counted), and
//! the Unix socket file's mode. The same checks across two uids, with
//! real processes, live in tests/two_uids.rs.

#[macro_use]
mod common;

use common::*;
use stagebus::broker::Policy;
use stagebus::wire::{Frame, Payload};
use stagebus::*;
use std::os::unix::fs::PermissionsExt;

/// Publishes `Echo` on `publisher`, calls it from `caller`, and returns
/// the caller identity the publisher saw.
fn identity_seen(h: &Harness, publisher: &Client, caller: &Client) -> CallerInfo {
    let (served, serve) = holder();
    publish(publisher, "Echo", &["echo"], serve).unwrap();
    let (_, done) = start_call(caller, "Echo", "echo", &arg("x", 1));
    h.until("the call arrives", || !served.borrow().is_empty());
    let (delivery, _) = served.borrow()[0].clone();
    delivery.respond("return", &Args::new()).unwrap();
    wait(&h.lp, &done);
    delivery
        .caller()
        .expect("the broker stamps the caller")
        .clone()
}

#[test]
fn on_a_unix_socket_the_publisher_sees_the_callers_uid_gid_pid_and_name() {
    let h = Harness::new(Transport::Unix);
    let publisher = h.client();
    let caller = h.client_with(ClientConfig::default().with_name("the caller"));
    let seen = identity_seen(&h, &publisher, &caller);
    // SAFETY: getuid/getgid only read this process's ids.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!(seen.uid, Some(uid));
    assert_eq!(seen.gid, Some(gid));
    assert_eq!(seen.pid, Some(std::process::id()));
    assert_eq!(seen.client_name.as_deref(), Some("the caller"));
    assert_eq!(seen.identity, None);
    assert_eq!(Some(seen.connection), caller.connection_id());
}

#[test]
fn on_tcp_the_identity_is_the_name_of_the_token_presented() {
    let h = Harness::with(Transport::Tcp, |c| {
        *c = c
            .clone()
            .with_named_token("ops", "ops-secret")
            .with_named_token("app", "app-secret");
    });
    let publisher = h.client_with(ClientConfig::default().with_token("app-secret"));
    let caller = h.client_with(ClientConfig::default().with_token("ops-secret"));
    let seen = identity_seen(&h, &publisher, &caller);
    assert_eq!(seen.identity.as_deref(), Some("ops"));
    assert_eq!((seen.uid, seen.gid, seen.pid), (None, None, None));
    assert_eq!(seen.client_name, None);
    // A token of neither name is refused.
    let c = Client::connect(&h.lp, &h.addr, ClientConfig::default().with_token("nope"));
    let done = Slot::new();
    c.on_connect(done.setter());
    let e = wait(&h.lp, &done).unwrap_err();
    assert_eq!(e.code, ErrorCode::Refused, "{e}");
}

#[test]
fn a_publisher_that_says_a_plain_hello_gets_plain_delivers() {
    let h = Harness::new(Transport::Unix);
    let mut raw = Raw::handshaken(&h.lp, &h.addr);
    raw.send(
        &h.lp,
        &Frame::Publish {
            id: 1,
            session: "Old".into(),
            methods: vec!["m".into()],
        },
    );
    assert!(matches!(
        raw.next(&h.lp),
        Frame::Result {
            id: 1,
            outcome: Ok(_)
        }
    ));
    let caller = h.client();
    let _ = start_call(&caller, "Old", "m", &Args::new());
    match raw.next(&h.lp) {
        Frame::Deliver {
            session,
            method,
            payload,
            ..
        } => {
            assert_eq!((session.as_str(), method.as_str()), ("Old", "m"));
            assert_eq!(payload, Payload::encode(&Args::new()));
        }
        other => panic!("expected a plain deliver, got {other:?}"),
    }
}

const POLICY: &str = "
    allow token=ops own Admin*
    allow anyone own Public
    deny anyone call Admin shutdown
    allow anyone call *
";

#[test]
fn the_policy_decides_who_may_publish_and_call() {
    let policy = Policy::parse(POLICY).unwrap();
    let h = Harness::with(Transport::Tcp, |c| {
        *c = c
            .clone()
            .with_named_token("ops", "o")
            .with_named_token("app", "a")
            .with_policy(policy);
    });
    let ops = h.client_with(ClientConfig::default().with_token("o"));
    let app = h.client_with(ClientConfig::default().with_token("a"));

    let e = publish(&app, "AdminPanel", &["shutdown"], echo()).unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessDenied, "{e}");
    assert!(e.message.contains("own 'AdminPanel'"), "{e}");
    publish(&app, "Public", &["x"], echo()).unwrap();
    publish(&ops, "Admin", &["shutdown", "status"], echo()).unwrap();
    assert_eq!(names(&app), ["Admin", "Public"]);

    let denied = call(&app, "Admin", "shutdown", &Args::new());
    let e = call_error(&denied.last);
    assert_eq!(e.code, ErrorCode::AccessDenied, "{e}");
    assert!(e.message.contains("policy line 4"), "{e}");
    let ok = call(&app, "Admin", "status", &arg("v", 7));
    assert!(matches!(ok.last, CallEvent::Return { .. }), "{ok:?}");
    assert_eq!(h.broker.stats().access_denied, 2);

    // The publisher dies: its name is free, but only for an identity the
    // policy lets own it.
    drop(ops);
    until_listed(&app, &["Public"]);
    let e = publish(&app, "Admin", &["shutdown"], echo()).unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessDenied);
    let ops2 = h.client_with(ClientConfig::default().with_token("o"));
    publish(&ops2, "Admin", &["shutdown"], echo()).unwrap();
    assert_eq!(h.broker.stats().access_denied, 3);
}

#[test]
fn unix_socket_files_default_to_0660_and_take_the_mode_asked_for() {
    let h = Harness::new(Transport::Unix);
    let Address::Unix(path) = &h.addr else {
        unreachable!()
    };
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let h = Harness::with(Transport::Unix, |c| {
        *c = c.clone().with_socket_mode(0o600).with_socket_group("0");
    });
    let Address::Unix(path) = &h.addr else {
        unreachable!()
    };
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let _ = h.client();
    let lp = EventLoop::new().unwrap();
    let dir = TempDir::new("badgroup");
    let config = BrokerConfig::listening([Address::Unix(dir.path().join("s"))])
        .with_socket_group("no-such-group-here");
    let e = Broker::new(&lp, config).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert!(e.message.contains("no group named"), "{e}");
}

#[test]
fn a_client_name_longer_than_a_name_may_be_is_refused() {
    let h = Harness::new(Transport::Tcp);
    let c = Client::connect(
        &h.lp,
        &h.addr,
        ClientConfig::default().with_name("n".repeat(257)),
    );
    let done = Slot::new();
    c.on_connect(done.setter());
    let e = wait(&h.lp, &done).unwrap_err();
    assert!(e.message.contains("client name is longer than 256"), "{e}");
}

#[test]
fn see_rules_filter_the_listing_and_police_subscribes() {
    let policy = Policy::parse(
        "allow anyone own *\n\
         allow token=ops see Admin*\n\
         deny anyone see Admin*\n\
         allow anyone see *\n\
         allow anyone call *\n",
    )
    .unwrap();
    let h = Harness::with(Transport::Tcp, |c| {
        *c = c
            .clone()
            .with_named_token("ops", "o")
            .with_named_token("app", "a")
            .with_policy(policy);
    });
    let ops = h.client_with(ClientConfig::default().with_token("o"));
    let app = h.client_with(ClientConfig::default().with_token("a"));
    publish(&ops, "AdminPanel", &["x"], echo()).unwrap();
    publish(&ops, "Public", &["x"], echo()).unwrap();

    assert_eq!(names(&ops), ["AdminPanel", "Public"]);
    assert_eq!(names(&app), ["Public"], "app does not see AdminPanel");
    let e = subscribe(&app, "AdminPanel").unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessDenied, "{e}");
    assert!(e.message.contains("see 'AdminPanel'"), "{e}");
    assert_eq!(subscribe(&app, "Public").unwrap(), ["x"]);
    assert_eq!(subscribe(&ops, "AdminPanel").unwrap(), ["x"]);
    // A listing leaves hidden names out without a denial: the one
    // counted is the subscribe's.
    assert_eq!(h.broker.stats().access_denied, 1);
}
