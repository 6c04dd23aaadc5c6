//! What an operator meets first: `handoff check`, the exit statuses a unit
//! acts on, the man page and the shell completions (both made from the
//! same clap definitions as `--help`, so they cannot drift from it).

mod common;
use common::*;
use std::process::{Command, Output};

fn handoff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_passes_a_good_configuration_and_exits_78_with_the_reason_for_a_broken_one() {
    let site = site();
    let root = root_arg(site.path());
    let ok = handoff(&["check", "--root", &root]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("configuration ok"), "{}", text(&ok));

    let missing = handoff(&["check", "--root", "/nonexistent/site"]);
    assert_eq!(missing.status.code(), Some(78), "{}", text(&missing));
    assert!(text(&missing).contains("root /nonexistent/site: No such file or directory"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let bad = bad.to_str().unwrap();
    let cert = handoff(&[
        "check",
        "--root",
        &root,
        "--tls-cert",
        bad,
        "--tls-key",
        bad,
    ]);
    assert_eq!(cert.status.code(), Some(78), "{}", text(&cert));
    assert!(text(&cert).contains("bad.pem"), "{}", text(&cert));

    let unpaired = handoff(&["check", "--root", &root, "--tls-cert", bad]);
    assert_eq!(unpaired.status.code(), Some(78));
    assert!(text(&unpaired).contains("--tls-cert and --tls-key come in pairs"));

    let log = handoff(&[
        "check",
        "--root",
        &root,
        "--log-file",
        "/nonexistent/dir/log",
    ]);
    assert_eq!(log.status.code(), Some(78), "{}", text(&log));
    // A command line clap refuses is 2, as ever.
    assert_eq!(handoff(&["check", "--no-such-flag"]).status.code(), Some(2));
}

#[test]
fn serve_exits_78_on_a_broken_configuration_and_69_when_its_address_is_taken() {
    let broken = handoff(&["serve", "--root", "/nonexistent/site"]);
    assert_eq!(broken.status.code(), Some(78), "{}", text(&broken));
    let site = site();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = handoff(&["serve", "--root", &root_arg(site.path()), "--listen", &addr]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(text(&o).contains("Address already in use"), "{}", text(&o));
}

/// Every long option `serve --help` lists.
fn serve_options() -> Vec<String> {
    let help = text(&handoff(&["serve", "--help"]));
    let mut opts: Vec<String> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .split(['=', '<', '['])
                .next()
                .unwrap()
                .to_string()
        })
        .filter(|w| w.len() > 2)
        .collect();
    opts.sort();
    opts.dedup();
    assert!(opts.len() > 30, "{opts:?}");
    opts
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs man"]
fn the_man_page_renders_with_man_and_names_every_option_and_exit_status() {
    let page = handoff(&["man"]);
    assert!(page.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handoff.1");
    std::fs::write(&file, &page.stdout).unwrap();
    let out = Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "200")
        .env("LC_ALL", "C")
        .env("MANPAGER", "cat")
        .output()
        .expect("man (package man-db)");
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8_lossy(&out.stdout);
    for opt in serve_options() {
        assert!(rendered.contains(&opt), "{opt} is not in the man page");
    }
    for s in [
        "EXIT STATUS",
        "78",
        "69",
        "SIGUSR2",
        "SIGHUP",
        "check",
        "upgrade",
    ] {
        assert!(rendered.contains(s), "{s} is not in the man page");
    }
}

/// A shell in a process group of its own: an interactive shell's job
/// control signals its group, and stopping and continuing this test process
/// makes a socket read of a concurrent test fail with EINTR (signal(7)).
fn shell(name: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(name);
    c.process_group(0);
    c
}

fn completions(shell: &str) -> tempfile::NamedTempFile {
    let o = handoff(&["completions", shell]);
    assert!(o.status.success(), "{}", text(&o));
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &o.stdout).unwrap();
    f
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs bash, fish, zsh"]
fn completions_load_in_bash_zsh_and_fish_and_offer_serve_options() {
    let bash = completions("bash");
    let o = shell("bash")
        .arg("-c")
        .arg(format!(
            "source {}; complete -p handoff && COMP_WORDS=(handoff --ro); COMP_CWORD=1; _handoff handoff --ro handoff; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.path().display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--root"), "{}", text(&o));

    let zsh = completions("zsh");
    let o = shell("zsh")
        .args(["-f", "-c"])
        .arg(format!(
            "autoload -U compinit && compinit -u -D && source {} && whence -w _handoff",
            zsh.path().display()
        ))
        .output()
        .expect("zsh (package zsh)");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("_handoff: function"), "{}", text(&o));

    let fish = completions("fish");
    let o = shell("fish")
        .arg("-c")
        .arg(format!(
            "source {}; complete -C'handoff --ro'",
            fish.path().display()
        ))
        .output()
        .expect("fish (package fish)");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--root"), "{}", text(&o));
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A settings file sets what the flags set (a list among them); a flag and
/// a `HANDOFF_*` variable each win over it.
#[test]
fn a_settings_file_sets_what_flags_set_and_flags_and_variables_win_over_it() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handoff.toml");
    std::fs::write(
        &file,
        format!(
            "root = {:?}\nmax-body = 3\nws = [\"/ws=echo\", \"/b=broadcast\"]\nws-workers = 1\n",
            site.path().to_str().unwrap()
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let post = b"POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789";

    let h = Handoff::start(&["--config", file]);
    assert_eq!(h.get("/a.txt").text(), "alpha\n");
    assert_eq!(
        status_of(&h.exchange(post)),
        413,
        "max-body = 3 from the file"
    );
    assert_eq!(h.get("/b").status, 426, "the second route of the list");
    drop(h);

    let h = Handoff::start_env(&[("HANDOFF_MAX_BODY", "100")], &["--config", file]);
    assert_eq!(status_of(&h.exchange(post)), 426, "the variable wins");
    drop(h);

    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("a.txt"), "other").unwrap();
    let h = Handoff::start(&["--config", file, "--root", &root_arg(other.path())]);
    assert_eq!(h.get("/a.txt").text(), "other", "the flag wins");
    assert_eq!(
        status_of(&h.exchange(post)),
        413,
        "the rest still from the file"
    );
}

#[test]
fn check_refuses_a_broken_settings_file_with_78_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("rot = \"/srv\"\n", "unknown setting `rot`"),
        (
            "max-body = \"lots\"\n",
            "invalid value 'lots' for '--max-body",
        ),
        ("root = \"/srv\n", "line 1"),
        ("listen = { a = 1 }\n", "`listen`"),
        ("root = \"/nonexistent/site\"\n", "root /nonexistent/site"),
    ];
    for (i, (toml, says)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("{i}.toml"));
        std::fs::write(&file, toml).unwrap();
        let out = handoff(&["check", "--config", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(78), "{toml}: {}", text(&out));
        assert!(text(&out).contains(says), "{toml}: {}", text(&out));
    }
    let out = handoff(&["check", "--config", "/nonexistent/handoff.toml"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent/handoff.toml: No such file"));
    // The same from the variable, as a unit's Environment= would give it.
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .arg("check")
        .env("HANDOFF_CONFIG", dir.path().join("0.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
}

/// The file shipped as /etc/handoff/handoff.toml is one `check` accepts.
#[test]
fn the_shipped_settings_file_passes_check() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/handoff.toml");
    let site = concat!(env!("CARGO_MANIFEST_DIR"), "/site");
    let out = handoff(&["check", "--config", file, "--root", site]);
    assert!(out.status.success(), "{}", text(&out));
}

/// What `serve` wrote on stderr, line by line.
fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_busy_port_is_one_message_before_anything_has_started() {
    let site = site();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = handoff(&[
        "serve",
        "--root",
        &root_arg(site.path()),
        "--listen",
        &addr,
        "--ws",
        "/echo=echo",
    ]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let lines = stderr_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("handoff: bind "), "{lines:?}");
    assert!(lines[0].contains(&addr) && lines[0].contains("Address already in use"));
    assert!(o.stdout.is_empty(), "{}", text(&o));
}

#[test]
fn a_wrong_root_is_one_message_that_names_the_path_once() {
    for (root, why) in [
        ("/nonexistent/site", "No such file or directory"),
        ("/etc/hostname", "not a folder"),
    ] {
        let o = handoff(&["serve", "--root", root]);
        assert_eq!(o.status.code(), Some(78), "{}", text(&o));
        let lines = stderr_lines(&o);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("handoff: root {root}: {why}")),
            "{lines:?}"
        );
        assert_eq!(lines[0].matches(root).count(), 1, "{lines:?}");
    }
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl"]
fn a_missing_certificate_or_key_names_its_option_and_file() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, _) = localhost_cert(dir.path());
    let ok_cert = cert_file.to_str().unwrap().to_string();
    let root = root_arg(site.path());
    for (cert, key, says) in [
        (
            "/nope/cert.pem",
            ok_cert.as_str(),
            "--tls-cert /nope/cert.pem: the TLS certificate: No such file or directory",
        ),
        (
            ok_cert.as_str(),
            "/nope/key.pem",
            "--tls-key /nope/key.pem: the TLS private key: No such file or directory",
        ),
    ] {
        let o = handoff(&[
            "serve",
            "--root",
            &root,
            "--listen",
            "127.0.0.1:0,tls=on",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ]);
        assert_eq!(o.status.code(), Some(78), "{}", text(&o));
        let lines = stderr_lines(&o);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(says), "{lines:?}");
        assert!(!lines[0].contains("I/O error"), "{lines:?}");
    }
}

