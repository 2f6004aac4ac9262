//! A service: publishes the stage `Greeter` on a broker and serves it
//! until a caller asks it to `quit`.
//!
//! ```sh
//! stagebus broker --listen unix:/tmp/sb.sock &
//! cargo run --example greeter_service -- unix:/tmp/sb.sock
//! ```
//!
//! `hello name=…` returns a greeting; `countdown from=N` emits `tick`
//! N times, then returns; `quit` returns, and the service closes its
//! client and exits: the answer still reaches the caller.

use stagebus::{Args, Client, ClientConfig, Error, EventLoop, Stage, Value};
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(broker) = std::env::args().nth(1) else {
        eprintln!("usage: greeter_service BROKER_ADDRESS");
        return ExitCode::from(2);
    };
    match serve(&broker) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greeter_service: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(broker: &str) -> Result<(), Error> {
    let lp = EventLoop::new().map_err(|e| Error::io("cannot create a loop", &e))?;
    let client = Client::connect(&lp, &broker.parse()?, ClientConfig::default());

    let greeter = Stage::new(&lp, "Greeter");
    greeter.on("hello", |ctx| {
        let name = ctx
            .arg("name")
            .and_then(Value::as_str)
            .unwrap_or("stranger");
        ctx.ret(
            "return",
            &Args::new().with("greeting", format!("Hello, {name}!")),
        )
    });
    greeter.on("countdown", |ctx| {
        let from = ctx.arg("from").and_then(Value::as_int).unwrap_or(3);
        for n in (1..=from).rev() {
            ctx.emit("tick", &Args::new().with("n", n))?;
        }
        ctx.ret("return", &Args::new().with("liftoff", true))
    });
    let (quit_client, quit_loop) = (client.clone(), lp.clone());
    greeter.on("quit", move |ctx| {
        ctx.ret("return", &Args::new().with("bye", true))?;
        // The answer is queued; closing sends it before the connection
        // goes, and the loop stops once the close has completed.
        let lp = quit_loop.clone();
        quit_client.close_gracefully(move |_| lp.stop());
        Ok(())
    });

    greeter.publish(
        &client,
        "Greeter",
        &["hello", "countdown", "quit"],
        |outcome| match outcome {
            Ok(()) => println!("ready"),
            Err(e) => {
                eprintln!("greeter_service: cannot publish: {e}");
                std::process::exit(1);
            }
        },
    );
    lp.run().map_err(|e| Error::io("the loop failed", &e))?;
    println!("bye");
    Ok(())
}
