//! `stagebus watch`: print the names matching a pattern as they are now,
//! then every change, one JSON line each, until SIGINT or SIGTERM, or
//! until the broker goes away (with `--reconnect`: it reconnects and
//! prints the names' state afresh, a `gone` line for each name that went
//! meanwhile, then a `present` line per name published now).

use crate::command_line::{address, ClientFlags};
use crate::listen::{print_line, run_printing, ReconnectFlag};
use crate::Failure;
use stagebus::{Address, NameEvent, Value};

/// `stagebus watch`'s flags and words.
#[derive(clap::Args, Debug)]
pub(crate) struct WatchArgs {
    /// the broker to watch
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) broker: Address,
    #[command(flatten)]
    pub(crate) client: ClientFlags,
    #[command(flatten)]
    pub(crate) reconnect: ReconnectFlag,
    /// the names: a name, PREFIX* or * (default *)
    #[arg(value_name = "NAME", default_value = "*")]
    pub(crate) name: String,
}

fn methods_json(methods: &[String]) -> String {
    Value::List(methods.iter().map(|m| Value::from(m.as_str())).collect()).to_json()
}

/// One event as a JSON line: `{"event":"present"|"appeared"|
/// "owner_changed","name":N,"methods":[…]}` or `{"event":"gone",
/// "name":N,"reason":{"code":C,"message":M}}`.
fn event_line(e: &NameEvent) -> String {
    let name = Value::from(e.name()).to_json();
    match e {
        NameEvent::Present { methods, .. }
        | NameEvent::Appeared { methods, .. }
        | NameEvent::OwnerChanged { methods, .. } => {
            let kind = match e {
                NameEvent::Present { .. } => "present",
                NameEvent::Appeared { .. } => "appeared",
                _ => "owner_changed",
            };
            format!(
                "{{\"event\":\"{kind}\",\"name\":{name},\"methods\":{}}}",
                methods_json(methods)
            )
        }
        NameEvent::Gone { reason, .. } => format!(
            "{{\"event\":\"gone\",\"name\":{name},\"reason\":{{\"code\":\"{}\",\"message\":{}}}}}",
            reason.code,
            Value::from(reason.message.as_str()).to_json()
        ),
    }
}

pub(crate) fn cmd_watch(args: &WatchArgs) -> Result<(), Failure> {
    run_printing(
        &args.broker,
        &args.client,
        &args.reconnect,
        "watch",
        |client, failure, done| {
            let lp = client.event_loop().clone();
            client
                .watch(
                    &args.name,
                    move |e| print_line(&event_line(e), &failure, &lp),
                    done,
                )
                .map(|_| ())
        },
    )
}
