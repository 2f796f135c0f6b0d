//! A valid configuration using every key parses into exactly the expected model.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use vigil_config::model::*;
use vigil_config::{COMPLETE_EXAMPLE, parse, schema};
use vigil_core::ServiceName;
use vigil_core::backoff::BackoffPolicy;
use vigil_core::guard::GuardPolicy;
use vigil_core::health::Thresholds;
use vigil_core::schedule::Schedule;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn argv(args: &[&str]) -> Argv {
    Argv::new(args.iter().map(|s| (*s).to_owned()).collect()).unwrap()
}

#[test]
fn complete_example_parses_into_the_expected_model() {
    let config = parse(COMPLETE_EXAMPLE, Path::new("/etc/vigil/vigil.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.path, PathBuf::from("/etc/vigil/vigil.toml"));
    assert_eq!(
        config.vigil,
        Settings {
            state_dir: PathBuf::from("/var/lib/vigil"),
            log_format: LogFormat::Human,
            log_level: LogLevel::Info,
            control_socket: PathBuf::from("/run/vigil/vigil.sock"),
            control_socket_group: Some("vigil-ops".to_owned()),
            http: Some(HttpListener {
                listen: "127.0.0.1:9731".parse().unwrap(),
                token_file: Some(PathBuf::from("/etc/vigil/http-token")),
                tls: Some(TlsFiles {
                    cert: PathBuf::from("/etc/vigil/tls/cert.pem"),
                    key: PathBuf::from("/etc/vigil/tls/key.pem"),
                }),
            }),
        }
    );
    let default_backoff = BackoffPolicy {
        initial: secs(30),
        factor: 2.0,
        max: secs(600),
        reset: secs(600),
    };
    assert_eq!(
        config.default_guard,
        GuardPolicy {
            cooldown: secs(120),
            max_restarts: 5,
            window: secs(3600),
            lock_timeout: secs(10),
            backoff: Some(default_backoff),
        }
    );

    assert_eq!(config.services.len(), 4);
    assert_eq!(
        config.service("kms").unwrap().driver,
        DriverSpec::Docker(DockerDriver {
            container: "kms-production".to_owned(),
            docker_host: Some("unix:///run/docker.sock".to_owned()),
            stop_timeout: secs(20),
        })
    );
    let worker = config.service("worker").unwrap();
    assert_eq!(
        worker.driver,
        DriverSpec::Exec(ExecDriver {
            command: argv(&["/opt/worker/bin/worker", "--port", "8080"]),
            cwd: Some(PathBuf::from("/opt/worker")),
            env: vec![
                ("RUST_LOG".to_owned(), "info".to_owned()),
                ("PORT".to_owned(), "8080".to_owned())
            ],
            user: Some("worker".to_owned()),
            group: Some("worker".to_owned()),
            stdout: OutputTarget::Log,
            stderr: OutputTarget::File(PathBuf::from("/var/log/worker/stderr.log")),
            log_max_size: 10 * 1024 * 1024,
            log_keep: 5,
            restart: vigil_core::RestartPolicy::Always,
            restart_delay: secs(1),
            success_exit_status: vigil_core::SuccessStatus {
                codes: vec![75],
                signals: vec![vigil_core::Signal::USR1],
            },
            stop_signal: vigil_core::Signal::TERM,
            stop_timeout: secs(10),
            ready: Ready::Notify,
            start_timeout: secs(90),
            watchdog: Some(secs(30)),
            watchdog_signal: vigil_core::Signal::ABRT,
            on_daemon_exit: OnDaemonExit::Stop,
        })
    );
    assert_eq!(worker.guard, config.default_guard);
    assert_eq!(
        config.service("encoder").unwrap().driver,
        DriverSpec::Systemd(SystemdDriver {
            unit: "camera-encoder.service".to_owned(),
            bus: SystemdBus::System,
            reset_failed: true,
            job_timeout: secs(30),
        })
    );
    let cam = config.service("camera").unwrap();
    assert_eq!(cam.name.as_str(), "camera");
    assert_eq!(cam.after, [ServiceName::new("kms")]);
    assert_eq!(cam.ready_check.as_ref().map(|c| c.as_str()), Some("rtsp"));
    // camera's `after` moves kms first.
    assert_eq!(config.groups.len(), 1);
    let g = &config.groups[0];
    assert_eq!(g.name.as_str(), "platform");
    assert_eq!(
        g.members,
        [ServiceName::new("kms"), ServiceName::new("camera")]
    );
    assert_eq!(g.ready_timeout, secs(30));
    assert_eq!(g.guard.cooldown, secs(300));
    assert_eq!(g.guard.max_restarts, 2);
    assert_eq!(g.guard.window, secs(3600));
    assert_eq!(g.ledger_key().as_str(), "@platform");
    assert_eq!(
        config.group_of("camera").map(|g| g.name.as_str()),
        Some("platform")
    );
    let script = "/home/ops/camera/scripts/managed_start.sh";
    assert_eq!(
        cam.driver,
        DriverSpec::Command(CommandDriver {
            restart: argv(&[script, "restart"]),
            start: Some(argv(&[script, "start"])),
            stop: Some(argv(&[script, "stop"])),
            status: Some(argv(&[script, "status"])),
            timeout: secs(60),
        })
    );
    // Overrides apply key by key; `backoff` replaces the default one as a whole.
    assert_eq!(
        cam.guard,
        GuardPolicy {
            cooldown: secs(120),
            max_restarts: 3,
            window: secs(3600),
            lock_timeout: secs(10),
            backoff: Some(BackoffPolicy {
                initial: secs(60),
                factor: 2.0,
                max: secs(1800),
                reset: secs(600),
            }),
        }
    );

    let names: Vec<&str> = cam.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "http",
            "rtsp",
            "listener",
            "pipeline",
            "tunnel",
            "ws",
            "close_wait",
            "errors",
            "vpn",
            "frames",
            "clock",
            "cert",
            "cache",
            "db",
            "broker",
            "daemon",
            "encoder",
            "uploader",
            "kms",
            "journal",
            "units",
        ],
        "checks keep file order"
    );

    assert_eq!(
        cam.checks[0],
        Check {
            name: "http".into(),
            kind: CheckKind::Http(HttpCheck {
                url: "https://127.0.0.1:8443/health".to_owned(),
                method: "GET".to_owned(),
                expect_status: StatusSet(vec![(200, 200), (300, 302)]),
                body_contains: Some("ok".to_owned()),
                body_regex: Some(Pattern(regex::Regex::new(r"uptime: \d+").unwrap())),
                headers: vec![("Authorization".to_owned(), "Bearer secret-token".to_owned())],
                ca_file: Some(PathBuf::from("/etc/camera/ca.pem")),
                insecure: false,
                follow_redirects: false,
                max_body: 64 * 1024,
                proxy: None,
                max_latency: None,
                client_cert: None,
            }),
            every: secs(300),
            timeout: secs(10),
            retries: 3,
            retry_delay: secs(5),
            thresholds: Thresholds {
                failure: 2,
                success: 1,
            },
            grace: secs(30),
            on_failure: OnFailure::Restart,
            severity: Severity::Critical,
        }
    );
    let defaults = |name: &str, kind: CheckKind| Check {
        name: name.into(),
        kind,
        every: secs(30),
        timeout: secs(10),
        retries: 1,
        retry_delay: secs(5),
        thresholds: Thresholds::default(),
        grace: Duration::ZERO,
        on_failure: OnFailure::Restart,
        severity: Severity::Critical,
    };
    assert_eq!(cam.checks[1].on_failure, OnFailure::RestartGroup);
    assert_eq!(
        Check {
            on_failure: OnFailure::Restart,
            ..cam.checks[1].clone()
        },
        defaults(
            "rtsp",
            CheckKind::Tcp(TcpCheck {
                host: "127.0.0.1".to_owned(),
                port: 554,
            })
        )
    );
    assert_eq!(
        cam.checks[2],
        Check {
            on_failure: OnFailure::Alert,
            severity: Severity::Warning,
            ..defaults(
                "listener",
                CheckKind::Listening(ListeningCheck {
                    port: 8443,
                    protocol: Protocol::Tcp,
                    address: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                })
            )
        }
    );
    assert_eq!(
        cam.checks[3],
        Check {
            on_failure: OnFailure::Exec(argv(&["/usr/local/bin/camera-ctl", "flush"])),
            ..defaults(
                "pipeline",
                CheckKind::Exec(ExecCheck {
                    command: argv(&["/usr/local/bin/camera-ctl", "status"]),
                    expect_exit: 0,
                    stdout_contains: Some("running".to_owned()),
                })
            )
        }
    );

    let client = |dir: &str| ClientCert {
        cert: PathBuf::from(format!("/etc/{dir}/client.pem")),
        key: PathBuf::from(format!("/etc/{dir}/client.key")),
    };
    assert_eq!(
        cam.checks[4],
        defaults(
            "tunnel",
            CheckKind::Http(HttpCheck {
                proxy: Some(Proxy {
                    url: "socks5h://ops:s3cret@127.0.0.1:1080".to_owned(),
                    scheme: ProxyScheme::Socks5h,
                    host: "127.0.0.1".to_owned(),
                    port: 1080,
                    username: Some("ops".to_owned()),
                    password: Some("s3cret".to_owned()),
                }),
                max_latency: Some(secs(2)),
                client_cert: Some(client("camera")),
                // The rest at their defaults (`HttpCheck::get` is held to them here).
                ..HttpCheck::get("http://10.8.0.1/status")
            })
        )
    );
    assert_eq!(
        cam.checks[5],
        defaults(
            "ws",
            CheckKind::WebSocket(WebSocketCheck {
                url: "wss://127.0.0.1:8084/mqtt".to_owned(),
                expect_status: StatusSet(vec![(426, 426)]),
                headers: vec![("Origin".to_owned(), "https://camera.local".to_owned())],
                proxy: Some(Proxy {
                    url: "http://proxy.local:3128".to_owned(),
                    scheme: ProxyScheme::Http,
                    host: "proxy.local".to_owned(),
                    port: 3128,
                    username: None,
                    password: None,
                }),
                tls: TlsOptions {
                    ca_file: Some(PathBuf::from("/etc/camera/ca.pem")),
                    insecure: true,
                    client_cert: Some(client("camera")),
                },
            })
        )
    );
    assert_eq!(
        cam.checks[6],
        defaults(
            "close_wait",
            CheckKind::Sockets(SocketsCheck {
                port: 1883,
                state: TcpState::CloseWait,
                side: Side::Local,
                max: 50,
            })
        )
    );
    assert_eq!(
        cam.checks[7],
        Check {
            severity: Severity::Warning,
            ..defaults(
                "errors",
                CheckKind::Log(LogCheck {
                    source: LogSource::File(PathBuf::from("/var/log/camera/camera.log")),
                    pattern: Pattern(regex::Regex::new("(?i)error|panic").unwrap()),
                    min_matches: 3,
                })
            )
        }
    );
    assert_eq!(
        cam.checks[8],
        defaults(
            "vpn",
            CheckKind::Interface(InterfaceCheck {
                interface: "wg0".to_owned(),
                require_carrier: false,
            })
        )
    );
    assert_eq!(
        cam.checks[9],
        defaults(
            "frames",
            CheckKind::FileAge(FileAgeCheck {
                path: PathBuf::from("/var/lib/camera/latest.jpg"),
                max_age: secs(600),
                fast_every: secs(30),
            })
        )
    );
    assert_eq!(
        cam.checks[10],
        Check {
            on_failure: OnFailure::Alert,
            ..defaults(
                "clock",
                CheckKind::Clock(ClockCheck {
                    servers: vec![
                        ("pool.ntp.org".to_owned(), 123),
                        ("192.168.1.1".to_owned(), 123),
                        ("2001:db8::123".to_owned(), 123),
                    ],
                    warn: secs(1),
                    critical: secs(3),
                })
            )
        }
    );
    assert_eq!(
        cam.checks[11],
        defaults(
            "cert",
            CheckKind::TlsCert(TlsCertCheck {
                host: "camera.example.com".to_owned(),
                port: 8443,
                server_name: Some("camera.example.com".to_owned()),
                warn_days: 21,
                critical_days: 7,
                proxy: Some(Proxy {
                    url: "socks5://127.0.0.1:1080".to_owned(),
                    scheme: ProxyScheme::Socks5,
                    host: "127.0.0.1".to_owned(),
                    port: 1080,
                    username: None,
                    password: None,
                }),
            })
        )
    );
    assert_eq!(
        cam.checks[12],
        defaults(
            "cache",
            CheckKind::Redis(RedisCheck {
                host: "127.0.0.1".to_owned(),
                port: 6380,
                username: Some("vigil".to_owned()),
                password: Some(Secret::Inline("redis-secret".to_owned())),
                tls: Some(TlsOptions {
                    ca_file: Some(PathBuf::from("/etc/redis/ca.pem")),
                    insecure: false,
                    client_cert: Some(client("redis")),
                }),
            })
        )
    );
    assert_eq!(
        cam.checks[13],
        defaults(
            "db",
            CheckKind::Postgres(PostgresCheck {
                host: "db.local".to_owned(),
                port: 5433,
                user: "camera".to_owned(),
                database: Some("frames".to_owned()),
                password: Some(Secret::File(PathBuf::from("/etc/camera/pg.pass"))),
                tls: None,
            })
        )
    );
    assert_eq!(
        cam.checks[14],
        defaults(
            "broker",
            CheckKind::Mqtt(MqttCheck {
                host: "127.0.0.1".to_owned(),
                port: 8883,
                username: Some("vigil".to_owned()),
                password: Some(Secret::Inline("mqtt-secret".to_owned())),
                client_id: Some("vigil-camera".to_owned()),
                tls: Some(TlsOptions {
                    ca_file: None,
                    insecure: true,
                    client_cert: None,
                }),
            })
        )
    );
    assert_eq!(
        cam.checks[15],
        defaults(
            "daemon",
            CheckKind::Process(ProcessCheck {
                target: ProcessTarget::PidFile(PathBuf::from("/run/camera.pid")),
                max_rss: Some(512 << 20),
                max_fds: Some(1024),
                max_threads: Some(64),
                max_cpu_percent: Some(150.0),
            })
        )
    );
    assert_eq!(
        cam.checks[16],
        defaults(
            "encoder",
            CheckKind::Process(ProcessCheck {
                target: ProcessTarget::Name("ffmpeg".to_owned()),
                max_rss: Some(1 << 30),
                max_fds: None,
                max_threads: None,
                max_cpu_percent: None,
            })
        )
    );
    assert_eq!(
        cam.checks[17],
        defaults(
            "uploader",
            CheckKind::Heartbeat(HeartbeatCheck { ttl: secs(900) })
        )
    );
    assert_eq!(
        cam.checks[18],
        defaults(
            "kms",
            CheckKind::Docker(DockerCheck {
                container: "kms-production".to_owned(),
                require_healthy: Some(true),
                docker_host: Some("unix:///run/docker.sock".to_owned()),
            })
        )
    );
    assert_eq!(
        cam.checks[19],
        defaults(
            "journal",
            CheckKind::Log(LogCheck {
                source: LogSource::Journal(JournalSource {
                    unit: "camera-encoder.service".to_owned(),
                    directory: Some(PathBuf::from("/var/lib/machines/encoder/var/log/journal")),
                }),
                pattern: Pattern(regex::Regex::new(r"(?i)dropped \d+ frames").unwrap()),
                min_matches: 1,
            })
        )
    );
    assert_eq!(
        cam.checks[20],
        defaults(
            "units",
            CheckKind::Systemd(SystemdCheck {
                unit: "camera-encoder.service".to_owned(),
                bus: SystemdBus::Address("unix:path=/run/dbus/system_bus_socket".to_owned()),
            })
        )
    );

    let berlin = jiff::tz::db().get("Europe/Berlin").unwrap();
    assert_eq!(
        cam.schedules,
        vec![
            ScheduleEntry {
                schedule: Schedule::cron("0 8,16 * * *", berlin.clone(), "Europe/Berlin").unwrap(),
            },
            ScheduleEntry {
                schedule: Schedule::every(secs(24 * 3600)).unwrap(),
            },
        ]
    );
    assert_eq!(
        cam.maintenance,
        vec![
            MaintenanceWindow {
                schedule: Schedule::cron("0 3 * * 0", berlin, "Europe/Berlin").unwrap(),
                duration: secs(30 * 60),
                action: MaintenanceAction::Stop,
            },
            MaintenanceWindow {
                schedule: Schedule::every(secs(6 * 3600)).unwrap(),
                duration: secs(5 * 60),
                action: MaintenanceAction::Pause,
            },
        ]
    );
    assert_eq!(
        config.groups[0].maintenance,
        vec![MaintenanceWindow {
            schedule: Schedule::cron("0 2 1 * *", jiff::tz::TimeZone::UTC, "UTC").unwrap(),
            duration: secs(3600),
            action: MaintenanceAction::Stop,
        }]
    );
    assert!(config.service("kms").unwrap().maintenance.is_empty());
}

