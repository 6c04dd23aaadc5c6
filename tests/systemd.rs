//! The units under a real systemd (252, Debian's), booted in a container
//! with systemd-nspawn (`../shared/systemd-in-a-container.md`; the root is
//! built by `scripts/systemd-root.sh`, which `scripts/test.sh` runs): a
//! restart keeps the listeners in systemd's fd store so no connection
//! attempt is refused, and `systemctl reload` replaces the binary while
//! keep-alive clients keep their connections, systemd following the new
//! main PID. The .deb installed in a clean root and driven with systemctl;
//! its WebSocket worker unit; its xinetd and inetd.conf examples under
//! Debian's xinetd and openbsd-inetd.

mod common;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{children_of, logged, wait_until};

struct Container {
    nspawn: Child,
    init: i32,
    _pkg: tempfile::TempDir,
    /// One container at a time: two booted side by side share the test's
    /// cgroup, and a unit's start in one has failed, now and then, with
    /// `status=219/CGROUP` (its cgroup gone) while another ran. Held until
    /// the container is gone (fields drop after `Drop::drop`).
    _alone: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/systemd-root");
    assert!(
        root.join(".complete").exists(),
        "no systemd root at {}: run scripts/systemd-root.sh (scripts/test.sh does)",
        root.display()
    );
    root
}

/// The units the repository ships, and the settings file.
const SHIPPED: [(&str, &[u8]); 4] = [
    ("handoff.toml", include_bytes!("../packaging/handoff.toml")),
    (
        "handoff.service",
        include_bytes!("../systemd/handoff.service"),
    ),
    (
        "handoff.socket",
        include_bytes!("../systemd/handoff.socket"),
    ),
    (
        "handoff-control.socket",
        include_bytes!("../systemd/handoff-control.socket"),
    ),
];

impl Container {
    /// Boots systemd with our binary as /usr/bin/handoff, a site at
    /// /usr/share/handoff/site, and `files` under /opt/pkg.
    fn boot(files: &[(&str, &[u8])]) -> Container {
        Container::boot_with(files, true)
    }

    /// Boots systemd with `files` under /opt/pkg, and our binary and a
    /// site bound in place if `bind` (else a clean root, for a package).
    fn boot_with(files: &[(&str, &[u8])], bind: bool) -> Container {
        let alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let pkg = tempfile::tempdir().unwrap();
        let site = pkg.path().join("site");
        std::fs::create_dir(&site).unwrap();
        std::fs::write(site.join("a.txt"), "alpha\n").unwrap();
        for (name, data) in files {
            std::fs::write(pkg.path().join(name), data).unwrap();
        }
        let mut nspawn = Command::new("systemd-nspawn");
        nspawn
            .args(["-q", "-D"])
            .arg(root())
            .args([
                "--volatile=overlay",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--console=passive",
            ])
            .arg(format!("--bind-ro={}:/opt/pkg", pkg.path().display()));
        if bind {
            nspawn
                .arg(format!(
                    "--bind-ro={}:/usr/share/handoff/site",
                    site.display()
                ))
                .arg(format!(
                    "--bind-ro={}:/usr/bin/handoff",
                    env!("CARGO_BIN_EXE_handoff")
                ));
        }
        let nspawn = nspawn
            .arg("-b")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("systemd-nspawn (package systemd-container)");
        let mut init = 0;
        assert!(
            wait_until(Duration::from_secs(20), || {
                init = children_of(nspawn.id() as i32)
                    .first()
                    .copied()
                    .unwrap_or(0);
                init != 0 && Path::new(&format!("/proc/{init}/root/run/systemd/private")).exists()
            }),
            "the container's systemd did not start"
        );
        let c = Container {
            nspawn,
            init,
            _pkg: pkg,
            _alone: alone,
        };
        let up = c.sh("systemctl is-system-running --wait");
        assert!(
            up.status.success() || String::from_utf8_lossy(&up.stdout).contains("degraded"),
            "{}",
            text(&up)
        );
        c
    }

    /// Boots with the units the repository ships and `extra` files, every
    /// unit among them installed in /etc/systemd/system, the settings in
    /// /etc/handoff.
    fn boot_installed(extra: &[(&str, &[u8])]) -> Container {
        let files: Vec<(&str, &[u8])> = SHIPPED.iter().chain(extra).copied().collect();
        let c = Container::boot(&files);
        c.ok("cp /opt/pkg/*.service /opt/pkg/*.socket /etc/systemd/system/ && mkdir -p /etc/handoff && cp /opt/pkg/handoff.toml /etc/handoff/ && systemctl daemon-reload");
        c
    }

    /// Boots a clean root with the .deb scripts/package.sh built and
    /// `extra` files under /opt/pkg (the WebSocket client among them),
    /// installs the package with dpkg, and appends `settings` (TOML) to
    /// its /etc/handoff/handoff.toml.
    fn with_package(extra: &[(&str, &[u8])], settings: &str) -> Container {
        let deb = deb();
        let mut files: Vec<(&str, &[u8])> = vec![
            ("handoff.deb", &deb),
            ("ws.py", WS_CLIENT),
            ("settings.toml", settings.as_bytes()),
        ];
        files.extend_from_slice(extra);
        let c = Container::boot_with(&files, false);
        c.ok("dpkg -i /opt/pkg/handoff.deb && cat /opt/pkg/settings.toml >> /etc/handoff/handoff.toml");
        c
    }

