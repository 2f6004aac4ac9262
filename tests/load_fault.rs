//! Load and faults together: many callers × many calls through a
//! `stagebus broker` child while the `stagebus serve` children publishing
//! the called sessions are killed with SIGKILL at random and started
//! again. Every call must end with exactly one final answer: its echo,
//! or an error saying why (`publisher_gone` for a call its publisher
//! took with it, `no_such_session` while the name is not published
//! again yet), never none and never two.
//!
//! Sized to run in well under a minute; `STAGEBUS_SOAK=1` runs a larger
//! size (more callers, more calls, more kills).

use stagebus::wire::{encode_frame, Frame, FrameDecoder, Payload, Reply, MAGIC, PROTOCOL_VERSION};
use stagebus::{Args, ErrorCode};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

struct Proc(Child, mpsc::Receiver<String>);

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stagebus"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the stagebus binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc(child, rx)
    }

    fn line(&self) -> String {
        self.1.recv_timeout(LIMIT).expect("a line of output")
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(address: &str, name: &str) -> Proc {
    let p = Proc::spawn(&["serve", "--broker", address, "--name", name]);
    let line = p.line();
    assert!(line.starts_with("serving"), "{line}");
    p
}

/// One caller: `calls` echo calls spread over `sessions`, at most
/// `window` in flight; returns how many ended each way.
fn caller(address: &str, sessions: usize, calls: u64, window: u64, seed: u64) -> [u64; 3] {
    let host = address.strip_prefix("tcp://").unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let send = |stream: &mut TcpStream, f: &Frame| {
        let mut out = Vec::new();
        encode_frame(f, &mut out, usize::MAX).unwrap();
        stream.write_all(&out).unwrap();
    };
    send(
        &mut stream,
        &Frame::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            token: None,
        },
    );
    let mut decoder = FrameDecoder::new(usize::MAX);
    let mut buf = vec![0u8; 64 * 1024];
    let mut next = |stream: &mut TcpStream, decoder: &mut FrameDecoder| loop {
        if let Some(f) = decoder.next_frame().unwrap() {
            return f;
        }
        let n = stream.read(&mut buf).expect("the broker answers in time");
        assert!(n > 0, "the broker stays up");
        decoder.push(&buf[..n]);
    };
    assert!(matches!(
        next(&mut stream, &mut decoder),
        Frame::Welcome { .. }
    ));
    let mut rng = seed | 1;
    let mut pending: HashMap<u64, Args> = HashMap::new();
    let (mut sent, mut counts) = (0u64, [0u64; 3]);
    while sent < calls || !pending.is_empty() {
        while sent < calls && (pending.len() as u64) < window {
            sent += 1;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let session = format!("Svc{}", rng as usize % sessions);
            let args = Args::new().with("n", sent as i64);
            send(
                &mut stream,
                &Frame::Deliver {
                    id: sent,
                    origin: sent,
                    timeout_ms: 0,
                    session,
                    method: "echo".into(),
                    payload: Payload::encode(&args),
                },
            );
            pending.insert(sent, args);
        }
        match next(&mut stream, &mut decoder) {
            Frame::Result { id, outcome } => {
                let args = pending
                    .remove(&id)
                    .unwrap_or_else(|| panic!("call {id} answered twice (or never made)"));
                match outcome {
                    Ok(Reply::Return { payload, .. }) => {
                        assert_eq!(payload.decode().unwrap(), args, "call {id}'s own echo");
                        counts[0] += 1;
                    }
                    Err(e) if e.code == ErrorCode::PublisherGone => counts[1] += 1,
                    Err(e) if e.code == ErrorCode::NoSuchSession => counts[2] += 1,
                    other => panic!("call {id} ended with {other:?}"),
                }
            }
            Frame::Ping => send(&mut stream, &Frame::Pong),
            other => panic!("unexpected {other:?}"),
        }
    }
    counts
}

#[test]
fn every_call_ends_once_while_publishers_are_killed() {
    let soak = std::env::var_os("STAGEBUS_SOAK").is_some();
    let (callers, calls, sessions, kills) = if soak {
        (32, 50_000, 8, 1000)
    } else {
        (8, 10_000, 4, 60)
    };
    let broker = Proc::spawn(&["broker", "--listen", "tcp://127.0.0.1:0"]);
    let address = broker
        .line()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let mut publishers: Vec<Proc> = (0..sessions)
        .map(|i| serve(&address, &format!("Svc{i}")))
        .collect();
    let started = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|i| {
            let address = address.clone();
            thread::spawn(move || caller(&address, sessions, calls, 32, 0x9e37_79b9 * (i + 1)))
        })
        .collect();
    // The killer: SIGKILL a random publisher, start it again, repeat.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut killed = 0;
    while killed < kills && !threads.iter().all(|t| t.is_finished()) {
        thread::sleep(Duration::from_millis(50));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let i = rng as usize % sessions;
        publishers[i].kill();
        killed += 1;
        publishers[i] = serve(&address, &format!("Svc{i}"));
    }
    let mut total = [0u64; 3];
    for t in threads {
        let counts = t.join().expect("every call ended exactly once");
        for (t, c) in total.iter_mut().zip(counts) {
            *t += c;
        }
    }
    eprintln!(
        "{} calls in {:?} with {killed} publishers killed: {} returned, {} publisher_gone, {} no_such_session",
        callers * calls,
        started.elapsed(),
        total[0],
        total[1],
        total[2]
    );
    assert_eq!(total.iter().sum::<u64>(), callers * calls);
    assert!(total[0] > 0, "calls went through");
    assert!(killed > 0, "publishers were killed during the calls");
}
