//! SIGHUP: load and validate the whole file, compute what changed ([`ConfigDiff`], a pure
//! function of the two configs), build everything the change needs, and only then apply
//! it. A file that does not validate, or whose new drivers cannot be built, leaves the
//! running set untouched. Unchanged checks keep their task and health.

use std::collections::BTreeMap;
use std::sync::Arc;

use vigil_config::model::{Config, Service};
use vigil_core::ServiceName;
use vigil_core::health::CheckHealth;

use crate::drivers::{self, Driver, Reader};
use crate::service::protocol::{ServiceMsg, UpdateMsg};

use super::{Daemon, stagger};

/// What a reload changes, service by service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// New services: started.
    pub added: Vec<ServiceName>,
    /// Gone services: stopped (an exec service's process per its stop policy).
    pub removed: Vec<ServiceName>,
    /// Services whose driver kind changed (e.g. `command` to `exec`): removed and added
    /// again, since their actor, driver and process are of another kind.
    pub replaced: Vec<ServiceName>,
    /// Services that stay, with what changed in them.
    pub changed: Vec<ServiceChange>,
    /// Alert channels or routes changed.
    pub alerts: bool,
    /// Settings that take effect only after a restart of vigil changed.
    pub needs_restart: Vec<&'static str>,
}

/// What changed in a service that stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceChange {
    pub name: ServiceName,
    /// The driver's definition (same kind).
    pub driver: bool,
    /// The guard policy, the group order keys or anything else the actor holds.
    pub policy: bool,
    /// Scheduled restarts or maintenance windows.
    pub schedules: bool,
    /// Checks added, removed or changed (each restarts fresh; the others keep state).
    pub checks: bool,
}

impl ConfigDiff {
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        let mut diff = ConfigDiff::default();
        for s in &old.services {
            if new.service(s.name.as_str()).is_none() {
                diff.removed.push(s.name.clone());
            }
        }
        for s in &new.services {
            let Some(was) = old.service(s.name.as_str()) else {
                diff.added.push(s.name.clone());
                continue;
            };
            if was.driver.kind() != s.driver.kind() {
                diff.replaced.push(s.name.clone());
                continue;
            }
            let change = ServiceChange {
                name: s.name.clone(),
                driver: was.driver != s.driver,
                policy: was.guard != s.guard,
                schedules: was.schedules != s.schedules || was.maintenance != s.maintenance,
                checks: was.checks != s.checks,
            };
            if change.driver || change.policy || change.schedules || change.checks {
                diff.changed.push(change);
            }
        }
        let routes = |c: &Config| -> Vec<_> {
            c.services
                .iter()
                .map(|s| (s.name.clone(), s.alerts.clone()))
                .collect()
        };
        diff.alerts = new.alerts != old.alerts || routes(new) != routes(old);
        if new.vigil.state_dir != old.vigil.state_dir {
            diff.needs_restart.push("state_dir");
        }
        if new.vigil.control_socket != old.vigil.control_socket
            || new.vigil.control_socket_group != old.vigil.control_socket_group
        {
            diff.needs_restart
                .push("control_socket/control_socket_group");
        }
        let listener = |c: &Config| c.vigil.http.as_ref().map(|h| (h.listen, h.tls.clone()));
        if listener(new) != listener(old) {
            diff.needs_restart
                .push("http_listen/http_tls_cert/http_tls_key");
        }
        diff
    }

    /// Whether nothing about the services changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.replaced.is_empty()
            && self.changed.is_empty()
            && !self.alerts
    }
}