    /// Asserts that `url` (curl's syntax, from inside) gives the packaged
    /// site's hello.txt within 5 s (an inetd binds its ports a moment
    /// after it starts).
    fn serves_hello(&self, url: &str) {
        let hello = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/site/hello.txt"))
            .unwrap();
        let mut got = String::new();
        assert!(
            wait_until(Duration::from_secs(5), || {
                got = text(&self.sh(&format!("curl -sfg {url}")));
                got == hello
            }),
            "{url}: {got}\n{}",
            self.journal()
        );
    }

    /// Asserts that the journal holds an access line for hello.txt from
    /// 127.0.0.1 and one from ::1 (an inetd's handoff logs by syslog).
    fn logged_hello_from_v4_and_v6(&self) {
        let log = self.ok("journalctl -q --no-pager -o cat");
        for client in ["127.0.0.1", "::1"] {
            assert!(
                logged(
                    &log,
                    &format!("{client} - - ["),
                    "\"GET /hello.txt HTTP/1.1\" 200"
                ),
                "{client}: {log}"
            );
        }
    }

    /// A WebSocket session to /echo on port 8080 from inside: `text` sent,
    /// what came back printed (tests/systemd/ws.py).
    fn ws_echo(&self, text: &str) -> Output {
        self.sh(&format!(
            "python3 /opt/pkg/ws.py 127.0.0.1 8080 /echo {text}"
        ))
    }

    /// Asserts that each handoff process runs as the package's user, and
    /// that there is one; `holding` a connection to port 8080 open
    /// meanwhile (for inetd's nowait, one process a connection).
    fn runs_as_handoff(&self, holding: bool) {
        let ps = "ps -o user= -C handoff";
        let users = if holding {
            self.ok(&format!(
                "bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080; sleep 0.5; {ps}'"
            ))
        } else {
            self.ok(ps)
        };
        assert!(
            users.lines().count() >= 1 && users.lines().all(|u| u.trim() == "handoff"),
            "{users}"
        );
    }

    /// Runs `cmd` with sh inside the container.
    fn sh(&self, cmd: &str) -> Output {
        self.command(cmd).output().unwrap()
    }

