//! `stagebus stats`: print a broker's report of itself, as text, as JSON
//! or in the Prometheus text exposition format.

use crate::command_line::{address, positive_seconds, timeout_or_default, ClientFlags};
use crate::connect::connect;
use crate::Failure;
use stagebus::{Address, StatsReport};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

/// `stagebus stats`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct StatsArgs {
    /// the broker to ask
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) broker: Address,
    #[command(flatten)]
    pub(crate) client: ClientFlags,
    /// print one JSON object (uptime_ms, totals, errors, connections, sessions)
    #[arg(long, conflicts_with = "prometheus")]
    pub(crate) json: bool,
    /// print the Prometheus text exposition format (for a textfile collector or a scrape)
    #[arg(long)]
    pub(crate) prometheus: bool,
    /// give up after this many seconds (default 10)
    #[arg(long, value_name = "SECS", value_parser = positive_seconds("--timeout"))]
    pub(crate) timeout: Option<Duration>,
}

pub(crate) fn cmd_stats(args: &StatsArgs) -> Result<(), Failure> {
    let timeout = timeout_or_default(args.timeout);
    let report = fetch_report(&args.broker, args, timeout)?;
    let text = if args.json {
        format!("{}\n", report.to_value().to_json())
    } else if args.prometheus {
        report.to_prometheus()
    } else {
        report_text(&report)
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Failed(format!("cannot write to stdout: {e}")))
}

fn fetch_report(
    address: &Address,
    args: &StatsArgs,
    timeout: Duration,
) -> Result<StatsReport, Failure> {
    let (lp, client) = connect(address, args.client.config()?, timeout)?;
    let report = Rc::new(RefCell::new(None));
    let r = report.clone();
    client.stats(move |outcome| *r.borrow_mut() = Some(outcome));
    let finished = lp
        .run_until(timeout, || report.borrow().is_some())
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    client.close();
    lp.shutdown();
    if !finished {
        return Err(Failure::Failed(format!(
            "timeout: no report from {address} within {} s",
            timeout.as_secs_f64()
        )));
    }
    let outcome = report.borrow_mut().take().expect("checked above");
    outcome.map_err(Failure::from)
}

/// A summary for people: totals, errors, then a line per connection and
/// per session.
fn report_text(report: &StatsReport) -> String {
    let t = &report.totals;
    let mut text = String::new();
    let _ = writeln!(text, "uptime {:.0} s", report.uptime.as_secs_f64());
    let _ = writeln!(
        text,
        "connections {}  sessions {}  calls {} ({} in flight)  waiting subscribes {}",
        t.connections, t.sessions, t.calls, t.pending_calls, t.waiting_subscribes
    );
    let _ = writeln!(
        text,
        "protocol errors {}  slow consumers {}  refused connections {}  dropped stray {}",
        t.protocol_errors, t.slow_consumers, t.refused_connections, t.dropped_stray
    );
    // The figures above, then every other one that is not zero (limits,
    // signals, TLS, federation), so a new figure shows without a new line.
    const SHOWN: [&str; 9] = [
        "connections",
        "sessions",
        "calls",
        "pending_calls",
        "waiting_subscribes",
        "protocol_errors",
        "slow_consumers",
        "refused_connections",
        "dropped_stray",
    ];
    let others: Vec<String> = t
        .figures()
        .into_iter()
        .filter(|f| f.value != 0 && !SHOWN.contains(&f.name))
        .map(|f| format!("{} {}", f.name.replace('_', " "), f.value))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(text, "{}", others.join("  "));
    }
    let errors = report.errors.nonzero();
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(_, c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(text, "errors {}", list.join("  "));
    }
    for c in &report.connections {
        let _ = writeln!(
            text,
            "connection {} {}{}  sessions {}  calls in flight {}  serving {}  queued {} B",
            c.id,
            printable(&c.peer),
            if c.handshaken { "" } else { " (before hello)" },
            c.sessions,
            c.calls_in_flight,
            c.serving,
            c.bytes_queued
        );
    }
    for s in &report.sessions {
        let errors: u64 = s.errors.total();
        let _ = writeln!(
            text,
            "session {}  publisher {}  calls {} ({} in flight)  errors {errors}",
            printable(&s.name),
            s.publisher,
            s.calls,
            s.in_flight
        );
    }
    text
}

/// Control characters escaped, so that a name cannot forge lines.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}