#[test]
fn a_port_option_from_other_servers_points_at_listen() {
    for args in [
        &["serve", "--port", "8080"][..],
        &["--port=8080"],
        &["-p", "8080"],
    ] {
        let o = handoff(args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains("--listen 127.0.0.1:8080"),
            "{args:?}: {}",
            text(&o)
        );
    }
}

#[test]
fn a_settings_key_spelled_as_the_readme_does_is_taken_and_a_near_miss_gets_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let site = site();
    let file = dir.path().join("h.toml");
    std::fs::write(
        &file,
        format!(
            "max_body = 5\nroot = \"{}\"\nws = [\"/w=echo\"]\n",
            root_arg(site.path())
        ),
    )
    .unwrap();
    let h = Handoff::start(&["--config", file.to_str().unwrap()]);
    // A WebSocket route buffers a body (a file drops it unread).
    let mut s = h.connect();
    std::io::Write::write_all(
        &mut s,
        b"POST /w HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n123456",
    )
    .unwrap();
    let status = read_response(&mut s).unwrap().status;
    assert_eq!(status, 413, "max_body = 5 was taken");
    let mut s = h.connect();
    std::io::Write::write_all(
        &mut s,
        b"POST /w HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n12345",
    )
    .unwrap();
    assert_ne!(read_response(&mut s).unwrap().status, 413);
    std::fs::write(&file, "max-bdy = 5\n").unwrap();
    let o = handoff(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(
        text(&o).contains("did you mean `max-body`?"),
        "{}",
        text(&o)
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs bash"]
fn man_and_completions_into_a_pipe_closed_early_end_quietly() {
    for cmd in [
        "handoff man | head -n 1",
        "handoff completions bash | head -n 1",
    ] {
        let o = Command::new("bash")
            .args(["-o", "pipefail", "-c", cmd])
            .env(
                "PATH",
                format!(
                    "{}:/usr/bin:/bin",
                    std::path::Path::new(env!("CARGO_BIN_EXE_handoff"))
                        .parent()
                        .unwrap()
                        .display()
                ),
            )
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {}", text(&o));
        assert!(o.stderr.is_empty(), "{cmd}: {}", text(&o));
    }
}

/// Under `set -o pipefail` a pipe into a reader that stops early (`head`,
/// `grep -q`, `grep -m`, `grep -l`) fails the script with 141 whenever the
/// writer is still writing when the reader exits: a race, which CI lost once
/// on `rpm -qlp | grep -qx`. The scripts capture first or use a reader that
/// reads to the end.
#[test]
fn no_script_pipes_into_a_reader_that_stops_early() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scripts: Vec<_> = std::fs::read_dir(repo.join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.push(repo.join(".ci/run"));
    assert!(scripts.len() > 5, "{scripts:?}");
    let mut found = Vec::new();
    for path in &scripts {
        let source = std::fs::read_to_string(path).unwrap();
        for (n, line) in source.lines().enumerate() {
            if stops_early_after_a_pipe(line) {
                found.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Whether some `|` (not `||`) in the line feeds `head` or a `grep` told to
/// stop at a match.
fn stops_early_after_a_pipe(line: &str) -> bool {
    let bytes = line.as_bytes();
    (0..bytes.len())
        .filter(|&i| {
            bytes[i] == b'|' && bytes.get(i + 1) != Some(&b'|') && (i == 0 || bytes[i - 1] != b'|')
        })
        .any(|i| {
            // This stage of the pipe: up to the next `|`, `;`, `&` or `>`.
            let stage = line[i + 1..]
                .split(['|', ';', '&', '>'])
                .next()
                .unwrap_or("");
            let mut words = stage.split_whitespace();
            match words.next() {
                Some("head") => true,
                Some("grep") => words.filter(|w| w.starts_with('-')).any(|w| {
                    matches!(w, "--quiet" | "--silent" | "--files-with-matches")
                        || w.starts_with("--max-count")
                        || (!w.starts_with("--") && w[1..].contains(['q', 'm', 'l']))
                }),
                _ => false,
            }
        })
}

#[test]
fn the_early_stop_check_knows_the_shapes_it_forbids_and_allows() {
    for bad in [
        "rpm -qlp x.rpm | grep -qx /usr/bin/handoff",
        "a | grep -v s | head -n 1 | awk '{print $2}'",
        "a |grep -m 1 x",
        "a | grep -E x --quiet",
        "a | grep -i -l x",
    ] {
        assert!(stops_early_after_a_pipe(bad), "{bad}");
    }
    for good in [
        "grep -qx /usr/bin/handoff <<<\"$files\"",
        "a || grep -q x",
        "a | grep -v x | sed -n 1p",
        "awk '/^(summary|totals):/ { print $2; exit }' f",
        "grep -m 20 x file >&2",
        "a | grep x | sort -m",
    ] {
        assert!(!stops_early_after_a_pipe(good), "{good}");
    }
}