    fn command(&self, cmd: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.init.to_string(), "-m", "-u", "-i", "-n", "-p"])
            .args(["sh", "-c", cmd]);
        c
    }

    fn ok(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        assert!(
            out.status.success(),
            "{cmd}: {}\n{}",
            text(&out),
            self.journal()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn main_pid(&self, unit: &str) -> i32 {
        self.ok(&format!("systemctl show -P MainPID {unit}"))
            .trim()
            .parse()
            .unwrap()
    }

    fn journal(&self) -> String {
        text(&self.sh("journalctl -q --no-pager -o cat | tail -n 60"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.nspawn.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if !wait_until(Duration::from_secs(10), || {
            self.nspawn.try_wait().ok().flatten().is_some()
        }) {
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A unit of our own listener (no socket unit), so that only the fd store
/// keeps its socket across a restart.
const STANDALONE: &str = "[Unit]
Description=handoff, its own listener

[Service]
Type=notify
NotifyAccess=all
# A slow start, so that a restart has a gap worth the name: connection
# attempts in it must wait in the kept socket's backlog, not be refused.
ExecStartPre=/bin/sleep 0.5
ExecStart=/usr/bin/handoff serve --listen 127.0.0.1:8090 --root /usr/share/handoff/site --control /run/handoff-test/control.sock --control-allow-uid 0 --shutdown-timeout 5
ExecReload=+/usr/bin/handoff upgrade --control /run/handoff-test/control.sock
FileDescriptorStoreMax=16
RuntimeDirectory=handoff-test
# The control socket's file must outlive a restart with its socket.
RuntimeDirectoryPreserve=yes
DynamicUser=yes
";

const CLIENTS: &[u8] = include_bytes!("systemd/clients.py");

fn json_count(json: &str, key: &str) -> usize {
    json.split(&format!("\"{key}\": "))
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<usize>()
                .unwrap_or(0)
        })
        .sum()
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, python3, sh, systemd-nspawn"]
fn restart_refuses_no_connection_and_reload_replaces_the_binary_under_keep_alive_clients() {
    let c = Container::boot_installed(&[
        ("handoff-test.service", STANDALONE.as_bytes()),
        ("clients.py", CLIENTS),
    ]);
    c.ok("systemctl start handoff-test.service");
    assert!(
        c.ok("curl -sf http://127.0.0.1:8090/a.txt")
            .contains("alpha")
    );

    // systemctl restart: new connections all the way through.
    let first = c.main_pid("handoff-test.service");
    let clients = c
        .command("python3 /opt/pkg/clients.py new 8090 3")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    c.ok("systemctl restart handoff-test.service");
    let seen = text(&clients.wait_with_output().unwrap());
    let second = c.main_pid("handoff-test.service");
    assert_ne!(first, second);
    assert_eq!(json_count(&seen, "refused"), 0, "{seen}\n{}", c.journal());
    assert_eq!(json_count(&seen, "failed"), 0, "{seen}\n{}", c.journal());
    assert!(json_count(&seen, "ok") > 50, "{seen}");
    assert!(
        c.sh("journalctl -q --no-pager -o cat -u handoff-test.service | grep -q \"listener taken from systemd's fd store\"")
            .status
            .success(),
        "{}",
        c.journal()
    );

    // systemctl reload: the binary is replaced; keep-alive clients keep
    // their connections and systemd follows the new main PID.
    let clients = c
        .command("python3 /opt/pkg/clients.py keepalive 8090 3 4")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    c.ok("systemctl reload handoff-test.service");
    let seen = text(&clients.wait_with_output().unwrap());
    let third = c.main_pid("handoff-test.service");
    assert_ne!(third, second, "{}", c.journal());
    assert_eq!(json_count(&seen, "failed"), 0, "{seen}\n{}", c.journal());
    assert!(json_count(&seen, "ok") > 40, "{seen}");
    for conn in seen.split("\"port_before\": ").skip(1) {
        let before: String = conn.chars().take_while(char::is_ascii_digit).collect();
        let after: String = conn
            .split("\"port_after\": ")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(before, after, "{seen}");
    }
    assert_eq!(
        c.ok("systemctl is-active handoff-test.service").trim(),
        "active"
    );
    assert!(
        c.ok("curl -sf http://127.0.0.1:8090/a.txt")
            .contains("alpha")
    );

    // The shipped units: socket activation, then a reload through their
    // control socket.
    c.ok("systemctl start handoff.socket handoff-control.socket");
    assert!(
        c.ok("curl -sf http://127.0.0.1:8080/a.txt")
            .contains("alpha")
    );
    let before = c.main_pid("handoff.service");
    c.ok("systemctl reload handoff.service");
    let after = c.main_pid("handoff.service");
    assert!(
        before != 0 && after != 0 && before != after,
        "{}",
        c.journal()
    );
    assert!(
        c.ok("curl -sf http://127.0.0.1:8080/a.txt")
            .contains("alpha")
    );
    assert_eq!(c.ok("systemctl is-active handoff.service").trim(), "active");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, sh, systemd-nspawn"]
fn a_broken_configuration_stops_the_shipped_unit_with_78_in_the_journal_and_no_restart_loop() {
    let c = Container::boot_installed(&[]);
    // A root that is not there, in the settings file.
    c.ok("cp /etc/handoff/handoff.toml /root/ && sed -i 's|^root = .*|root = \"/srv/missing\"|' /etc/handoff/handoff.toml");
    let check = c.sh("handoff check --config /etc/handoff/handoff.toml");
    assert_eq!(check.status.code(), Some(78), "{}", text(&check));
    let start = c.sh("systemctl start handoff.service");
    assert!(!start.status.success(), "started with a missing root");
    std::thread::sleep(Duration::from_secs(3));
    let show = c.ok(
        "systemctl show handoff.service -p NRestarts -p Result -p ExecMainStatus -p ActiveState",
    );
    assert!(show.contains("ExecMainStatus=78"), "{show}");
    let journal = c.ok("journalctl -q --no-pager -o cat -u handoff.service");
    assert!(
        journal.contains("root /srv/missing: No such file or directory"),
        "{journal}"
    );
    assert!(show.contains("NRestarts=0"), "{show}\n{journal}");
    assert!(show.contains("ActiveState=failed"), "{show}");
    // The check passes on the shipped configuration, and the service runs.
    c.ok("cp /root/handoff.toml /etc/handoff/ && handoff check --config /etc/handoff/handoff.toml && systemctl reset-failed handoff.service");
    c.ok("systemctl start handoff.service");
    assert_eq!(c.ok("systemctl is-active handoff.service").trim(), "active");
    assert!(
        c.ok("curl -sf http://127.0.0.1:8080/a.txt")
            .contains("alpha")
    );
}

/// The .deb scripts/package.sh built (scripts/test.sh runs it first).
fn deb() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    let found = std::fs::read_dir(&dir)
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no .deb in {}: run scripts/package.sh (scripts/test.sh does)",
                dir.display()
            )
        });
    std::fs::read(found).unwrap()
}

/// The package in a clean Debian root under its real systemd: installed
/// with dpkg, its man page, completions and check; then driven with
/// systemctl as an operator would: socket activation on the first
/// connection, the installed site served, the watchdog killing a stuck
/// process and systemd starting it again, reload, a draining stop, and
/// Accept=yes instances.
#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, openssl, python3, sh, systemd-nspawn"]
fn the_package_installs_in_a_clean_root_and_its_units_work_under_systemd() {
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = common::localhost_cert(tls.path());
    let c = Container::with_package(
        &[
            ("cert.pem", &std::fs::read(&cert).unwrap()),
            ("key.pem", &std::fs::read(&key).unwrap()),
        ],
        "",
    );
    // What the package made: a system user, /run/handoff, a conffile.
    c.ok("getent passwd handoff && test -d /run/handoff && dpkg-query -W -f='${Conffiles}' handoff | grep -q /etc/handoff/handoff.toml");
    let check = c.ok("handoff check --config /etc/handoff/handoff.toml");
    assert!(check.contains("root /usr/share/handoff/site"), "{check}");
    let man = c.ok("MANWIDTH=80 man -P cat handoff");
    assert!(
        man.contains("EXIT STATUS") && man.contains("--access-log-format"),
        "{man}"
    );
    let comp =
        c.ok("bash -c '. /usr/share/bash-completion/completions/handoff && complete -p handoff'");
    assert!(comp.contains("handoff"), "{comp}");
    c.ok("test -s /usr/share/zsh/vendor-completions/_handoff && test -s /usr/share/fish/vendor_completions.d/handoff.fish");
    // Not enabled by the package: the operator enables the socket.
    assert_eq!(
        c.sh("systemctl is-enabled handoff.socket").status.code(),
        Some(1)
    );
    // A short watchdog for this test.
    c.ok("mkdir -p /etc/systemd/system/handoff.service.d && printf '[Service]\nWatchdogSec=2s\n' > /etc/systemd/system/handoff.service.d/watchdog.conf && systemctl daemon-reload");
    c.ok("systemctl enable --now handoff.socket");
    assert_eq!(
        c.sh("systemctl is-active handoff.service").status.code(),
        Some(3),
        "started before any connection"
    );
    let hello = c.ok("curl -sf http://127.0.0.1:8080/hello.txt");
    assert_eq!(
        hello,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/site/hello.txt")).unwrap()
    );
    assert_eq!(c.ok("systemctl is-active handoff.service").trim(), "active");
    let user = c.ok("ps -o user= -p $(systemctl show -P MainPID handoff.service)");
    assert_eq!(user.trim(), "handoff");

    // A stuck process (stopped, so it pings no more) is killed by the
    // watchdog and started again; the socket waits meanwhile.
    let stuck = c.main_pid("handoff.service");
    c.ok(&format!("kill -STOP {stuck}"));
    assert!(
        wait_until(Duration::from_secs(20), || {
            let pid = c.main_pid("handoff.service");
            pid != 0 && pid != stuck && c.sh("systemctl is-active handoff.service").status.success()
        }),
        "{}",
        c.journal()
    );
    let show = c.ok("systemctl show handoff.service -p NRestarts");
    assert_eq!(show.trim(), "NRestarts=1", "{}", c.journal());
    assert!(c.journal().contains("Watchdog timeout"), "{}", c.journal());
    assert!(
        c.ok("curl -sf http://127.0.0.1:8080/hello.txt")
            .contains("handoff")
    );

    // Stop: drained, a clean exit, and the socket still listening (the
    // next connection starts the service again).
    c.ok("systemctl stop handoff.service");
    let show = c.ok("systemctl show handoff.service -p Result -p ExecMainStatus");
    assert!(show.contains("Result=success"), "{show}\n{}", c.journal());
    assert!(c.journal().contains("draining"), "{}", c.journal());
    assert!(
        c.ok("curl -sf http://127.0.0.1:8080/hello.txt")
            .contains("handoff")
    );

    // Reload: the upgrade, a new main PID that serves. (After it the main
    // process is not systemd's child; systemd 252 on cgroup v1 in a
    // container then kills it at once on stop instead of waiting for the
    // drain, so the stop above comes first: see the note in docs/upgrade.md.)
    let before = c.main_pid("handoff.service");
    c.ok("systemctl reload handoff.service");
    let after = c.main_pid("handoff.service");
    assert_ne!(before, after);
    assert!(
        c.ok("curl -sf http://127.0.0.1:8080/hello.txt")
            .contains("handoff")
    );

    // PrivateUsers=yes: the new process too maps root and its own user
    // alone. A peer of any other user reaches the control socket as the
    // overflow uid, and is told so.
    let map = c.ok(&format!("cat /proc/{after}/uid_map"));
    let uid = c.ok("id -u handoff");
    let mapped: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        mapped,
        [vec!["0", "0", "1"], vec![uid.trim(), uid.trim(), "1"]],
        "{map}"
    );
    c.ok("chmod 666 /run/handoff/control.sock");
    let other = c.sh("setpriv --reuid=1234 --regid=1234 --clear-groups handoff upgrade --control /run/handoff/control.sock");
    assert!(!other.status.success());
    assert!(
        text(&other).contains("uid 65534 is not allowed on this control socket (the overflow uid"),
        "{}",
        text(&other)
    );
    c.ok("chmod 600 /run/handoff/control.sock");
    assert_eq!(c.main_pid("handoff.service"), after);

    // The same upgrade by SIGUSR2 to the main process alone, no ExecReload=
    // in between: RELOADING=1, then the new process's MAINPID= and READY=1,
    // and systemd follows it.
    c.ok("systemctl kill --kill-who=main -s USR2 handoff.service");
    let mut now = after;
    assert!(
        wait_until(Duration::from_secs(10), || {
            now = c.main_pid("handoff.service");
            now != after && c.ok("systemctl show -P ActiveState handoff.service").trim() == "active"
        }),
        "{}",
        c.journal()
    );
    assert!(
        c.ok("curl -sf http://127.0.0.1:8080/hello.txt")
            .contains("handoff")
    );
    // Not a restart (the stop above set the count back to 0).
    let show = c.ok("systemctl show handoff.service -p NRestarts -p Result");
    assert!(
        show.contains("NRestarts=0") && show.contains("Result=success"),
        "{show}"
    );

    // Accept=yes: one instance per connection.
    c.ok("systemctl enable --now handoff-accept.socket");
    assert!(
        c.ok("curl -sf http://127.0.0.1:8081/hello.txt")
            .contains("handoff")
    );
    let n: usize = c
        .ok("systemctl show handoff-accept.socket -P NAccepted")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, 1);
    // Its access line in the journal, as the service's.
    let log = c.ok("journalctl -q --no-pager -o cat -u 'handoff-accept@*'");
    assert!(log.contains("\"GET /hello.txt HTTP/1.1\" 200"), "{log}");
    // HTTPS with a key only root may read, given as a credential.
    c.ok("mkdir -p /etc/handoff/tls && cp /opt/pkg/cert.pem /opt/pkg/key.pem /etc/handoff/tls/ && chmod 600 /etc/handoff/tls/key.pem");
    c.ok("printf '[Service]\nLoadCredential=tls.crt:/etc/handoff/tls/cert.pem\nLoadCredential=tls.key:/etc/handoff/tls/key.pem\n' > /etc/systemd/system/handoff.service.d/tls.conf");
    c.ok("printf 'tls-cert = [\"/run/credentials/handoff.service/tls.crt\"]\ntls-key = [\"/run/credentials/handoff.service/tls.key\"]\n' >> /etc/handoff/handoff.toml");
    let r = c.sh("systemctl daemon-reload && systemctl stop handoff.service && systemctl enable --now handoff-https.socket && systemctl start handoff.service");
    assert!(r.status.success(), "{}", c.ok("journalctl -q --no-pager -o cat -u handoff.service -u handoff-https.socket | tail -n 15"));
    let https = c.ok("curl -sf --cacert /opt/pkg/cert.pem --resolve localhost:8443:127.0.0.1 https://localhost:8443/hello.txt");
    assert!(https.contains("handoff"), "{https}");
    assert!(
        c.ok("curl -sf http://127.0.0.1:8080/hello.txt")
            .contains("handoff")
    );

    // The access line, in the journal, in the Combined Log Format.
    let log = c.ok("journalctl -q --no-pager -o cat -u handoff.service");
    assert!(
        log.lines()
            .any(|l| l.starts_with("127.0.0.1 - - [")
                && l.contains("\"GET /hello.txt HTTP/1.1\" 200")),
        "{log}"
    );
}

