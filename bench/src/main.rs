//! sbbench: the driver behind `bench/run`.
//!
//! ```text
//! sbbench run [--quick] [--rounds N] [--modes unpinned,pinned] [--cases a,b]
//! sbbench case NAME [--quick]          one run of one case (run calls it)
//! sbbench list                         the cases
//! sbbench publisher ADDR               role: the echo/stream/hold publisher
//! sbbench caller ADDR MODE WARM N K [--barrier]
//! sbbench loader ADDR                  role: fills a broker (stdin commands)
//! sbbench balanced ADDR                role: one balanced publisher of bench_bal (echo)
//! sbbench emitter ADDR N               role: emits N signals of sig_src after "go"
//! sbbench listener ADDR N              role: listens for N signals of sig_src
//! ```
//!
//! `run` runs every case in turn, round after round and mode after mode
//! (A B C … A B C …), each as a child `sbbench case NAME`, under
//! `taskset -c 0` in pinned mode, and prints one table per mode. A case
//! prints `SAMPLES <ns> …` (nanoseconds per operation) and `INFO KEY
//! VALUE` lines. The roles are the separate processes a brokered case
//! starts next to the broker (`stagebus broker`).
//!
//! Everything is bounded: every process arms `alarm()` (SBBENCH_LIMIT
//! seconds, default 120) and dies with its parent (PR_SET_PDEATHSIG).

mod cases;
mod fanout;
mod federated;
mod report;
mod restart;
mod roles;
mod tls;

use std::process::ExitCode;

/// Completions per checkpoint in throughput cases.
pub const SLICE: u64 = 1000;

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The 64-byte payload every case sends.
pub fn payload() -> stagebus::Args {
    stagebus::Args::new().with("data", vec![b'x'; 64])
}

/// Seconds any one process may live.
pub fn limit_secs() -> u32 {
    std::env::var("SBBENCH_LIMIT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
}

/// Ends this process after [`limit_secs`], whatever happens.
pub fn bound_self() {
    // SAFETY: alarm only arms a timer.
    unsafe { libc::alarm(limit_secs()) };
}

/// Prints a message and exits 1: a benchmark that went wrong must not
/// produce numbers.
pub fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("sbbench: {msg}");
    std::process::exit(1)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("usage: sbbench run|case|list|publisher|caller|loader …");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "run" => report::run(rest),
        "case" => {
            bound_self();
            cases::case(rest)
        }
        "list" => {
            for c in cases::CASES {
                println!("{:<14} {}", c.name, c.what);
            }
            ExitCode::SUCCESS
        }
        "publisher" => {
            bound_self();
            roles::publisher(rest)
        }
        "caller" => {
            bound_self();
            roles::caller(rest)
        }
        "restart-caller" => {
            bound_self();
            restart::caller(rest)
        }
        "loader" => {
            bound_self();
            roles::loader(rest)
        }
        "balanced" => {
            bound_self();
            fanout::balanced(rest)
        }
        "emitter" => {
            bound_self();
            fanout::emitter(rest)
        }
        "listener" => {
            bound_self();
            fanout::listener(rest)
        }
        other => {
            eprintln!("sbbench: unknown command '{other}'");
            ExitCode::from(2)
        }
    }
}
