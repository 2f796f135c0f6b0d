//! The effective configuration as TOML (`vigil config show`): every default applied, the
//! included files merged in, every secret redacted.
//!
//! Owns the model → TOML spelling. Every value is written the way the validator reads it,
//! so the output validates into an equal [`Config`] (the same main `path`; `files` lists
//! only it) whenever no secret had to be redacted. Matches are exhaustive: a new kind or
//! field does not compile until it is rendered. It must not read files or the environment:
//! a secret given as `*_file` or `*_env` is shown as that reference, never resolved.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use vigil_core::Signal;
use vigil_core::guard::GuardPolicy;
use vigil_core::schedule::Schedule;

use crate::model::{
    AlertChannel, AlertRoute, Argv, ChannelKind, Check, CheckKind, ClientCert, Config, DriverSpec,
    Fleet, LogFormat, LogLevel, LogSource, MaintenanceWindow, OnDaemonExit, OnFailure,
    OutputTarget, ProcessTarget, Protocol, Proxy, Ready, Secret, Service, Side, SmtpTls, StatusSet,
    SystemdBus, TlsOptions,
};

/// What an inline secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// Header names whose values are shown; every other header's value may carry a token.
const PLAIN_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "cache-control",
    "content-type",
    "host",
    "origin",
    "user-agent",
];

/// Environment variables whose names suggest a credential have their values redacted.
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "SESSION",
];

/// Renders the effective configuration as TOML, for `vigil config show`.
///
/// Every key is written out, defaults included: `[defaults.guard]` is merged into each
/// service's and group's `guard`, computed defaults (`state_dir`, `control_socket`, the
/// journal unit's suffix, a check's `fast_every`, ...) are shown resolved, relative paths
/// as the absolute paths they resolved to, and services, groups and channels from included
/// files follow the main file's, as one file (there is no `include` in the output).
///
/// Secrets are redacted: inline `password`, `secret`, `url` and `webhook_url` values of
/// checks and alert channels read `"<redacted>"`, as do the password of a proxy or URL
/// (`user:<redacted>@`), header values other than a few harmless ones (`Accept`, `Host`,
/// `User-Agent`, ...) and exec environment variables whose names contain `PASSWORD`,
/// `SECRET`, `TOKEN`, `KEY`, `AUTH`, ... A secret given as `*_file` or `*_env` is shown as
/// that reference (a path or a variable name is not a secret); its value is never read.
///
/// The output validates again ([`crate::parse`] with `config.path`) into a `Config` equal
/// to `config` except for `files`, as long as no inline secret was redacted (a redacted
/// webhook URL no longer validates as a URL). Command lines are shown as they are: do not
/// put secrets in argv.
pub fn render_effective(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The effective configuration of {}{}: every default applied, secrets redacted.",
        config.path.display(),
        match config.files.len() {
            0 | 1 => String::new(),
            2 => " and 1 included file".to_owned(),
            n => format!(" and {} included files", n - 1),
        }
    );
    for file in config.files.iter().skip(1) {
        let _ = writeln!(out, "# included: {}", file.display());
    }
    let v = &config.vigil;
    out.push_str("\n[vigil]\n");
    kv(&mut out, "state_dir", path(&v.state_dir));
    let format = match v.log_format {
        LogFormat::Human => "human",
        LogFormat::Json => "json",
    };
    kv(&mut out, "log_format", quote(format));
    let level = match v.log_level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    kv(&mut out, "log_level", quote(level));
    kv(&mut out, "control_socket", path(&v.control_socket));
    if let Some(group) = &v.control_socket_group {
        kv(&mut out, "control_socket_group", quote(group));
    }
    if let Some(http) = &v.http {
        kv(&mut out, "http_listen", quote(&http.listen.to_string()));
        if let Some(file) = &http.token_file {
            kv(&mut out, "http_token_file", path(file));
        }
        if let Some(tls) = &http.tls {
            kv(&mut out, "http_tls_cert", path(&tls.cert));
            kv(&mut out, "http_tls_key", path(&tls.key));
        }
    }
    guard(&mut out, "defaults.guard", &config.default_guard);
    for s in &config.services {
        service(&mut out, s);
    }
    for g in &config.groups {
        let header = format!("groups.{}", key(g.name.as_str()));
        let _ = writeln!(out, "\n[{header}]");
        kv(
            &mut out,
            "members",
            list(g.members.iter().map(|m| quote(m.as_str()))),
        );
        kv(&mut out, "ready_timeout", duration(g.ready_timeout));
        guard(&mut out, &format!("{header}.guard"), &g.guard);
        maintenance(&mut out, &header, &g.maintenance);
    }
    for c in &config.alerts {
        channel(&mut out, c);
    }
    if let Some(f) = &config.fleet {
        fleet(&mut out, f);
    }
    out
}

