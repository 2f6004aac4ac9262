//! Remote stages: sessions behind a broker, used like local stages.

use super::stage::Stage;
use super::transaction::{run_method, Served, ServedLink};
use crate::client::{Client, Delivery, Inbound};
use crate::error::{Error, ErrorCode};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// A session subscribed through a client: requests to it travel through
/// the broker and behave exactly like requests to a local stage.
#[derive(Clone)]
pub struct RemoteStage {
    client: Client,
    session: Rc<str>,
    methods: Rc<[String]>,
}

impl fmt::Debug for RemoteStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStage")
            .field("session", &self.session)
            .field("methods", &self.methods)
            .finish()
    }
}

impl RemoteStage {
    /// Subscribes to `session`; `done` gets the remote stage, or
    /// `no_such_session`.
    pub fn subscribe(
        client: &Client,
        session: &str,
        done: impl FnOnce(Result<RemoteStage, Error>) + 'static,
    ) {
        let c = client.clone();
        let name: Rc<str> = Rc::from(session);
        client.subscribe(session, move |result| {
            done(result.map(|methods| RemoteStage {
                client: c,
                session: name,
                methods: methods.into(),
            }))
        });
    }

    /// The session's name.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The methods the publisher offers.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// The client requests travel through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends the subscription (see [`Client::unsubscribe`]).
    pub fn unsubscribe(&self, done: impl FnOnce(Result<(), Error>) + 'static) -> Result<(), Error> {
        self.client.unsubscribe(&self.session, done)
    }
}

impl Stage {
    /// Publishes this stage on a broker as `session`, offering `methods`
    /// (every handler name without its `on_` prefix when empty). Calls
    /// from other programs then run its handlers exactly as local
    /// requests do.
    ///
    /// The publication does not keep the stage alive: it is served while
    /// the program (or a request it serves) holds it, and when the stage
    /// goes away its sessions are rescinded (a call arriving meanwhile
    /// gets `no_such_session`). So a handler may hold the client, or a
    /// [`RemoteStage`] on it, without keeping the client open forever
    /// (see the crate docs' ownership rules).
    pub fn publish(
        &self,
        client: &Client,
        session: &str,
        methods: &[&str],
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        let names = if methods.is_empty() {
            self.method_names()
        } else {
            methods.iter().map(|m| m.to_string()).collect()
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        // Weakly: the program's handles keep the stage served (see the
        // crate docs' ownership rules).
        let stage = self.downgrade();
        let serving: Rc<Serving> = Rc::default();
        let serve = move |delivery: &Delivery, inbound| match inbound {
            Inbound::Call { method, args } => {
                let Some(stage) = Stage::from_weak(&stage) else {
                    // Between the stage's end and its rescind.
                    let e = Error::new(
                        ErrorCode::NoSuchSession,
                        format!("Session '{}' is no longer served", delivery.session()),
                    );
                    let _ = delivery.fail(e);
                    return;
                };
                let served = Served::new(
                    delivery.origin(),
                    stage,
                    Rc::from(method),
                    ServedLink::Remote(delivery.clone()),
                );
                let table = Rc::downgrade(&serving);
                let route = delivery.id();
                served.set_on_end(move || {
                    if let Some(t) = table.upgrade() {
                        t.0.borrow_mut().remove(&route);
                    }
                });
                serving.0.borrow_mut().insert(route, served.clone());
                run_method(&served, served.method(), &args);
            }
            Inbound::Recall { method, args } => {
                let served = serving.0.borrow().get(&delivery.id()).cloned();
                if let Some(served) = served {
                    run_method(&served, &method, &args);
                }
            }
            Inbound::Cancel => {
                let served = serving.0.borrow_mut().remove(&delivery.id());
                if let Some(served) = served {
                    served.cancelled();
                }
            }
        };
        let publication =
            client.publish_serving(session, &names, Rc::new(RefCell::new(serve)), done);
        self.add_publication(publication);
    }
}

/// The requests a publication is serving, by the broker's route id.
///
/// The client drops it with the publication, once no delivery of it is
/// left. A client that closes, or whose last handle is dropped, cancels
/// every delivery on a later turn; if the loop is shut down before that
/// turn, whatever is still served is cancelled here, at once (as a local
/// caller's cancel is): the callee hears of every request it started.
#[derive(Default)]
struct Serving(RefCell<HashMap<u64, Served>>);

impl Drop for Serving {
    fn drop(&mut self) {
        let left: Vec<Served> = self.0.get_mut().drain().map(|(_, s)| s).collect();
        for served in left {
            served.cancelled();
        }
    }
}