/// The example is the "every key" config: make sure it stays that way when keys are added.
#[test]
fn complete_example_uses_every_key() {
    for section in schema::SECTIONS {
        for key in section.keys {
            let used = COMPLETE_EXAMPLE.lines().any(|line| {
                let line = line.trim_start();
                line.starts_with(&format!("{} =", key.key))
                    || line.starts_with(&format!("[{}]", key.key))
                    || line.starts_with(&format!("[{}.", key.key))
                    || line.contains(&format!("{{ {} =", key.key))
                    || line.contains(&format!(", {} =", key.key))
                    || line.contains(&format!(".{}]", key.key))
                    || line.contains(&format!(".{}.", key.key))
            });
            assert!(
                used,
                "key `{}` of {} is missing from COMPLETE_EXAMPLE",
                key.key, section.header
            );
        }
    }
}

#[test]
fn services_keep_file_order_and_relative_paths_resolve_against_the_file() {
    let src = r#"
[vigil]
state_dir = "state"

[services.zeta]
driver = "command"
restart_command = ["/bin/true"]

[services.alpha]
driver = "command"
restart_command = ["/bin/true"]

[services.alpha.checks.tls]
kind = "http"
url = "https://localhost"
ca_file = "certs/ca.pem"
method = "post"
expect_status = 204
headers = { Zz = "1", Aa = "2" }
max_body = 1000

[services."mid.v2@x"]
driver = "command"
restart_command = ["/bin/true"]
"#;
    let config = parse(src, Path::new("/etc/vigil/vigil.toml")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid.v2@x"]);
    assert_eq!(config.vigil.state_dir, PathBuf::from("/etc/vigil/state"));
    let CheckKind::Http(http) = &config.services[1].checks[0].kind else {
        panic!("not http")
    };
    assert_eq!(http.ca_file, Some(PathBuf::from("/etc/vigil/certs/ca.pem")));
    assert_eq!(http.method, "POST");
    assert_eq!(http.expect_status, StatusSet(vec![(204, 204)]));
    assert_eq!(
        http.headers,
        vec![
            ("Zz".to_owned(), "1".to_owned()),
            ("Aa".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(http.max_body, 1000);
}

#[test]
fn minimal_config_takes_every_default() {
    let src = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n\n[services.web.checks.up]\nkind = \"http\"\nurl = \"http://localhost\"\n";
    let config = parse(src, Path::new("vigil.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.default_guard, GuardPolicy::default());
    assert_eq!(config.vigil.state_dir, vigil_config::default_state_dir());
    assert_eq!(config.vigil.log_format, LogFormat::default());
    assert_eq!(config.vigil.log_level, LogLevel::default());
    let web = &config.services[0];
    assert_eq!(web.guard, GuardPolicy::default());
    let DriverSpec::Command(cmd) = &web.driver else {
        panic!("web uses the command driver")
    };
    assert_eq!(cmd.timeout, secs(60));
    assert_eq!(
        (cmd.start.clone(), cmd.stop.clone(), cmd.status.clone()),
        (None, None, None)
    );
    let check = &web.checks[0];
    assert_eq!(check.thresholds, Thresholds::default());
    assert_eq!(
        (check.every, check.timeout, check.retries),
        (secs(30), secs(10), 1)
    );
    let CheckKind::Http(http) = &check.kind else {
        panic!("not http")
    };
    assert_eq!(http.expect_status, StatusSet::default());
    assert_eq!(http.max_body, 1 << 20);
    assert!(web.schedules.is_empty());
    assert!(web.maintenance.is_empty());
    assert_eq!(web.alerts, AlertRoute::All);
    assert!(config.alerts.is_empty());
}

#[test]
fn complete_example_alert_channels() {
    let config = parse(COMPLETE_EXAMPLE, Path::new("/etc/vigil/vigil.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let cam = config.service("camera").unwrap();
    assert_eq!(
        cam.alerts,
        AlertRoute::Only(
            ["ops-hook", "ops-slack", "ops-mail", "pager"]
                .map(String::from)
                .to_vec()
        )
    );
    let names: Vec<&str> = config.alerts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ops-hook",
            "ops-slack",
            "ops-mail",
            "pager",
            "hook-env",
            "hook-file",
            "slack-file",
            "slack-inline",
            "mail-env",
            "mail-inline"
        ]
    );
    let hook = config.alert_channel("ops-hook").unwrap();
    assert_eq!(
        hook,
        &AlertChannel {
            name: "ops-hook".to_owned(),
            kind: ChannelKind::Webhook(WebhookChannel {
                url: Secret::Inline("https://alerts.example.com/vigil".to_owned()),
                headers: vec![("Authorization".to_owned(), "Bearer hook-token".to_owned())],
                secret: Some(Secret::File(PathBuf::from("/etc/vigil/hook.secret"))),
            }),
            events: [
                AlertEvent::GivenUp,
                AlertEvent::Failing,
                AlertEvent::Recovered,
                AlertEvent::Restarted
            ]
            .into_iter()
            .collect(),
            repeat: secs(3600),
            group_wait: secs(10),
            timeout: secs(10),
            retries: 5,
            retry_delay: secs(2),
            queue_size: 1000,
        }
    );
    // Defaults.
    let slack = config.alert_channel("ops-slack").unwrap();
    assert_eq!(slack.events, EventSet::default_events());
    assert!(!slack.events.contains(AlertEvent::Skipped));
    assert_eq!((slack.repeat, slack.group_wait), (secs(3600), secs(10)));
    assert_eq!(
        slack.kind,
        ChannelKind::Slack(SlackChannel {
            webhook_url: Secret::Env("VIGIL_SLACK_URL".to_owned())
        })
    );
    let ChannelKind::Email(mail) = &config.alert_channel("ops-mail").unwrap().kind else {
        panic!("not email")
    };
    assert_eq!(
        mail,
        &EmailChannel {
            smtp_host: "smtp.example.com".to_owned(),
            smtp_port: 587,
            tls: SmtpTls::StartTls,
            auth: Some((
                "vigil@example.com".to_owned(),
                Secret::File(PathBuf::from("/etc/vigil/smtp.pass"))
            )),
            from: "Vigil <vigil@example.com>".to_owned(),
            to: vec![
                "ops@example.com".to_owned(),
                "oncall@example.com".to_owned()
            ],
            ca_file: Some(PathBuf::from("/etc/vigil/smtp-ca.pem")),
        }
    );
    // The port follows `tls` unless set.
    let port = |name: &str| match &config.alert_channel(name).unwrap().kind {
        ChannelKind::Email(m) => m.smtp_port,
        _ => panic!("not email"),
    };
    assert_eq!((port("mail-env"), port("mail-inline")), (25, 465));
    let pager = config.alert_channel("pager").unwrap();
    assert_eq!(pager.timeout, secs(30));
    assert!(
        matches!(&pager.kind, ChannelKind::Exec(e) if e.command.program() == "/usr/local/bin/page-oncall")
    );
    // Secrets never show in Debug.
    let debug = format!("{config:?}");
    for secret in ["hook-token", "hmac-secret", "smtp-secret", "XXXX"] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug");
    }
}

#[test]
fn empty_file_is_a_valid_config_without_services() {
    let config = parse("", Path::new("vigil.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.services.is_empty());
    assert_eq!(config.default_guard, GuardPolicy::default());
}

#[test]
fn service_guard_inherits_default_backoff_unless_replaced() {
    let src = r#"
[defaults.guard]
cooldown = "1m"
backoff = { initial = "10s", max = "5m", factor = 3 }

[services.a]
driver = "command"
restart_command = ["/bin/true"]
guard = { window = "2h" }
"#;
    let config = parse(src, Path::new("vigil.toml")).unwrap_or_else(|e| panic!("{e}"));
    let g = &config.services[0].guard;
    assert_eq!(g.cooldown, secs(60));
    assert_eq!(g.window, secs(7200));
    assert_eq!(g.max_restarts, 5);
    assert_eq!(
        g.backoff.as_ref().map(|b| (b.initial, b.factor, b.max)),
        Some((secs(10), 3.0, secs(300)))
    );
}

#[test]
fn durations_accept_the_documented_syntax() {
    for (text, expected) in [
        ("250ms", Duration::from_millis(250)),
        ("30s", secs(30)),
        ("5m", secs(300)),
        ("1h 30m", secs(5400)),
        ("2 hours", secs(7200)),
        ("1.5h", secs(5400)),
        ("10 secs", secs(10)),
        ("3 mins", secs(180)),
        ("1hr", secs(3600)),
        ("PT90S", secs(90)),
        ("0", Duration::ZERO),
    ] {
        assert_eq!(vigil_config::parse_duration(text), Ok(expected), "{text}");
    }
}

#[test]
fn load_reads_the_file_and_resolves_paths_against_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.toml");
    std::fs::write(
        &path,
        "[vigil]\nstate_dir = \"state\"\nlog_format = \"json\"\nlog_level = \"debug\"\n",
    )
    .unwrap();
    let config = vigil_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.path, path);
    assert_eq!(config.vigil.state_dir, dir.path().join("state"));
    assert_eq!(config.vigil.log_format, LogFormat::Json);
    assert_eq!(config.vigil.log_level, LogLevel::Debug);
}