fn fleet(out: &mut String, f: &Fleet) {
    out.push_str("\n[fleet]\n");
    kv(out, "postgres", quote(&f.postgres.to_string()));
    if let Some(s) = &f.password {
        secret(out, ["password_file", "password_file", "password_env"], s);
    }
    kv(out, "host", quote(&f.host));
    kv(out, "lease_ttl", duration(f.lease_ttl));
    kv(out, "timeout", duration(f.timeout));
    kv(out, "on_unreachable", quote(f.on_unreachable.as_str()));
    kv(out, "tls", f.tls.is_some().to_string());
    if let Some(ca) = f.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
        kv(out, "ca_file", path(ca));
    }
    for k in &f.keys {
        let _ = writeln!(out, "\n[fleet.keys.{}]", key(&k.name));
        kv(out, "max_concurrent", k.rules.max_concurrent.to_string());
        if let Some(b) = &k.rules.budget {
            kv(out, "max_restarts", b.max_restarts.to_string());
            kv(out, "window", duration(b.window));
        }
        if let Some(n) = k.rules.min_healthy {
            kv(out, "min_healthy", n.to_string());
        }
    }
}

fn guard(out: &mut String, header: &str, g: &GuardPolicy) {
    let _ = writeln!(out, "\n[{header}]");
    kv(out, "cooldown", duration(g.cooldown));
    kv(out, "max_restarts", g.max_restarts.to_string());
    kv(out, "window", duration(g.window));
    kv(out, "lock_timeout", duration(g.lock_timeout));
    if let Some(b) = &g.backoff {
        let _ = writeln!(out, "\n[{header}.backoff]");
        kv(out, "initial", duration(b.initial));
        kv(out, "factor", float(b.factor));
        kv(out, "max", duration(b.max));
        kv(out, "reset", duration(b.reset));
    }
}

