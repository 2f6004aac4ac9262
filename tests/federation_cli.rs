//! A federated broker started from the command line, authenticating to
//! NATS with an NKey: from the `--nats-nkey` flag and from a config
//! file's `nats-nkey-file` (a path relative to the file's folder), with
//! nats-server configured for that NKey user only; and over TLS to a
//! nats-server that verifies client certificates (`tls://`,
//! `--nats-tls-ca/--nats-tls-cert/--nats-tls-key`), where a broker
//! trusting another CA says why it cannot join. The broker's publish
//! of an exclusive name waits for its claim in JetStream, so `stagebus
//! serve` publishing and `stagebus call` answered show that the broker's
//! NATS connection was let in.

#![cfg(feature = "tls")]

#[macro_use]
mod nats_support;
mod support;

use nats_support::{Dir, Node, Spec};
use std::process::Command;
use std::time::Duration;
use support::Proc;

/// The NATS clients' test user: a seed and its public key.
const SEED: &str = "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY";
const NKEY: &str = "UAT6BWCSCWLUKJT6K6MBJJOEOTXZ5AJDOYKNEVRFC7VNO6OA43N4TRNO";

fn stagebus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stagebus"))
}

/// Starts `stagebus broker ARGS` and returns it with its address.
fn broker(args: &[&str]) -> (Proc, String) {
    let mut cmd = stagebus();
    cmd.args(["broker", "--listen", "tcp://127.0.0.1:0"])
        .args(args);
    let mut p = Proc::spawn("broker", &mut cmd);
    let line = p.wait_line("the address", |l| l.starts_with("listening on "));
    let address = line.trim_start_matches("listening on ").trim().to_string();
    (p, address)
}

/// `stagebus serve` publishes `name` on `address`, and a call through the
/// CLI is answered.
fn serve_and_call(address: &str, name: &str, broker: &Proc) {
    let serve = Proc::spawn(
        "serve",
        stagebus().args(["serve", "--broker", address, "--name", name]),
    );
    let (status, out, err) = support::run_bounded_text(
        stagebus().args([
            "call", "--broker", address, "--wait", "20", name, "echo", "word=hi",
        ]),
        Duration::from_secs(30),
    );
    assert!(
        status.success() && out.contains("hi"),
        "call failed: {out}\n{err}\nserve: {}\nbroker: {}",
        serve.transcript(),
        broker.transcript()
    );
    serve.terminate();
}

#[test]
fn a_broker_joins_nats_with_an_nkey_from_the_flag_and_from_the_config_file() {
    let bin = need_nats!();
    let node = Node::start(
        &bin,
        "nkey-cli",
        &Spec {
            extra: format!("authorization {{ users = [ {{ nkey: {NKEY} }} ] }}"),
            jetstream: true,
        },
    );
    let dir = Dir::new("nkey-cli");
    let seed_file = dir.0.join("fed.nk");
    std::fs::write(&seed_file, format!("{SEED}\n")).unwrap();

    let (b1, address) = broker(&[
        "--federate",
        &node.url(),
        "--broker-id",
        "b1",
        "--nats-nkey",
        seed_file.to_str().unwrap(),
    ]);
    serve_and_call(&address, "ByFlag", &b1);
    b1.terminate();

    let config = dir.0.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[federation]\nservers = [\"{}\"]\nbroker-id = \"b2\"\nnats-nkey-file = \"fed.nk\"\n",
            node.url()
        ),
    )
    .unwrap();
    // Started from another folder: the seed file is found beside the
    // config file.
    let (b2, address) = broker(&["--config", config.to_str().unwrap()]);
    serve_and_call(&address, "ByConfig", &b2);
    b2.terminate();
}

#[test]
fn bad_nkey_seed_files_are_errors_naming_the_file_without_the_secret() {
    let dir = Dir::new("nkey-bad");
    let typo = dir.0.join("typo.nk");
    let mut mistyped = SEED.to_string();
    mistyped.replace_range(20..21, "A");
    std::fs::write(&typo, &mistyped).unwrap();
    let missing = dir.0.join("missing.nk");
    for (file, why) in [(&typo, "checksum"), (&missing, "cannot read")] {
        let (status, _out, err) = support::run_bounded_text(
            stagebus().args([
                "broker",
                "--listen",
                "tcp://127.0.0.1:0",
                "--federate",
                "nats://127.0.0.1:1",
                "--broker-id",
                "b1",
                "--nats-nkey",
                file.to_str().unwrap(),
            ]),
            Duration::from_secs(30),
        );
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(
            err.contains(file.to_str().unwrap()) && err.contains(why),
            "{err}"
        );
        assert!(
            !err.contains(&mistyped[2..]),
            "the seed is not echoed: {err}"
        );
    }
    let (status, _out, err) = support::run_bounded_text(
        stagebus().args([
            "broker",
            "--federate",
            "nats://127.0.0.1:1",
            "--broker-id",
            "b1",
            "--nats-nkey",
            "x.nk",
            "--nats-token",
            "t",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn a_broker_joins_nats_over_mutual_tls_and_a_foreign_ca_is_refused_loudly() {
    let bin = need_nats!();
    let certs = support::certs::tls_dir();
    let file = |name: &str| certs.join(name).to_str().unwrap().to_string();
    let node = Node::start(
        &bin,
        "tls",
        &Spec {
            extra: format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 5\n}}",
                file("broker.pem"),
                file("broker.key"),
                file("ca.pem")
            ),
            jetstream: true,
        },
    );
    let url = format!("tls://127.0.0.1:{}", node.port);
    let (b1, address) = broker(&[
        "--federate",
        &url,
        "--broker-id",
        "b1",
        "--nats-tls-ca",
        &file("ca.pem"),
        "--nats-tls-cert",
        &file("alice.pem"),
        "--nats-tls-key",
        &file("alice.key"),
    ]);
    serve_and_call(&address, "OverTls", &b1);
    b1.terminate();

    let (b2, _address) = broker(&[
        "--federate",
        &url,
        "--broker-id",
        "b2",
        "--nats-tls-ca",
        &file("other-ca.pem"),
    ]);
    b2.wait_stderr("TLS handshake failed");
    b2.wait_stderr("UnknownIssuer");
    b2.terminate();
}