const WS_CLIENT: &[u8] = include_bytes!("systemd/ws.py");

/// The WebSocket worker on its own socket, as the package ships it:
/// handoff.service hands its upgrades over handoff-ws-worker.socket, whose
/// first connection starts the worker service; the session runs in the
/// worker's process, not the HTTP one's; a restarted worker is reached
/// again without restarting the HTTP service.
#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, python3, sh, systemd-nspawn"]
fn the_service_hands_websocket_upgrades_to_the_standalone_worker_on_its_socket() {
    // The routes of the shipped worker unit (its ExecStart has /echo=echo).
    let c = Container::with_package(
        &[],
        "ws = [\"/echo=echo\"]\nws-workers = 0\nws-worker-socket = [\"/run/handoff/ws-worker.sock\"]\n",
    );
    c.ok("handoff check --config /etc/handoff/handoff.toml");
    c.ok("systemctl enable --now handoff-ws-worker.socket handoff.socket");
    let echo = |text: &str| c.ws_echo(text);
    let first = echo("hello");
    assert!(first.status.success(), "{}\n{}", text(&first), c.journal());
    assert_eq!(String::from_utf8_lossy(&first.stdout), "hello\n");

    // Started by its socket, and the session was its own.
    let worker = c.main_pid("handoff-ws-worker.service");
    let service = c.main_pid("handoff.service");
    assert!(worker != 0 && service != 0 && worker != service);
    let log = c.ok("journalctl -q --no-pager -o cat -u handoff-ws-worker.service");
    assert!(
        log.contains(&format!("websocket /echo=echo worker={worker}")),
        "{log}"
    );
    assert_eq!(c.ok(&format!("ps -o user= -p {worker}")).trim(), "handoff");
    // No worker of the service's own (ws-workers = 0).
    assert_eq!(c.sh(&format!("pgrep -P {service}")).status.code(), Some(1));

    // The worker restarted: the HTTP service links to the new one.
    c.ok("systemctl restart handoff-ws-worker.service");
    let restarted = c.main_pid("handoff-ws-worker.service");
    assert_ne!(restarted, worker);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let again = echo("again");
            again.status.success() && again.stdout == b"again\n"
        }),
        "{}",
        c.journal()
    );
    let log = c.ok("journalctl -q --no-pager -o cat -u handoff-ws-worker.service");
    assert!(
        log.contains(&format!("websocket /echo=echo worker={restarted}")),
        "{log}"
    );
    assert_eq!(c.main_pid("handoff.service"), service);
}