fn service(out: &mut String, s: &Service) {
    let header = format!("services.{}", key(s.name.as_str()));
    let _ = writeln!(out, "\n[{header}]");
    kv(out, "driver", quote(s.driver.kind()));
    match &s.driver {
        DriverSpec::Command(c) => {
            kv(out, "restart_command", argv(&c.restart));
            let commands = [
                ("start_command", &c.start),
                ("stop_command", &c.stop),
                ("status_command", &c.status),
            ];
            for (name, command) in commands {
                if let Some(command) = command {
                    kv(out, name, argv(command));
                }
            }
            kv(out, "command_timeout", duration(c.timeout));
        }
        DriverSpec::Docker(d) => {
            kv(out, "container", quote(&d.container));
            if let Some(host) = &d.docker_host {
                kv(out, "docker_host", quote(host));
            }
            kv(out, "stop_timeout", duration(d.stop_timeout));
        }
        DriverSpec::Exec(e) => {
            kv(out, "command", argv(&e.command));
            if let Some(cwd) = &e.cwd {
                kv(out, "cwd", path(cwd));
            }
            if !e.env.is_empty() {
                let env = e.env.iter().map(|(name, value)| {
                    let upper = name.to_ascii_uppercase();
                    let secret = SECRET_WORDS.iter().any(|w| upper.contains(w));
                    (
                        name.as_str(),
                        if secret { REDACTED } else { value.as_str() },
                    )
                });
                kv(out, "env", inline_table(env));
            }
            if let Some(user) = &e.user {
                kv(out, "user", quote(user));
            }
            if let Some(group) = &e.group {
                kv(out, "group", quote(group));
            }
            kv(out, "stdout", output(&e.stdout));
            kv(out, "stderr", output(&e.stderr));
            kv(out, "log_max_size", e.log_max_size.to_string());
            kv(out, "log_keep", e.log_keep.to_string());
            kv(out, "restart", quote(e.restart.as_str()));
            kv(out, "restart_delay", duration(e.restart_delay));
            let success = &e.success_exit_status;
            if !success.codes.is_empty() || !success.signals.is_empty() {
                let codes = success.codes.iter().map(i32::to_string);
                let signals = success.signals.iter().map(|s| quote(&signal_name(*s)));
                kv(out, "success_exit_status", list(codes.chain(signals)));
            }
            kv(out, "stop_signal", signal(e.stop_signal));
            kv(out, "stop_timeout", duration(e.stop_timeout));
            let ready = match e.ready {
                Ready::Started => "started",
                Ready::Notify => "notify",
            };
            kv(out, "ready", quote(ready));
            kv(out, "start_timeout", duration(e.start_timeout));
            if let Some(watchdog) = e.watchdog {
                kv(out, "watchdog", duration(watchdog));
                kv(out, "watchdog_signal", signal(e.watchdog_signal));
            }
            let on_exit = match e.on_daemon_exit {
                OnDaemonExit::Stop => "stop",
                OnDaemonExit::Leave => "leave",
            };
            kv(out, "on_daemon_exit", quote(on_exit));
        }
        DriverSpec::Systemd(d) => {
            kv(out, "unit", quote(&d.unit));
            bus(out, &d.bus);
            kv(out, "reset_failed", d.reset_failed.to_string());
            kv(out, "job_timeout", duration(d.job_timeout));
        }
    }
    if !s.after.is_empty() {
        kv(
            out,
            "after",
            list(s.after.iter().map(|a| quote(a.as_str()))),
        );
    }
    if let Some(check) = &s.ready_check {
        kv(out, "ready_check", quote(check.as_str()));
    }
    if let AlertRoute::Only(channels) = &s.alerts {
        kv(out, "alerts", list(channels.iter().map(|c| quote(c))));
    }
    if let Some(k) = &s.fleet_key {
        kv(out, "fleet_key", quote(k));
    }
    guard(out, &format!("{header}.guard"), &s.guard);
    for c in &s.checks {
        check(out, &header, c);
    }
    for entry in &s.schedules {
        let _ = writeln!(out, "\n[[{header}.schedule]]");
        schedule(out, &entry.schedule);
    }
    maintenance(out, &header, &s.maintenance);
}

/// `cron` and `timezone`, or `every`.
fn schedule(out: &mut String, schedule: &Schedule) {
    if let Some((expr, zone)) = schedule.cron_expr() {
        kv(out, "cron", quote(expr));
        kv(out, "timezone", quote(zone));
    } else if let Some(interval) = schedule.interval() {
        kv(out, "every", duration(interval));
    }
}

/// `[[OWNER.maintenance]]` of a service or group.
fn maintenance(out: &mut String, owner: &str, windows: &[MaintenanceWindow]) {
    for w in windows {
        let _ = writeln!(out, "\n[[{owner}.maintenance]]");
        schedule(out, &w.schedule);
        kv(out, "duration", duration(w.duration));
        kv(out, "action", quote(w.action.as_str()));
    }
}

