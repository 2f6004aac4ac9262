//! Remote stages: sessions behind a broker, used like local stages.

use super::names::strip_on;
use super::stage::{HandlerKind, Stage};
use super::transaction::{next_id, run_method, ServedLink, ServedRequest};
use crate::client::{Client, Inbound};
use crate::error::Error;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
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

    /// Whether requests may go through this remote stage: its client is
    /// subscribed to the session. After [`RemoteStage::unsubscribe`], or
    /// once the session went away (rescinded, its publisher gone, the
    /// client closed), requests through it fail at once.
    pub fn is_subscribed(&self) -> bool {
        self.client.is_subscribed(&self.session)
    }

    /// Ends the subscription (see [`Client::unsubscribe`]); from this
    /// call on, requests through this remote stage (and every other of
    /// the same client and session: the subscription is the client's)
    /// fail at once with `not_subscribed`.
    pub fn unsubscribe(&self, done: impl FnOnce(Result<(), Error>) + 'static) -> Result<(), Error> {
        self.client.unsubscribe(&self.session, done)
    }
}

impl Stage {
    /// Publishes this stage on a broker as `session`, exporting `methods`,
    /// or when it is empty the stage's request methods
    /// ([`Stage::method_names`]: handlers of kind
    /// [`HandlerKind::Method`], never `on_cancel`, `on_my_<type>` or a
    /// handler marked [`HandlerKind::Internal`]). Calls from other
    /// programs then run its handlers exactly as local requests do.
    ///
    /// Other programs reach only what is exported: a request for any other
    /// name is refused with `no_such_method` (by the broker, and again
    /// here); a recall reaches the exported methods and those marked
    /// [`HandlerKind::RecallOnly`] (as marked when the recall arrives),
    /// and any other name ends the request with `no_such_method`.
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
        let exported: HashSet<String> = names.iter().map(|m| strip_on(m).to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let stage = self.clone();
        let serving: Rc<Serving> = Rc::default();
        let unexported = |stage: &Stage, method: &str| {
            Error::new(
                crate::ErrorCode::NoSuchMethod,
                format!(
                    "Session of stage '{}' does not export method '{method}'",
                    stage.name()
                ),
            )
        };
        client.publish(
            session,
            &names,
            move |delivery, inbound| match inbound {
                Inbound::Call { method, args } => {
                    if !exported.contains(strip_on(&method)) {
                        // The broker checks this already; a publisher does
                        // not rely on it for what it exposes.
                        let _ = delivery.fail(unexported(&stage, &method));
                        return;
                    }
                    // Ids seen in this process come from its own counter;
                    // the caller's id of the request is kept apart.
                    let served = ServedRequest::new(
                        next_id(),
                        delivery.origin(),
                        stage.clone(),
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
                        let reachable = exported.contains(strip_on(&method))
                            || stage.kind(&method) == HandlerKind::RecallOnly;
                        if reachable {
                            run_method(&served, &method, &args);
                        } else {
                            let _ = served.fail(unexported(&stage, &method));
                        }
                    }
                }
                Inbound::Cancel => {
                    let served = serving.0.borrow_mut().remove(&delivery.id());
                    if let Some(served) = served {
                        served.cancelled();
                    }
                }
            },
            done,
        );
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
struct Serving(RefCell<HashMap<u64, ServedRequest>>);

impl Drop for Serving {
    fn drop(&mut self) {
        let left: Vec<ServedRequest> = self.0.get_mut().drain().map(|(_, s)| s).collect();
        for served in left {
            served.cancelled();
        }
    }
}