const PER_SOURCE: &[u8] = include_bytes!("systemd/per_source.py");

/// The xinetd examples the package installs, copied into /etc/xinetd.d as
/// they are and run by Debian's xinetd: both modes serve the installed
/// site to IPv4 and IPv6 clients on one socket, as the package's user;
/// the eleventh connection from one address is refused (per_source = 10);
/// the access lines reach the journal through syslog, a v4 client written
/// as v4.
#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, python3, sh, systemd-nspawn"]
fn the_packaged_xinetd_examples_serve_as_the_handoff_user_over_ipv4_and_ipv6() {
    let c = Container::with_package(&[("per_source.py", PER_SOURCE)], "");
    c.ok("cp /usr/share/doc/handoff/examples/xinetd/handoff-nowait /usr/share/doc/handoff/examples/xinetd/handoff-wait /etc/xinetd.d/ && systemctl restart xinetd");
    for port in [8080, 8081] {
        for host in ["127.0.0.1", "[::1]"] {
            c.serves_hello(&format!("http://{host}:{port}/hello.txt"));
        }
    }
    // The wait-mode server stays (until --idle-exit), with any nowait one
    // not yet gone: the package's user, each.
    c.runs_as_handoff(false);

    // per_source = 10: ten held connections from one address, the
    // eleventh closed by xinetd, the first still served.
    let out = c.ok("python3 /opt/pkg/per_source.py 8080 11");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 12, "{out}");
    assert!(lines[..10].iter().all(|l| *l == "open"), "{out}");
    assert_eq!(lines[10], "closed", "{out}");
    assert!(lines[11].starts_with("HTTP/1.1 200 "), "{out}");
    // (Debian's xinetd.conf sets no log_on_failure, so xinetd says nothing.)

    // Access lines by syslog: the v4 client as v4, the v6 one as v6.
    c.logged_hello_from_v4_and_v6();
}