fn check(out: &mut String, service: &str, c: &Check) {
    let _ = writeln!(out, "\n[{service}.checks.{}]", key(c.name.as_str()));
    kv(out, "kind", quote(c.kind.as_str()));
    kv(out, "every", duration(c.every));
    kv(out, "timeout", duration(c.timeout));
    kv(out, "retries", c.retries.to_string());
    kv(out, "retry_delay", duration(c.retry_delay));
    kv(out, "failure_threshold", c.thresholds.failure.to_string());
    kv(out, "success_threshold", c.thresholds.success.to_string());
    kv(out, "grace", duration(c.grace));
    let on_failure = match &c.on_failure {
        OnFailure::Restart => quote("restart"),
        OnFailure::Alert => quote("alert"),
        OnFailure::RestartGroup => quote("restart-group"),
        OnFailure::Exec(command) => format!("{{ exec = {} }}", argv(command)),
    };
    kv(out, "on_failure", on_failure);
    kv(out, "severity", quote(c.severity.as_str()));
    match &c.kind {
        CheckKind::Http(h) => {
            kv(out, "url", quote(&redact_url(&h.url)));
            kv(out, "method", quote(&h.method));
            kv(out, "expect_status", statuses(&h.expect_status));
            if let Some(text) = &h.body_contains {
                kv(out, "body_contains", quote(text));
            }
            if let Some(re) = &h.body_regex {
                kv(out, "body_regex", quote(re.as_str()));
            }
            headers(out, &h.headers);
            if let Some(ca) = &h.ca_file {
                kv(out, "ca_file", path(ca));
            }
            kv(out, "insecure", h.insecure.to_string());
            client_cert(out, h.client_cert.as_ref());
            proxy(out, h.proxy.as_ref());
            if let Some(latency) = h.max_latency {
                kv(out, "max_latency", duration(latency));
            }
            kv(out, "follow_redirects", h.follow_redirects.to_string());
            kv(out, "max_body", h.max_body.to_string());
        }
        CheckKind::Tcp(t) => {
            kv(out, "host", quote(&t.host));
            kv(out, "port", t.port.to_string());
        }
        CheckKind::Listening(l) => {
            kv(out, "port", l.port.to_string());
            let protocol = match l.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            };
            kv(out, "protocol", quote(protocol));
            if let Some(address) = l.address {
                kv(out, "address", quote(&address.to_string()));
            }
        }
        CheckKind::Exec(e) => {
            kv(out, "command", argv(&e.command));
            kv(out, "expect_exit", e.expect_exit.to_string());
            if let Some(text) = &e.stdout_contains {
                kv(out, "stdout_contains", quote(text));
            }
        }
        CheckKind::WebSocket(w) => {
            kv(out, "url", quote(&redact_url(&w.url)));
            kv(out, "expect_status", statuses(&w.expect_status));
            headers(out, &w.headers);
            proxy(out, w.proxy.as_ref());
            tls_keys(out, &w.tls);
        }
        CheckKind::Sockets(s) => {
            kv(out, "port", s.port.to_string());
            kv(out, "state", quote(s.state.as_str()));
            let side = match s.side {
                Side::Local => "local",
                Side::Remote => "remote",
            };
            kv(out, "side", quote(side));
            kv(out, "max", s.max.to_string());
        }
        CheckKind::Log(l) => {
            match &l.source {
                LogSource::File(file) => kv(out, "path", path(file)),
                LogSource::Journal(j) => {
                    kv(out, "journal_unit", quote(&j.unit));
                    if let Some(dir) = &j.directory {
                        kv(out, "journal_directory", path(dir));
                    }
                }
            }
            kv(out, "pattern", quote(l.pattern.as_str()));
            kv(out, "min_matches", l.min_matches.to_string());
        }
        CheckKind::Interface(i) => {
            kv(out, "interface", quote(&i.interface));
            kv(out, "require_carrier", i.require_carrier.to_string());
        }
        CheckKind::FileAge(f) => {
            kv(out, "path", path(&f.path));
            kv(out, "max_age", duration(f.max_age));
            kv(out, "fast_every", duration(f.fast_every));
        }
        CheckKind::Clock(c) => {
            let servers = c.servers.iter().map(|(host, port)| {
                if host.contains(':') {
                    quote(&format!("[{host}]:{port}"))
                } else {
                    quote(&format!("{host}:{port}"))
                }
            });
            kv(out, "servers", list(servers));
            kv(out, "warn", duration(c.warn));
            kv(out, "critical", duration(c.critical));
        }
        CheckKind::TlsCert(t) => {
            kv(out, "host", quote(&t.host));
            kv(out, "port", t.port.to_string());
            if let Some(name) = &t.server_name {
                kv(out, "server_name", quote(name));
            }
            kv(out, "warn_days", t.warn_days.to_string());
            kv(out, "critical_days", t.critical_days.to_string());
            proxy(out, t.proxy.as_ref());
        }
        CheckKind::Redis(r) => {
            kv(out, "host", quote(&r.host));
            kv(out, "port", r.port.to_string());
            if let Some(user) = &r.username {
                kv(out, "username", quote(user));
            }
            password(out, r.password.as_ref());
            optional_tls(out, r.tls.as_ref());
        }
        CheckKind::Postgres(p) => {
            kv(out, "host", quote(&p.host));
            kv(out, "port", p.port.to_string());
            kv(out, "user", quote(&p.user));
            if let Some(db) = &p.database {
                kv(out, "database", quote(db));
            }
            password(out, p.password.as_ref());
            optional_tls(out, p.tls.as_ref());
        }
        CheckKind::Mqtt(m) => {
            kv(out, "host", quote(&m.host));
            kv(out, "port", m.port.to_string());
            if let Some(user) = &m.username {
                kv(out, "username", quote(user));
            }
            password(out, m.password.as_ref());
            if let Some(id) = &m.client_id {
                kv(out, "client_id", quote(id));
            }
            optional_tls(out, m.tls.as_ref());
        }
        CheckKind::Process(p) => {
            match &p.target {
                ProcessTarget::PidFile(file) => kv(out, "pid_file", path(file)),
                ProcessTarget::Name(name) => kv(out, "name", quote(name)),
            }
            if let Some(rss) = p.max_rss {
                kv(out, "max_rss", rss.to_string());
            }
            if let Some(fds) = p.max_fds {
                kv(out, "max_fds", fds.to_string());
            }
            if let Some(threads) = p.max_threads {
                kv(out, "max_threads", threads.to_string());
            }
            if let Some(cpu) = p.max_cpu_percent {
                kv(out, "max_cpu_percent", float(cpu));
            }
        }
        CheckKind::Heartbeat(h) => kv(out, "ttl", duration(h.ttl)),
        CheckKind::Docker(d) => {
            kv(out, "container", quote(&d.container));
            if let Some(healthy) = d.require_healthy {
                kv(out, "require_healthy", healthy.to_string());
            }
            if let Some(host) = &d.docker_host {
                kv(out, "docker_host", quote(host));
            }
        }
        CheckKind::Systemd(s) => {
            kv(out, "unit", quote(&s.unit));
            bus(out, &s.bus);
        }
    }
}

