//! A rollout webhook receiver in a test namespace: takes canaryd's JSON
//! events (`POST`), keeps them in order with the address that posted each
//! (in a fleet, the leader that took the decision), and answers 204; or
//! never answers, to show that a stuck receiver does not hold a rollback up.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use anyhow::Result;
use canary_userspace::controller::webhook::Event;
use xtask::topology::Netns;

use crate::ns_http::NsHttpServer;

/// How a receiver treats a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Keeps the event, answers 204.
    Accept,
    /// Keeps the event, then holds the request this long without an
    /// answer (longer than canaryd's timeout).
    Stall(Duration),
}

/// An event as received: what canaryd posted and the address it came from.
pub type Received = (Event, Option<IpAddr>);

pub struct Receiver<'a> {
    pub url: String,
    /// Each event with the address it came from.
    events: Arc<Mutex<Vec<Received>>>,
    /// Bodies that were not a valid event.
    malformed: Arc<Mutex<Vec<String>>>,
    _server: NsHttpServer<'a>,
}

impl<'a> Receiver<'a> {
    pub fn start(ns: &'a Netns, addr: SocketAddr, answer: Answer) -> Result<Receiver<'a>> {
        let events = Arc::new(Mutex::new(vec![]));
        let malformed = Arc::new(Mutex::new(vec![]));
        let (e, m) = (events.clone(), malformed.clone());
        let server = NsHttpServer::start(ns, addr, 4, move |mut request| {
            let mut body = String::new();
            let read = request.as_reader().read_to_string(&mut body);
            let from = request.remote_addr().map(|a| a.ip());
            match (read, serde_json::from_str::<Event>(&body)) {
                (Ok(_), Ok(event)) => e
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((event, from)),
                _ => m.lock().unwrap_or_else(|p| p.into_inner()).push(body),
            }
            if let Answer::Stall(hold) = answer {
                thread::sleep(hold);
            }
            let _ = request.respond(tiny_http::Response::empty(204));
        })?;
        Ok(Receiver {
            url: format!("http://{addr}/events"),
            events,
            malformed,
            _server: server,
        })
    }

    /// The events received so far, in order of arrival.
    pub fn events(&self) -> Vec<Event> {
        self.events_from().into_iter().map(|(e, _)| e).collect()
    }

    /// `events`, each with the address that posted it.
    pub fn events_from(&self) -> Vec<Received> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn malformed(&self) -> Vec<String> {
        self.malformed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