/// The inetd.conf lines the package installs, appended as they are to
/// /etc/inetd.conf and run by openbsd-inetd (Debian's; unpacked beside
/// xinetd, which conflicts with it): one process per connection as the
/// package's user, over IPv4 and IPv6, its access lines through syslog.
#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, python3, sh, systemd-nspawn"]
fn the_packaged_inetd_conf_lines_serve_under_openbsd_inetd() {
    let c = Container::with_package(&[], "");
    c.ok("grep -v '^#' /usr/share/doc/handoff/examples/inetd.conf > /etc/inetd.conf");
    c.ok("systemd-run --unit=openbsd-inetd /opt/openbsd-inetd/usr/sbin/inetd -d /etc/inetd.conf");
    for host in ["127.0.0.1", "[::1]"] {
        c.serves_hello(&format!("http://{host}:8080/hello.txt"));
    }
    // A connection held open: its process runs as the package's user.
    c.runs_as_handoff(true);
    c.logged_hello_from_v4_and_v6();
}

/// The log in a file under the unit's LogsDirectory=, rotated by the
/// package's /etc/logrotate.d/handoff run by logrotate: the next lines, the
/// WebSocket worker's too, go to a new file; the service serves on, as do
/// its workers; the rotated file holds what came before.
#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, python3, sh, systemd-nspawn"]
fn logrotate_rotates_the_log_file_of_the_service_and_its_workers() {
    let c = Container::with_package(
        &[],
        "log-file = \"/var/log/handoff/handoff.log\"\nws = [\"/echo=echo\"]\nws-workers = 1\n",
    );
    c.ok("systemctl enable --now handoff.socket");
    let ws = |said: &str| {
        let out = c.ws_echo(said);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        c.ok("curl -sf http://127.0.0.1:8080/hello.txt")
            .contains("handoff")
    );
    assert_eq!(ws("before"), "before\n");
    let file = "/var/log/handoff/handoff.log";
    let has = |path: &str, what: &str| c.sh(&format!("grep -q '{what}' {path}")).status.success();
    assert!(
        wait_until(Duration::from_secs(5), || has(
            file,
            "GET /echo HTTP/1.1\" 101"
        )),
        "{}",
        c.ok(&format!("cat {file}"))
    );
    let owner = c.ok(&format!("stat -c %U {file}"));
    assert_eq!(owner.trim(), "handoff");
    let pid = c.main_pid("handoff.service");
    let worker = c.ok(&format!("pgrep -P {pid}"));

    c.ok("logrotate -f /etc/logrotate.d/handoff");
    // Served before the signal is handled, a request would still be logged
    // in the old file; the service says when it has opened the new one.
    assert!(
        wait_until(Duration::from_secs(5), || has(
            file,
            "the log file is opened again"
        )),
        "{}",
        c.ok(&format!("ls -l /var/log/handoff; cat {file}"))
    );
    assert!(
        c.ok("curl -s http://127.0.0.1:8080/b.txt -o /dev/null -w '%{http_code}'")
            .contains("404")
    );
    assert_eq!(ws("after"), "after\n");
    // The worker's own line: it opened the new file too.
    assert!(
        wait_until(Duration::from_secs(5), || has(file, "GET /b.txt")
            && has(file, "GET /echo HTTP/1.1\" 101")
            && has(file, "websocket /echo=echo worker=")),
        "{}",
        c.ok(&format!("ls -l /var/log/handoff; cat {file}"))
    );
    let old = format!("{file}.1");
    assert!(has(&old, "GET /hello.txt") && !has(&old, "GET /b.txt"));
    // The same process, not a restart; its worker not killed either.
    assert_eq!(c.main_pid("handoff.service"), pid);
    assert_eq!(c.ok(&format!("pgrep -P {pid}")), worker);
    assert!(!has(file, "died"), "{}", c.ok(&format!("cat {file}")));
}