fn channel(out: &mut String, c: &AlertChannel) {
    let _ = writeln!(out, "\n[alerts.{}]", key(&c.name));
    kv(out, "kind", quote(c.kind.as_str()));
    kv(
        out,
        "events",
        list(c.events.iter().map(|e| quote(e.as_str()))),
    );
    kv(out, "repeat", duration(c.repeat));
    kv(out, "group_wait", duration(c.group_wait));
    kv(out, "timeout", duration(c.timeout));
    kv(out, "retries", c.retries.to_string());
    kv(out, "retry_delay", duration(c.retry_delay));
    kv(out, "queue_size", c.queue_size.to_string());
    match &c.kind {
        ChannelKind::Webhook(w) => {
            secret_url(out, ["url", "url_file", "url_env"], &w.url);
            // Any header of an alert channel may carry a token.
            if !w.headers.is_empty() {
                let shown = w.headers.iter().map(|(n, _)| (n.as_str(), REDACTED));
                kv(out, "headers", inline_table(shown));
            }
            if let Some(s) = &w.secret {
                secret(out, ["secret", "secret_file", "secret_env"], s);
            }
        }
        ChannelKind::Slack(s) => {
            let keys = ["webhook_url", "webhook_url_file", "webhook_url_env"];
            secret_url(out, keys, &s.webhook_url);
        }
        ChannelKind::Email(e) => {
            kv(out, "smtp_host", quote(&e.smtp_host));
            kv(out, "smtp_port", e.smtp_port.to_string());
            let tls = match e.tls {
                SmtpTls::StartTls => "starttls",
                SmtpTls::Implicit => "implicit",
                SmtpTls::None => "none",
            };
            kv(out, "tls", quote(tls));
            if let Some((user, pass)) = &e.auth {
                kv(out, "username", quote(user));
                secret(out, ["password", "password_file", "password_env"], pass);
            }
            kv(out, "from", quote(&e.from));
            kv(out, "to", list(e.to.iter().map(|t| quote(t))));
            if let Some(ca) = &e.ca_file {
                kv(out, "ca_file", path(ca));
            }
        }
        ChannelKind::Exec(e) => kv(out, "command", argv(&e.command)),
    }
}

