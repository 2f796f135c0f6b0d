//! SIGHUP: load and validate the whole file, then apply only a valid one, keeping what did
//! not change (unchanged checks keep their task and health).

use std::sync::Arc;

use vigil_config::model::Config;
use vigil_core::ServiceName;
use vigil_core::health::CheckHealth;

use crate::drivers::Driver;
use crate::service::protocol::ServiceMsg;

use super::{Daemon, stagger};

impl Daemon {
    /// SIGHUP: load and validate the whole file first; apply only a valid one.
    pub(super) async fn reload(&mut self) {
        self.notify("RELOADING=1\nSTATUS=reloading the configuration");
        let new = match vigil_config::load(&self.config_path) {
            Ok(c) => c,
            Err(errors) => {
                self.notify("READY=1\nSTATUS=reload rejected; running the previous configuration");
                tracing::error!(
                    event = "reload_rejected",
                    errors = errors.0.len(),
                    "reload rejected, keeping the running configuration:\n{errors}"
                );
                return;
            }
        };
        if new.vigil.state_dir != self.config.vigil.state_dir {
            tracing::warn!(
                event = "reload_partial",
                "state_dir changed ({} -> {}); this takes effect only after a restart of vigil",
                self.config.vigil.state_dir.display(),
                new.vigil.state_dir.display()
            );
        }
        let mut kept = 0usize;
        let mut changed = 0usize;
        // Removed services.
        let removed: Vec<ServiceName> = self
            .services
            .keys()
            .filter(|name| new.service(name.as_str()).is_none())
            .cloned()
            .collect();
        for name in removed {
            if let Some(handle) = self.services.remove(&name) {
                handle.cancel.cancel();
                changed += 1;
                tracing::info!(service = %name, event = "service_removed", "service removed");
            }
        }
        let saved = self.saved_check_states().await;
        let n_checks: usize = new.services.iter().map(|s| s.checks.len()).sum();
        let mut index = 0usize;
        let old = self.config.clone();
        for service in &new.services {
            let Some(mut handle) = self.services.remove(&service.name) else {
                self.start_service(service, &saved, &mut index, n_checks)
                    .await;
                changed += 1;
                tracing::info!(service = %service.name, event = "service_added", "service added");
                continue;
            };
            // Its previous definition (always there: handles and config change together).
            let was = old.service(service.name.as_str());
            let driver_changed = was.is_none_or(|w| w.driver != service.driver);
            if driver_changed {
                handle
                    .driver
                    .send_replace(Driver::new(&service.driver, &self.shared.probes));
            }
            if driver_changed || was.is_none_or(|w| w.guard != service.guard) {
                let _ = handle
                    .tx
                    .send(ServiceMsg::Update(Box::new(service.clone())))
                    .await;
                changed += 1;
            }
            let mut checks = std::mem::take(&mut handle.checks);
            for check in &service.checks {
                match checks.remove(check.name.as_str()) {
                    Some(task) if task.spec == *check => {
                        kept += 1;
                        handle.checks.insert(check.name.to_string(), task);
                    }
                    old => {
                        if let Some(old) = old {
                            old.cancel.cancel();
                        }
                        changed += 1;
                        let offset = stagger(index, n_checks, check.every);
                        let task = self.spawn_check(
                            &service.name,
                            &handle,
                            check,
                            CheckHealth::default(),
                            offset,
                        );
                        handle.checks.insert(check.name.to_string(), task);
                    }
                }
                index += 1;
            }
            for (_, gone) in checks {
                gone.cancel.cancel();
                changed += 1;
            }
            if was.is_none_or(|w| w.schedules != service.schedules) {
                handle.schedules.cancel();
                handle.schedules = self.spawn_schedules(&service.name, &handle, &service.schedules);
                changed += 1;
            }
            self.services.insert(service.name.clone(), handle);
        }
        if new.vigil.control_socket != self.config.vigil.control_socket
            || new.vigil.control_socket_group != self.config.vigil.control_socket_group
        {
            tracing::warn!(
                event = "reload_partial",
                "control_socket/control_socket_group changed; this takes effect only after a restart of vigil"
            );
        }
        let routes = |c: &Config| -> Vec<_> {
            c.services
                .iter()
                .map(|s| (s.name.clone(), s.alerts.clone()))
                .collect()
        };
        if new.alerts != self.config.alerts || routes(&new) != routes(&self.config) {
            self.shared.guard.alerts.reload(&new);
            changed += 1;
            tracing::info!(
                event = "alerts_reloaded",
                channels = new.alerts.len(),
                "alert channels reloaded: {} channel(s)",
                new.alerts.len()
            );
        }
        self.config = Arc::new(new);
        self.publish_api_view();
        self.start_groups();
        self.notify(&format!(
            "READY=1\nSTATUS=running {} service(s), {} check(s)",
            self.config.services.len(),
            self.config
                .services
                .iter()
                .map(|s| s.checks.len())
                .sum::<usize>()
        ));
        tracing::info!(
            event = "reloaded",
            kept,
            changed,
            "configuration reloaded: {kept} check(s) unchanged (state kept), {changed} change(s) applied"
        );
    }
}