/// An inetd-only host: a Debian root with no systemd at all
/// (`.cache/inetd-root`, made by scripts/systemd-root.sh). The .deb installs
/// with `dpkg -i` to the end (its user made with useradd, as postinst says;
/// cargo-deb's generated systemd-sysusers call once stopped it
/// half-configured with exit 127) and the packaged xinetd examples serve.
#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, sh, systemd-nspawn"]
fn the_deb_installs_where_there_is_no_systemd_and_serves_from_xinetd() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/inetd-root");
    assert!(
        root.join(".complete").exists(),
        "no root at {}: run scripts/systemd-root.sh (scripts/test.sh does)",
        root.display()
    );
    let pkg = tempfile::tempdir().unwrap();
    std::fs::write(pkg.path().join("handoff.deb"), deb()).unwrap();
    let script = r#"
set -eu
if command -v systemd-sysusers || command -v systemctl; then echo "systemd is here"; exit 1; fi
dpkg -i /opt/pkg/handoff.deb
echo "status: $(dpkg-query -W -f='${Status}' handoff)"
echo "user: $(getent passwd handoff | cut -d: -f1,7)"
cp /usr/share/doc/handoff/examples/xinetd/handoff-nowait /usr/share/doc/handoff/examples/xinetd/handoff-wait /etc/xinetd.d/
xinetd -stayalive -pidfile /run/xinetd.pid
i=0
until curl -sf http://127.0.0.1:8080/hello.txt >/dev/null; do
    i=$((i + 1)); [ $i -lt 50 ] || { echo "xinetd never served"; exit 1; }; sleep 0.1
done
echo "nowait v4: $(curl -sf http://127.0.0.1:8080/hello.txt)"
echo "wait v6: $(curl -sfg 'http://[::1]:8081/hello.txt')"
echo "users: $(ps -o user= -C handoff | sort -u | tr '\n' ' ')"
"#;
    let out = Command::new("systemd-nspawn")
        .args(["-q", "-D"])
        .arg(&root)
        .args([
            "--volatile=overlay",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--console=pipe",
        ])
        .arg(format!("--bind-ro={}:/opt/pkg", pkg.path().display()))
        .args(["/bin/sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("systemd-nspawn (package systemd-container)");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let hello =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/site/hello.txt")).unwrap();
    for line in [
        "status: install ok installed".to_string(),
        "user: handoff:/usr/sbin/nologin".to_string(),
        format!("nowait v4: {}", hello.trim_end()),
        format!("wait v6: {}", hello.trim_end()),
        "users: handoff ".to_string(),
    ] {
        assert!(said.lines().any(|l| l == line), "{line:?} not in:\n{said}");
    }
}

/// An app process of our example's, started by its own socket unit.
const APP_SOCKET: &[u8] = b"[Unit]
Description=an app behind handoff --app

[Socket]
ListenSequentialPacket=/run/app.sock
SocketMode=0666

[Install]
WantedBy=sockets.target
";
const APP_SERVICE: &[u8] = b"[Unit]
Description=an app behind handoff --app
Requires=app.socket

[Service]
ExecStart=/usr/local/bin/app_worker
DynamicUser=yes
";