impl Daemon {
    /// SIGHUP: load and validate the whole file first; apply only a valid one.
    pub(super) async fn reload(&mut self) {
        self.notify("RELOADING=1\nSTATUS=reloading the configuration");
        // Parsing and validating a large file is CPU work: not on the runtime thread that
        // drives the checks.
        let path = self.config_path.clone();
        let loaded = tokio::task::spawn_blocking(move || vigil_config::load(&path)).await;
        let Ok(loaded) = loaded else {
            self.reject("the configuration could not be loaded (the loading task failed)");
            return;
        };
        let new = match loaded {
            Ok(c) => c,
            Err(errors) => {
                self.reject(&format!(
                    "{} error(s) in the configuration:\n{errors}",
                    errors.len()
                ));
                return;
            }
        };
        // The listener's token is read again (SIGHUP rotates it); one that cannot be read
        // rejects the whole reload, like a file that does not validate.
        let token = match (&self.http_token, &new.vigil.http) {
            (Some(_), Some(spec)) => match crate::control::http::TokenSwap::read(spec) {
                Ok(token) => Some(token),
                Err(error) => {
                    self.reject(&error.to_string());
                    return;
                }
            },
            _ => None,
        };
        let diff = ConfigDiff::between(&self.config, &new);
        for what in &diff.needs_restart {
            tracing::warn!(
                event = "reload_partial",
                "{what} changed; this takes effect only after a restart of vigil"
            );
        }
        // Build every new driver before touching anything: one that cannot be built
        // leaves the running set as it is.
        let mut built: BTreeMap<ServiceName, Driver> = BTreeMap::new();
        let needs_driver = diff
            .added
            .iter()
            .chain(&diff.replaced)
            .chain(diff.changed.iter().filter(|c| c.driver).map(|c| &c.name));
        for name in needs_driver {
            let Some(service) = new.service(name.as_str()) else {
                continue;
            };
            if diff.changed.iter().any(|c| &c.name == name)
                && matches!(service.driver, vigil_config::model::DriverSpec::Exec(_))
            {
                // An exec service's process driver takes its new definition in place.
                continue;
            }
            match drivers::build(service, &self.shared.drivers) {
                Ok(d) => {
                    built.insert(name.clone(), d);
                }
                Err(error) => {
                    self.reject(&format!("service {name}: {error}"));
                    return;
                }
            }
        }
        // Nothing rejects the reload from here on: the metrics take the new set of series
        // (before the new check tasks start, which report to theirs).
        self.shared.metrics.configure(&new);
        let mut changed = 0usize;
        for name in diff.removed.iter().chain(&diff.replaced) {
            if let Some(handle) = self.services.remove(name) {
                handle.cancel.cancel();
                changed += 1;
                if diff.removed.contains(name) {
                    self.shared.drivers.outputs.remove(name);
                    tracing::info!(service = %name, event = "service_removed", "service removed");
                }
            }
        }
        let saved = self.saved_check_states().await;
        let n_checks: usize = new.services.iter().map(|s| s.checks.len()).sum();
        let mut index = 0usize;
        let mut kept = 0usize;
        for service in &new.services {
            let name = &service.name;
            if let Some(driver) = built.remove(name)
                && !self.services.contains_key(name)
            {
                self.start_service(service, driver, &saved, &mut index, n_checks)
                    .await;
                changed += 1;
                let what = if diff.replaced.contains(name) {
                    "service_replaced"
                } else {
                    "service_added"
                };
                tracing::info!(service = %name, event = what, "service {}: driver {}",
                    if what == "service_added" { "added" } else { "replaced (its driver kind changed)" },
                    service.driver.kind());
                continue;
            }
            let Some(change) = diff.changed.iter().find(|c| &c.name == name) else {
                index += service.checks.len();
                kept += service.checks.len();
                continue;
            };
            let new_driver = built.remove(name);
            kept += self
                .apply_change(service, change, new_driver, &saved, &mut index, n_checks)
                .await;
            changed += 1;
        }
        if diff.alerts {
            self.shared.alerts.reload(&new);
            changed += 1;
            tracing::info!(
                event = "alerts_reloaded",
                channels = new.alerts.len(),
                "alert channels reloaded: {} channel(s)",
                new.alerts.len()
            );
        }
        if let (Some(swap), Some(token)) = (&self.http_token, token) {
            swap.set(token);
        }
        self.config = Arc::new(new);
        self.start_groups();
        self.publish_api_view();
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

    fn reject(&self, why: &str) {
        self.notify("READY=1\nSTATUS=reload rejected; running the previous configuration");
        tracing::error!(
            event = "reload_rejected",
            "reload rejected, keeping the running configuration: {why}"
        );
    }

    /// Applies the changes to a service that stays; returns how many checks kept their
    /// task and state.
    async fn apply_change(
        &mut self,
        service: &Service,
        change: &super::ServiceChange,
        new_driver: Option<Driver>,
        saved: &BTreeMap<(String, String), crate::ledger::CheckStateRow>,
        index: &mut usize,
        n_checks: usize,
    ) -> usize {
        let Some(mut handle) = self.services.remove(&service.name) else {
            return 0;
        };
        if change.driver {
            handle
                .reader
                .replace(Reader::new(&service.driver, &self.shared.probes));
        }
        if change.driver || change.policy {
            let _ = handle
                .tx
                .send(ServiceMsg::Update(Box::new(UpdateMsg {
                    service: service.clone(),
                    driver: new_driver,
                })))
                .await;
        }
        let mut kept = 0usize;
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
                    let offset = stagger(*index, n_checks, check.every);
                    // A changed check starts fresh, but a log check goes on reading where
                    // it was.
                    let position = saved
                        .get(&(service.name.to_string(), check.name.to_string()))
                        .and_then(|r| r.position.clone());
                    self.shared.metrics.check_started(
                        &service.name,
                        check.name.as_str(),
                        CheckHealth::default().status,
                        None,
                    );
                    let task = self.spawn_check(
                        &service.name,
                        &handle,
                        check,
                        CheckHealth::default(),
                        position,
                        offset,
                    );
                    handle.checks.insert(check.name.to_string(), task);
                }
            }
            *index += 1;
        }
        for (_, gone) in checks {
            gone.cancel.cancel();
        }
        if change.schedules {
            handle.schedules.cancel();
            handle.schedules = self.spawn_schedules(&service.name, &handle, service);
        }
        self.services.insert(service.name.clone(), handle);
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: &str) -> Config {
        vigil_config::parse(body, std::path::Path::new("/etc/vigil/vigil.toml")).expect("valid")
    }

    #[test]
    fn a_change_of_driver_kind_is_remove_plus_add_and_the_rest_is_per_part() {
        let old = config(
            r#"
            [services.a]
            driver = "command"
            restart_command = ["/bin/true"]
            [services.a.checks.t]
            kind = "tcp"
            host = "127.0.0.1"
            port = 1
            [services.b]
            driver = "command"
            restart_command = ["/bin/true"]
            [services.c]
            driver = "command"
            restart_command = ["/bin/true"]
            "#,
        );
        let new = config(
            r#"
            [services.a]
            driver = "exec"
            command = ["/bin/sleep", "60"]
            [services.b]
            driver = "command"
            restart_command = ["/bin/false"]
            [services.b.guard]
            cooldown = "5s"
            [services.d]
            driver = "command"
            restart_command = ["/bin/true"]
            "#,
        );
        let diff = ConfigDiff::between(&old, &new);
        assert_eq!(diff.replaced, vec![ServiceName::new("a".to_owned())]);
        assert_eq!(diff.removed, vec![ServiceName::new("c".to_owned())]);
        assert_eq!(diff.added, vec![ServiceName::new("d".to_owned())]);
        assert_eq!(
            diff.changed,
            vec![ServiceChange {
                name: ServiceName::new("b".to_owned()),
                driver: true,
                policy: true,
                schedules: false,
                checks: false,
            }]
        );
        // The services' alert routes changed with them.
        assert!(diff.alerts);
        assert!(ConfigDiff::between(&new, &new).is_empty());
    }
}
