//! One-shot commands (cron mode: `vigil check`, `vigil restart` without a daemon) drive
//! the same service actors as the daemon: an actor per service they act on, started on
//! first use and stopped when the command ends. No second copy of the lifecycle.
//!
//! Exec services are refused: their process belongs to the daemon that spawned it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_checks::ProbeContext;
use vigil_config::model::{Config, DriverSpec, Group, MaintenanceWindow, Service};
use vigil_core::ServiceName;

use crate::drivers::{self, Driver, DriverContext};
use crate::guard::GuardContext;
use crate::platform::cell::Cell;
use crate::platform::clock::Clock;
use crate::service::actor::{Deps, ServiceActor};
use crate::service::group::{self, GroupDriver};
use crate::service::inbox;
use crate::service::operator;
use crate::service::protocol::{OperatorCommand, Outcome, ServiceMsg};

/// What one-shot commands say about an exec service: the running daemon owns its process.
pub const EXEC_OWNED_BY_DAEMON: &str = "exec services are supervised by `vigil run`, which owns their processes; this command cannot act on one without the daemon's control socket";

/// Why a one-shot command cannot act on a service.
#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error("{0}: {EXEC_OWNED_BY_DAEMON}")]
    ExecOwnedByDaemon(ServiceName),
    #[error("{0}: {1}")]
    Build(ServiceName, drivers::BuildError),
}

/// The actors of one command.
pub struct Actors {
    cx: GuardContext,
    drivers: DriverContext,
    clock: Clock,
    cancel: CancellationToken,
    inboxes: BTreeMap<ServiceName, inbox::Sender<ServiceMsg>>,
    tasks: JoinSet<()>,
}

impl Actors {
    pub fn new(cx: GuardContext, probes: Arc<ProbeContext>) -> Actors {
        let drivers = DriverContext {
            probes,
            state_dir: cx.state_dir.clone(),
            events: cx.events.clone(),
            outputs: Default::default(),
        };
        Actors {
            cx,
            drivers,
            clock: Clock::real(),
            cancel: CancellationToken::new(),
            inboxes: BTreeMap::new(),
            tasks: JoinSet::new(),
        }
    }

    fn deps(&self) -> Deps {
        Deps {
            gate: Arc::new(self.cx.clone()),
            events: self.cx.events.clone(),
            clock: self.clock.clone(),
            ledger: None,
            follow: false,
        }
    }

    /// The inbox of `service`'s actor, started on first use.
    pub fn service(
        &mut self,
        service: &Service,
    ) -> Result<inbox::Sender<ServiceMsg>, OneShotError> {
        if let Some(tx) = self.inboxes.get(&service.name) {
            return Ok(tx.clone());
        }
        if matches!(service.driver, DriverSpec::Exec(_)) {
            return Err(OneShotError::ExecOwnedByDaemon(service.name.clone()));
        }
        let driver = drivers::build(service, &self.drivers)
            .map_err(|e| OneShotError::Build(service.name.clone(), e))?;
        let started = Cell::new(None);
        let (tx, rx) = inbox::channel(16);
        let actor = ServiceActor::new(
            service,
            driver,
            self.deps(),
            started,
            self.cancel.child_token(),
            self.cancel.clone(),
        );
        self.tasks.spawn(actor.run(rx));
        let _ = open_window(&tx, &service.maintenance);
        self.inboxes.insert(service.name.clone(), tx.clone());
        Ok(tx)
    }

    /// The inbox of a restart group's actor, with its members' actors started.
    pub fn group(
        &mut self,
        config: &Config,
        g: &Group,
    ) -> Result<inbox::Sender<ServiceMsg>, OneShotError> {
        let key = g.ledger_key();
        if let Some(tx) = self.inboxes.get(&key) {
            return Ok(tx.clone());
        }
        for name in &g.members {
            if let Some(s) = config.service(name.as_str()) {
                self.service(s)?;
            }
        }
        let members = group::members(config, g, |name| self.inboxes.get(name).cloned());
        let driver = GroupDriver {
            name: g.name.clone(),
            members,
            ready_timeout: g.ready_timeout,
            probes: (*self.drivers.probes).clone(),
            events: self.cx.events.clone(),
        };
        let (tx, rx) = inbox::channel(16);
        let actor = ServiceActor::for_group(
            g,
            Driver::Remote(Arc::new(driver)),
            self.deps(),
            self.cancel.child_token(),
            self.cancel.clone(),
        );
        self.tasks.spawn(actor.run(rx));
        if let Some(command) = open_window(&tx, &g.maintenance) {
            let step = operator::member_step(&command, &key);
            for m in &g.members {
                if let Some(inbox) = self.inboxes.get(m) {
                    let _ = inbox.try_send(ServiceMsg::operator(step.clone(), None));
                }
            }
        }
        self.inboxes.insert(key, tx.clone());
        Ok(tx)
    }

    /// The inbox of an actor already started (a service, or a group's `@NAME`).
    pub fn inbox(&self, name: &ServiceName) -> Option<inbox::Sender<ServiceMsg>> {
        self.inboxes.get(name).cloned()
    }

    /// Sends `msg` (built around a reply channel) and waits for the answer.
    pub async fn ask(
        inbox: &inbox::Sender<ServiceMsg>,
        msg: impl FnOnce(oneshot::Sender<Outcome>) -> ServiceMsg,
    ) -> Outcome {
        let (reply, answer) = oneshot::channel();
        if inbox.send(msg(reply)).await.is_err() {
            return Outcome::Dropped("the service's actor has stopped".to_owned());
        }
        answer
            .await
            .unwrap_or_else(|_| Outcome::Dropped("the service's actor has stopped".to_owned()))
    }

    /// Stops every actor and waits for them.
    pub async fn close(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Cron mode has no timer for maintenance windows: a window open now applies to what this
/// command does (and is recorded, its end with it, as the daemon would).
/// The window's command, when one was sent.
fn open_window(
    tx: &inbox::Sender<ServiceMsg>,
    windows: &[MaintenanceWindow],
) -> Option<OperatorCommand> {
    let now = crate::platform::clock::now();
    let (window, start, end) = operator::next_window(windows, now)?;
    if start > now {
        return None;
    }
    let command = operator::window_command(window, end);
    // First in the new actor's inbox: before anything this command asks.
    let _ = tx.try_send(ServiceMsg::operator(command.clone(), None));
    Some(command)
}