/// A secret as its inline key (redacted), its file or its environment variable.
fn secret(out: &mut String, [inline, file, env]: [&str; 3], s: &Secret) {
    match s {
        Secret::Inline(_) => kv(out, inline, quote(REDACTED)),
        Secret::File(p) => kv(out, file, path(p)),
        Secret::Env(name) => kv(out, env, quote(name)),
    }
}

/// A URL that may carry a token anywhere but its scheme and host (Slack's are in the
/// path): shown as `scheme://host[:port]/` plus [`REDACTED_PATH`], so the reader sees
/// where alerts go and the output still validates.
fn secret_url(out: &mut String, keys: [&str; 3], s: &Secret) {
    let Secret::Inline(url) = s else {
        return secret(out, keys, s);
    };
    let shown = url.split_once("://").map(|(scheme, rest)| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // Userinfo (`user:pass@`) is a secret too.
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        format!("{scheme}://{host}{REDACTED_PATH}")
    });
    match shown {
        Some(shown) => kv(out, keys[0], quote(&shown)),
        None => kv(out, keys[0], quote(REDACTED)),
    }
}

/// What replaces the path and query of a redacted URL.
pub const REDACTED_PATH: &str = "/REDACTED";

/// A check's `password` / `password_file` (checks take no `password_env`).
fn password(out: &mut String, s: Option<&Secret>) {
    match s {
        None => {}
        Some(Secret::Inline(_)) => kv(out, "password", quote(REDACTED)),
        Some(Secret::File(p)) => kv(out, "password_file", path(p)),
        Some(Secret::Env(name)) => {
            let _ = writeln!(out, "# password from the environment variable {name}");
        }
    }
}

fn optional_tls(out: &mut String, tls: Option<&TlsOptions>) {
    match tls {
        None => kv(out, "tls", "false".to_owned()),
        Some(t) => {
            kv(out, "tls", "true".to_owned());
            tls_keys(out, t);
        }
    }
}

fn tls_keys(out: &mut String, t: &TlsOptions) {
    if let Some(ca) = &t.ca_file {
        kv(out, "ca_file", path(ca));
    }
    kv(out, "insecure", t.insecure.to_string());
    client_cert(out, t.client_cert.as_ref());
}

fn client_cert(out: &mut String, cert: Option<&ClientCert>) {
    if let Some(c) = cert {
        kv(out, "client_cert", path(&c.cert));
        kv(out, "client_key", path(&c.key));
    }
}

