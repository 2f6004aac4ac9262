//! TLS on TCP (`tls://`), over loopback, with certificates this test
//! makes (rcgen): a CA, a broker certificate for 127.0.0.1 and
//! localhost, client certificates for mutual TLS, and a second CA that
//! nobody should trust.
//!
//! * a call through `tls://` with a real broker process (the CLI) and
//!   the CLI's serve and call, and with Rust clients;
//! * a client trusting another CA is refused with a clear error, and the
//!   failed handshake harms no other connection;
//! * mutual TLS: a client certificate's subject reaches the publisher as
//!   the caller's identity, a policy rule on the subject allows and
//!   denies, a client without a certificate is refused;
//! * a plain client to a TLS port and a TLS client to a plain port fail
//!   with an error, not a hang;
//! * missing and invalid PEM files are errors naming the file, at start.

#![cfg(feature = "tls")]

#[macro_use]
mod common;
mod support;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use stagebus::broker::Policy;
use stagebus::*;
use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;
use support::Proc;

/// A CA: its certificate (PEM), and what it signs with.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate this CA issues: (certificate PEM, key PEM).
    fn issue(&self, cn: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Every file the tests need, in a temporary directory.
struct Files {
    dir: TempDir,
}

impl Files {
    fn new(tag: &str) -> Files {
        let dir = TempDir::new(tag);
        let f = Files { dir };
        let ca = Ca::new("stagebus test CA");
        let other = Ca::new("some other CA");
        f.write("ca.pem", &ca.cert.pem());
        f.write("other-ca.pem", &other.cert.pem());
        let (cert, key) = ca.issue(
            "broker",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        f.write("broker.pem", &cert);
        f.write("broker.key", &key);
        for who in ["alice", "bob", "Ann Lee"] {
            let (cert, key) = ca.issue(who, &[], ExtendedKeyUsagePurpose::ClientAuth);
            f.write(&format!("{who}.pem"), &cert);
            f.write(&format!("{who}.key"), &key);
        }
        // A client certificate from the CA the broker does not trust.
        let (cert, key) = other.issue("mallory", &[], ExtendedKeyUsagePurpose::ClientAuth);
        f.write("mallory.pem", &cert);
        f.write("mallory.key", &key);
        f
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn broker_tls(&self) -> BrokerTls {
        BrokerTls::new(self.path("broker.pem"), self.path("broker.key"))
    }

    /// Client settings trusting `ca`, presenting `who`'s certificate.
    fn client(&self, ca: &str, who: Option<&str>) -> ClientConfig {
        ClientConfig::default().with_tls(ClientTls {
            ca: Some(self.path(ca)),
            cert: who.map(|w| self.path(&format!("{w}.pem"))),
            key: who.map(|w| self.path(&format!("{w}.key"))),
        })
    }
}

fn tls_any() -> Address {
    "tls://127.0.0.1:0".parse().unwrap()
}

/// A broker on this loop listening on `tls://127.0.0.1:0` (and plain
/// TCP), with `tls` and `adjust`.
fn tls_harness(tls: BrokerTls, adjust: impl FnOnce(&mut BrokerConfig)) -> (EventLoop, Broker) {
    let mut config = BrokerConfig::listening([tls_any(), tcp_any()]).with_tls(tls);
    adjust(&mut config);
    let lp = EventLoop::new().unwrap();
    let broker = Broker::new(&lp, config).unwrap();
    (lp, broker)
}

/// Connects with `config`: the connect's outcome.
fn connect(lp: &EventLoop, addr: &Address, config: ClientConfig) -> (Client, Result<(), Error>) {
    let c = Client::connect(lp, addr, config);
    let done = Slot::new();
    c.on_connect(done.setter());
    let outcome = wait(lp, &done).map(|_| ());
    (c, outcome)
}

fn connected(lp: &EventLoop, addr: &Address, config: ClientConfig) -> Client {
    let (c, outcome) = connect(lp, addr, config);
    outcome.expect("the TLS connect");
    c
}

/// Publishes `Echo` on `publisher`, calls it from `caller`: the
/// caller's identity the publisher saw.
fn identity_seen(lp: &EventLoop, publisher: &Client, caller: &Client) -> Option<String> {
    let (served, serve) = holder();
    publish(publisher, "Echo", &["echo"], serve).unwrap();
    let (_, done) = start_call(caller, "Echo", "echo", &arg("x", 1));
    until(lp, "the call arrives", || !served.borrow().is_empty());
    let (delivery, _) = served.borrow()[0].clone();
    delivery.respond("return", &arg("x", 1)).unwrap();
    let outcome = wait(lp, &done);
    assert!(
        matches!(outcome.last, CallEvent::Return { .. }),
        "{outcome:?}"
    );
    let seen = delivery
        .caller()
        .expect("the broker stamps the caller")
        .clone();
    seen.identity
}

fn stagebus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stagebus"))
}

#[test]
fn a_call_goes_through_tls_between_real_processes() {
    let f = Files::new("tls-cli");
    let mut broker = Proc::spawn(
        "broker",
        stagebus().args([
            "broker",
            "--listen",
            "tls://127.0.0.1:0",
            "--tls-cert",
            &f.arg("broker.pem"),
            "--tls-key",
            &f.arg("broker.key"),
        ]),
    );
    let line = broker.wait_line("the address", |l| l.starts_with("listening on "));
    let address = line.trim_start_matches("listening on ").trim().to_string();
    assert!(address.starts_with("tls://127.0.0.1:"), "{address}");
    let port = address.rsplit(':').next().unwrap().to_string();
    // The CLI's serve and call, one by IP address, one by host name.
    let serve = Proc::spawn(
        "serve",
        stagebus().args([
            "serve",
            "--broker",
            &address,
            "--tls-ca",
            &f.arg("ca.pem"),
            "--name",
            "Demo",
        ]),
    );
    let by_name = format!("tls://localhost:{port}");
    let (status, out, err) = support::run_bounded_text(
        stagebus().args([
            "call",
            "--broker",
            &by_name,
            "--tls-ca",
            &f.arg("ca.pem"),
            "--wait",
            "20",
            "Demo",
            "echo",
            "word=hello",
        ]),
        Duration::from_secs(30),
    );
    assert!(
        status.success(),
        "call failed: {err}\n{}",
        serve.transcript()
    );
    assert!(out.contains("\"word\":\"hello\""), "{out}");

    // Rust clients through the same broker: a publisher and a caller.
    let lp = EventLoop::new().unwrap();
    let addr: Address = address.parse().unwrap();
    let publisher = connected(&lp, &addr, f.client("ca.pem", None));
    let caller = connected(&lp, &addr, f.client("ca.pem", None));
    assert_eq!(identity_seen(&lp, &publisher, &caller), None);
    // A big call crosses many TLS records both ways.
    publish(&publisher, "Big", &["echo"], echo()).unwrap();
    let big = "x".repeat(300_000);
    let outcome = call(&caller, "Big", "echo", &arg("big", big.as_str()));
    match &outcome.last {
        CallEvent::Return { args, .. } => {
            assert_eq!(args.get("big"), Some(&Value::from(big.as_str())))
        }
        other => panic!("{other:?}"),
    }
    // The CLI's call with a CA it does not trust is refused, exit 1.
    let (status, _, err) = support::run_bounded_text(
        stagebus().args([
            "call",
            "--broker",
            &address,
            "--tls-ca",
            &f.arg("other-ca.pem"),
            "Demo",
            "echo",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
    serve.terminate();
    broker.terminate();
}

#[test]
fn a_client_trusting_another_ca_is_refused_and_harms_nobody_else() {
    let f = Files::new("tls-other-ca");
    let (lp, broker) = tls_harness(f.broker_tls(), |_| {});
    let addr = broker.local_addresses()[0].clone();
    let good = connected(&lp, &addr, f.client("ca.pem", None));
    publish(&good, "Echo", &["echo"], echo()).unwrap();

    let (_bad, outcome) = connect(&lp, &addr, f.client("other-ca.pem", None));
    let e = outcome.unwrap_err();
    assert!(e.message.contains("TLS handshake failed"), "{e}");
    assert!(e.message.contains("UnknownIssuer"), "{e}");
    until(&lp, "the broker counts the failed handshake", || {
        broker.stats().tls_handshake_failures >= 1
    });
    // The report a client asks for over the wire counts it too.
    let report = Rc::new(RefCell::new(None));
    let r = report.clone();
    good.stats(move |got| *r.borrow_mut() = Some(got.unwrap()));
    until(&lp, "the report", || report.borrow().is_some());
    let report = report.borrow_mut().take().unwrap();
    assert!(report.totals.tls_handshake_failures >= 1, "{report:?}");
    assert!(report
        .to_prometheus()
        .contains("\nstagebus_tls_handshake_failures_total "));
    // The good connection goes on.
    let outcome = call(&good, "Echo", "echo", &arg("x", 5));
    assert!(
        matches!(outcome.last, CallEvent::Return { .. }),
        "{outcome:?}"
    );
}

#[test]
fn a_client_certificate_subject_reaches_the_publisher_as_the_identity() {
    let f = Files::new("tls-identity");
    let tls = f.broker_tls().with_client_ca(f.path("ca.pem"));
    let (lp, broker) = tls_harness(tls, |_| {});
    let addr = broker.local_addresses()[0].clone();
    let publisher = connected(&lp, &addr, f.client("ca.pem", Some("bob")));
    let caller = connected(&lp, &addr, f.client("ca.pem", Some("alice")));
    assert_eq!(
        identity_seen(&lp, &publisher, &caller).as_deref(),
        Some("CN=alice")
    );
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate_or_with_a_foreign_one() {
    let f = Files::new("tls-mutual");
    let tls = f.broker_tls().with_client_ca(f.path("ca.pem"));
    let (lp, broker) = tls_harness(tls, |_| {});
    let addr = broker.local_addresses()[0].clone();
    let (_c, outcome) = connect(&lp, &addr, f.client("ca.pem", None));
    let e = outcome.unwrap_err();
    assert!(e.message.contains("certificate"), "{e}");
    let (_c, outcome) = connect(&lp, &addr, f.client("ca.pem", Some("mallory")));
    let e = outcome.unwrap_err();
    assert!(e.message.contains("TLS"), "{e}");
    until(&lp, "both failures counted", || {
        broker.stats().tls_handshake_failures >= 2
    });
    // One with a certificate of the right CA gets in.
    connected(&lp, &addr, f.client("ca.pem", Some("alice")));
}

#[test]
fn a_policy_rule_on_the_subject_allows_and_denies() {
    let f = Files::new("tls-policy");
    let policy = Policy::parse(
        "allow subject=CN=alice own Vault\n\
         allow anyone own Public\n\
         allow subject=CN=alice call Vault\n\
         allow subject=\"CN=Ann Lee\" call Vault  # a subject with a space\n\
         deny anyone call Vault\n\
         allow anyone call *\n",
    )
    .unwrap();
    let tls = f.broker_tls().with_client_ca(f.path("ca.pem"));
    let (lp, broker) = tls_harness(tls, |c| c.policy = Some(policy));
    let addr = broker.local_addresses()[0].clone();
    let alice = connected(&lp, &addr, f.client("ca.pem", Some("alice")));
    let bob = connected(&lp, &addr, f.client("ca.pem", Some("bob")));

    let e = publish(&bob, "Vault", &["open"], echo()).unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessDenied, "{e}");
    publish(&alice, "Vault", &["open"], echo()).unwrap();
    publish(&bob, "Public", &["echo"], echo()).unwrap();

    let denied = call(&bob, "Vault", "open", &Args::new());
    assert_eq!(call_error(&denied.last).code, ErrorCode::AccessDenied);
    let ok = call(&alice, "Vault", "open", &Args::new());
    assert!(matches!(ok.last, CallEvent::Return { .. }), "{ok:?}");
    let ok = call(&bob, "Public", "echo", &Args::new());
    assert!(matches!(ok.last, CallEvent::Return { .. }), "{ok:?}");
    let ann = connected(&lp, &addr, f.client("ca.pem", Some("Ann Lee")));
    let ok = call(&ann, "Vault", "open", &Args::new());
    assert!(matches!(ok.last, CallEvent::Return { .. }), "{ok:?}");
    assert_eq!(broker.stats().access_denied, 2);
}

#[test]
fn plain_and_tls_ends_that_do_not_match_fail_without_hanging() {
    let f = Files::new("tls-mismatch");
    let (lp, broker) = tls_harness(f.broker_tls(), |_| {});
    let addrs = broker.local_addresses();
    let (tls_addr, plain_addr) = (addrs[0].clone(), addrs[1].clone());
    let Address::Tls { addr: tls_sock, .. } = &tls_addr else {
        panic!("{tls_addr}")
    };
    let Address::Tcp(plain_sock) = &plain_addr else {
        panic!("{plain_addr}")
    };
    // A generous connect timeout: the failure must come from the
    // mismatch, long before it.
    let patient = |c: ClientConfig| c.with_connect_timeout(Duration::from_secs(60));

    // A plain client to the TLS port.
    let started = std::time::Instant::now();
    let (_c, outcome) = connect(
        &lp,
        &Address::Tcp(*tls_sock),
        patient(ClientConfig::default()),
    );
    let e = outcome.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "{e}");
    assert!(e.message.contains("tls://"), "{e}");

    // A TLS client to the plain port.
    let started = std::time::Instant::now();
    let wrong: Address = format!("tls://{plain_sock}").parse().unwrap();
    let (_c, outcome) = connect(&lp, &wrong, patient(f.client("ca.pem", None)));
    let e = outcome.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "{e}");
    assert!(e.message.contains("TLS"), "{e}");
}

#[test]
fn missing_or_invalid_pem_files_are_errors_naming_them() {
    let f = Files::new("tls-files");
    f.write("garbage.pem", "this is no PEM\n");
    f.write("cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let start = |tls: BrokerTls| {
        let lp = EventLoop::new().unwrap();
        Broker::new(&lp, BrokerConfig::listening([tls_any()]).with_tls(tls)).map(|_| ())
    };
    let e = start(BrokerTls::new(f.path("nope.pem"), f.path("broker.key"))).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    assert!(e.message.contains("nope.pem"), "{e}");
    let e = start(BrokerTls::new(f.path("garbage.pem"), f.path("broker.key"))).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
    assert!(
        e.message.contains("garbage.pem") && e.message.contains("no certificate"),
        "{e}"
    );
    let e = start(BrokerTls::new(f.path("cut.pem"), f.path("broker.key"))).unwrap_err();
    assert!(e.message.contains("cut.pem"), "{e}");
    let e = start(BrokerTls::new(f.path("broker.pem"), f.path("broker.pem"))).unwrap_err();
    assert!(e.message.contains("no private key"), "{e}");
    let e = start(BrokerTls::new(f.path("broker.pem"), f.path("alice.key"))).unwrap_err();
    assert!(e.message.contains("cannot be used together"), "{e}");
    let e = start(f.broker_tls().with_client_ca(f.path("garbage.pem"))).unwrap_err();
    assert!(e.message.contains("garbage.pem"), "{e}");
    // A tls:// listener without certificate and key.
    let lp = EventLoop::new().unwrap();
    let e = Broker::new(&lp, BrokerConfig::listening([tls_any()])).unwrap_err();
    assert!(e.message.contains("--tls-cert"), "{e}");

    // A client's bad CA file fails its connect, naming the file.
    let (lp, broker) = tls_harness(f.broker_tls(), |_| {});
    let addr = broker.local_addresses()[0].clone();
    let (_c, outcome) = connect(&lp, &addr, f.client("garbage.pem", None));
    let e = outcome.unwrap_err();
    assert!(e.message.contains("garbage.pem"), "{e}");

    // The CLI broker: exit 1 and the file named on stderr.
    let (status, _, err) = support::run_bounded_text(
        stagebus().args([
            "broker",
            "--listen",
            "tls://127.0.0.1:0",
            "--tls-cert",
            &f.arg("broker.pem"),
            "--tls-key",
            &f.arg("missing.key"),
        ]),
        Duration::from_secs(30),
    );
    assert!(!status.success());
    assert!(err.contains("missing.key"), "{err}");
}

#[test]
fn tls_flags_that_do_not_fit_together_are_usage_errors() {
    let cases: [&[&str]; 3] = [
        &[
            "broker",
            "--listen",
            "tls://127.0.0.1:0",
            "--tls-client-ca",
            "ca.pem",
        ],
        &[
            "broker",
            "--listen",
            "tls://127.0.0.1:0",
            "--tls-cert",
            "c.pem",
        ],
        &[
            "call",
            "--broker",
            "tls://127.0.0.1:1",
            "--tls-key",
            "k.pem",
            "S",
            "m",
        ],
    ];
    for args in cases {
        let (status, _, err) =
            support::run_bounded_text(stagebus().args(args), Duration::from_secs(30));
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--tls-"), "{args:?}: {err}");
    }
    // A broker listening on tls:// without a certificate: exit 1, saying
    // what it needs.
    let (status, _, err) = support::run_bounded_text(
        stagebus().args(["broker", "--listen", "tls://127.0.0.1:0"]),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
}