#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, sh, systemd-nspawn"]
fn an_app_started_by_its_own_socket_unit_answers_on_the_clients_socket() {
    let app = std::path::Path::new(env!("CARGO_BIN_EXE_handoff"))
        .parent()
        .unwrap()
        .join("examples/app_worker");
    let app = std::fs::read(&app).expect("examples/app_worker, built by cargo test");
    let c = Container::boot_installed(&[
        ("app.socket", APP_SOCKET),
        ("app.service", APP_SERVICE),
        ("app_worker", &app),
    ]);
    c.ok("install -m 0755 /opt/pkg/app_worker /usr/local/bin/app_worker");
    c.ok("echo 'app = [\"/api=unix:/run/app.sock\"]' >> /etc/handoff/handoff.toml");
    c.ok("handoff check --config /etc/handoff/handoff.toml");
    c.ok("systemctl enable --now app.socket handoff.socket");
    // One keep-alive connection (curl's), alternating the app and a file.
    let urls: String = (0..20)
        .map(|i| format!(" http://127.0.0.1:8080/api/{i} http://127.0.0.1:8080/a.txt"))
        .collect();
    let mut said = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            said = text(&c.sh(&format!("curl -sfi{urls}")));
            said.matches("answered by app").count() == 20
        }),
        "{said}\n{}",
        c.journal()
    );
    assert_eq!(said.matches("alpha\n").count(), 20, "{said}");
    // The app that answered is the one its socket started, as its own user.
    let app_pid = c.main_pid("app.service");
    assert!(app_pid != 0 && app_pid != c.main_pid("handoff.service"));
    assert_eq!(
        said.matches(&format!("X-App-Pid: {app_pid}\r\n")).count(),
        20,
        "{said}"
    );
    assert!(!c.ok(&format!("ps -o user= -p {app_pid}")).trim().is_empty());
    // Restarted, the app is reached again by the same HTTP process.
    let service = c.main_pid("handoff.service");
    c.ok("systemctl restart app.service");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let again = text(&c.sh("curl -sfi http://127.0.0.1:8080/api/again"));
            again.contains("answered by app")
                && !again.contains(&format!("X-App-Pid: {app_pid}\r\n"))
        }),
        "{}",
        c.journal()
    );
    assert_eq!(c.main_pid("handoff.service"), service);
}

/// The several-instances layout (docs/bus.md): the template units, the
/// HAProxy configuration and a broadcast client.
const INSTANCES: [(&str, &[u8]); 6] = [
    (
        "handoff@.service",
        include_bytes!("../systemd/handoff@.service"),
    ),
    (
        "handoff@.socket",
        include_bytes!("../systemd/handoff@.socket"),
    ),
    (
        "handoff-control@.socket",
        include_bytes!("../systemd/handoff-control@.socket"),
    ),
    (
        "haproxy-instances.cfg",
        include_bytes!("../packaging/haproxy-instances.cfg"),
    ),
    ("chat.py", include_bytes!("systemd/chat.py")),
    ("ws.py", WS_CLIENT),
];

#[test]
#[ignore = "full tier (scripts/test.sh): needs nsenter, sh, systemd-nspawn"]
fn three_instances_of_the_template_units_behind_haproxy_share_a_broadcast_through_redis_while_one_reloads()
 {
    let c = Container::boot_installed(&INSTANCES);
    // Debian's redis-server, as its package starts it.
    assert!(
        wait_until(Duration::from_secs(10), || c
            .sh("redis-cli ping")
            .stdout
            .starts_with(b"PONG")),
        "{}",
        c.journal()
    );
    c.ok("echo 'ws = [\"/chat=broadcast,bus=redis://127.0.0.1:6379/\"]' >> /etc/handoff/handoff.toml");
    for p in 8081..=8083 {
        c.ok(&format!(
            "echo HANDOFF_METRICS=127.0.0.1:1{p} > /etc/default/handoff@{p}"
        ));
    }
    c.ok("handoff check --config /etc/handoff/handoff.toml");
    c.ok("systemctl enable --now handoff@8081.service handoff@8082.service handoff@8083.service");
    c.ok("cp /opt/pkg/haproxy-instances.cfg /etc/haproxy/haproxy.cfg && systemctl restart haproxy");
    // All three up in HAProxy's eyes: nine requests, three to each.
    assert!(
        wait_until(Duration::from_secs(15), || {
            c.sh("for i in 1 2 3 4 5 6 7 8 9; do curl -sf http://127.0.0.1:8080/a.txt || exit 1; done")
                .status
                .success()
                && (8081..=8083).all(|p| {
                    c.sh(&format!(
                        "journalctl -q --no-pager -o cat -u handoff@{p}.service | grep -q '^127.0.0.1 .*GET /a.txt'"
                    ))
                    .status
                    .success()
                })
        }),
        "{}",
        c.journal()
    );
    // Six clients spread over the three: every message to every client once,
    // in one order.
    let said = c.ok("python3 /opt/pkg/chat.py 127.0.0.1 8080 /chat 6 20 0.01");
    assert_eq!(said.trim(), "ok 120", "{}", c.journal());

    // The same while one instance replaces its binary (systemctl reload).
    let before = c.main_pid("handoff@8082.service");
    let chat = c
        .command("python3 /opt/pkg/chat.py 127.0.0.1 8080 /chat 6 150 0.02")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    c.ok("systemctl reload handoff@8082.service");
    let said = text(&chat.wait_with_output().unwrap());
    assert!(said.contains("ok 900"), "{said}\n{}", c.journal());
    let after = c.main_pid("handoff@8082.service");
    assert!(after != 0 && after != before, "{}", c.journal());
    assert_eq!(
        c.ok("systemctl is-active handoff@8081 handoff@8082 handoff@8083")
            .lines()
            .filter(|l| *l == "active")
            .count(),
        3
    );
}