fn proxy(out: &mut String, p: Option<&Proxy>) {
    if let Some(p) = p {
        kv(out, "proxy", quote(&redact_url(&p.url)));
    }
}

fn headers(out: &mut String, headers: &[(String, String)]) {
    if headers.is_empty() {
        return;
    }
    let shown = headers.iter().map(|(name, value)| {
        let plain = PLAIN_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h));
        (name.as_str(), if plain { value.as_str() } else { REDACTED })
    });
    kv(out, "headers", inline_table(shown));
}

fn bus(out: &mut String, bus: &SystemdBus) {
    match bus {
        SystemdBus::System => kv(out, "bus", quote("system")),
        SystemdBus::User => kv(out, "bus", quote("user")),
        SystemdBus::Address(a) => kv(out, "bus_address", quote(a)),
    }
}

fn output(target: &OutputTarget) -> String {
    match target {
        OutputTarget::Log => quote("log"),
        OutputTarget::Null => quote("null"),
        OutputTarget::File(p) => format!("{{ file = {} }}", path(p)),
    }
}

fn statuses(set: &StatusSet) -> String {
    list(set.0.iter().map(|&(lo, hi)| {
        if lo == hi {
            lo.to_string()
        } else {
            quote(&format!("{lo}-{hi}"))
        }
    }))
}

fn signal_name(s: Signal) -> String {
    match s.name() {
        Some(name) => name.to_owned(),
        None => s.as_raw().to_string(),
    }
}

fn signal(s: Signal) -> String {
    match s.name() {
        Some(name) => quote(name),
        None => s.as_raw().to_string(),
    }
}

/// `scheme://user:password@host/...` → `scheme://user:<redacted>@host/...`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{user}@{host}{tail}")
}

fn kv(out: &mut String, name: &str, value: String) {
    let _ = writeln!(out, "{} = {value}", key(name));
}

/// A bare key, or a quoted one when it has other characters.
fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { k.to_owned() } else { quote(k) }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

fn argv(a: &Argv) -> String {
    list(a.as_slice().iter().map(|s| quote(s)))
}

fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

fn inline_table<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let items: Vec<String> = entries
        .map(|(k, v)| format!("{} = {}", key(k), quote(v)))
        .collect();
    if items.is_empty() {
        "{}".to_owned()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

/// A float as TOML writes it (always with a `.` or an exponent).
fn float(f: f64) -> String {
    let text = format!("{f:?}");
    if text.contains(['.', 'e', 'E']) || !f.is_finite() {
        text
    } else {
        format!("{text}.0")
    }
}

/// A duration exactly, in the units the config reads: `1h 30m`, `250ms`, `1s 500us`.
fn duration(d: Duration) -> String {
    if d.is_zero() {
        return quote("0s");
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1000 % 1000), "us"),
        (u64::from(nanos % 1000), "ns"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    quote(&text.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_render_exactly() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(250),
            Duration::from_secs(90),
            Duration::from_secs(5400),
            Duration::from_secs(86_400 * 400),
            Duration::new(1, 500_000),
            Duration::new(3_000_000_000, 1),
        ] {
            let text = duration(d);
            let text = text.trim_matches('"');
            assert_eq!(crate::parse_duration(text), Ok(d), "{text}");
        }
    }

    #[test]
    fn urls_lose_their_password_only() {
        assert_eq!(
            redact_url("socks5h://ops:s3cret@127.0.0.1:1080"),
            "socks5h://ops:<redacted>@127.0.0.1:1080"
        );
        assert_eq!(
            redact_url("http://u:p@h/x?q=1"),
            "http://u:<redacted>@h/x?q=1"
        );
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_url("http://user@h/"), "http://user@h/");
    }

    #[test]
    fn strings_and_keys_are_valid_toml() {
        assert_eq!(quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(key("api@2"), "\"api@2\"");
        assert_eq!(key("web-1_x"), "web-1_x");
        assert_eq!(float(2.0), "2.0");
        assert_eq!(float(1.5), "1.5");
    }
}
