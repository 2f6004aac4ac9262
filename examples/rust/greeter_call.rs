//! A caller: subscribes to `Greeter` (see greeter_service.rs), says
//! hello, follows a countdown, and asks the service to quit.
//!
//! ```sh
//! cargo run --example greeter_call -- unix:/tmp/sb.sock Ada
//! ```
//!
//! Each response is printed as one line: `TYPE {json args}`.

use stagebus::{Client, ClientConfig, Ctx, Error, EventLoop, RemoteStage, Request};
use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(broker), name) = (args.next(), args.next()) else {
        eprintln!("usage: greeter_call BROKER_ADDRESS [NAME]");
        return ExitCode::from(2);
    };
    match call(&broker, name.as_deref().unwrap_or("world")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greeter_call: {e}");
            ExitCode::FAILURE
        }
    }
}

fn call(broker: &str, name: &str) -> Result<(), Error> {
    let lp = EventLoop::new().map_err(|e| Error::io("cannot create a loop", &e))?;
    let client = Client::connect(&lp, &broker.parse()?, ClientConfig::default());

    let greeter: Rc<RefCell<Option<Result<RemoteStage, Error>>>> = Rc::default();
    let slot = greeter.clone();
    RemoteStage::subscribe(&client, "Greeter", move |r| *slot.borrow_mut() = Some(r));
    wait(&lp, || greeter.borrow().is_some())?;
    let greeter = greeter.take().expect("waited for it")?;

    // One request at a time: each waits for its final response.
    for (method, key, value) in [
        ("hello", "name", name.to_string()),
        ("countdown", "from", "3".to_string()),
        ("quit", "", String::new()),
    ] {
        let done = Rc::new(Cell::new(None::<bool>));
        let mut request = Request::to(&greeter, method).fallback(printer(done.clone()));
        if !key.is_empty() {
            request = match value.parse::<i64>() {
                Ok(n) => request.arg(key, n),
                Err(_) => request.arg(key, value.as_str()),
            };
        }
        let _request = request.timeout(Duration::from_secs(10)).send()?;
        wait(&lp, || done.get().is_some())?;
        if done.get() == Some(false) {
            return Err(Error::new(
                stagebus::ErrorCode::HandlerFailed,
                format!("{method} failed"),
            ));
        }
    }
    Ok(())
}

/// A response handler printing each response; `done` becomes whether
/// the request succeeded once its final response arrived.
fn printer(done: Rc<Cell<Option<bool>>>) -> impl Fn(&Ctx<'_>) -> Result<(), Error> {
    move |ctx| {
        let rsp = ctx.rsp().expect("response handlers see a response");
        match rsp.error() {
            Some(e) => println!("error {e}"),
            None => println!("{} {}", rsp.kind(), ctx.args().to_json()),
        }
        if rsp.is_final() {
            done.set(Some(rsp.error().is_none()));
        }
        Ok(())
    }
}

/// Runs the loop until `done`, for at most ten seconds.
fn wait(lp: &EventLoop, done: impl FnMut() -> bool) -> Result<(), Error> {
    match lp.run_until(Duration::from_secs(10), done) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::new(
            stagebus::ErrorCode::Timeout,
            "no answer within 10 s",
        )),
        Err(e) => Err(Error::io("the loop failed", &e)),
    }
}
