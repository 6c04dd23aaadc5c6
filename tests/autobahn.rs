//! Autobahn|Testsuite's cases, sections 1 to 10 (there is no section 8),
//! and 12 and 13 (permessage-deflate, with `--ws-deflate`), against
//! `handoff serve` with echo workers, through the handoff path. The cases
//! run under kosoku (PyPI), which drives Autobahn's own case files on
//! Python 3; its report is Autobahn's `index.json`, and every case's
//! verdict there is asserted: each must end OK, NON-STRICT or
//! INFORMATIONAL. kosoku speaks no TLS, so for `wss://` a real HAProxy
//! takes its plain connection and opens TLS to our listener.

mod common;
use common::*;

use std::net::SocketAddr;
use std::process::Command;

#[test]
#[ignore = "full tier (scripts/test.sh): needs python3, .venv-py"]
fn passes_autobahn_sections_1_to_10_over_the_handoff_path() {
    let h = echo_server(&[]);
    run(h.addr, SECTIONS);
}

/// Sections 12 and 13: 216 cases of 1,000 compressed messages each, 16
/// bytes to 128 KiB, fragmented or not, under every offer Autobahn makes
/// (server windows of 9 and 15 bits, no context takeover asked or not).
#[test]
#[ignore = "full tier (scripts/test.sh): needs python3, .venv-py"]
fn passes_autobahn_sections_12_and_13_with_permessage_deflate() {
    let h = echo_server(&["--ws-deflate"]);
    run(h.addr, &["12", "13"]);
    assert!(
        h.log().matches("\"GET /echo HTTP/1.1\" 101").count() >= 216,
        "{}",
        h.log()
    );
}

/// Sections 1 to 10 (there is no section 8).
const SECTIONS: &[&str] = &["1", "2", "3", "4", "5", "6", "7", "9", "10"];

#[test]
#[ignore = "full tier (scripts/test.sh): needs haproxy, python3, .venv-py"]
fn passes_autobahn_sections_1_to_10_over_wss_through_the_tls_relay() {
    let h = echo_server(&["--listen", "127.0.0.1:0,tls=on"]);
    let tls = h.addr_of("https");
    let front = free_port();
    // TLS from HAProxy to us (verify none: the certificate is the
    // self-signed one the server made); ALPN http/1.1 as a browser's wss.
    let ha = haproxy(&format!(
        "global
    log stderr format raw local0
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend plain
    bind 127.0.0.1:{front}
    default_backend to_tls
backend to_tls
    server h {tls} ssl verify none sni str(localhost) alpn http/1.1
"
    ));
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", front)).is_ok()
        }),
        "haproxy did not start: {}",
        ha.said()
    );
    run(SocketAddr::from(([127, 0, 0, 1], front)), SECTIONS);
    // Every case really went through TLS: the TLS listener took them.
    assert!(
        h.log().matches("\"GET /echo HTTP/1.1\" 101").count() >= 300,
        "{}",
        h.log()
    );
}

fn echo_server(extra: &[&str]) -> Handoff {
    let mut args = vec!["--ws", "/echo=echo", "--ws-workers", "2"];
    args.extend_from_slice(extra);
    // The site folder may go: a WebSocket route needs no file.
    serve_site(&args).0
}

fn run(addr: SocketAddr, sections: &[&str]) {
    let kosoku = venv_tool("KOSOKU", "kosoku");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&kosoku);
    cmd.arg(format!("ws://{addr}/echo"));
    for section in sections {
        cmd.args(["-i", &format!("{section}.*")]);
    }
    let out = cmd
        .args(["-p", "4", "-o"])
        .arg(dir.path().join("reports"))
        .output()
        .expect("run kosoku");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Its exit status says whether any case failed; the verdicts below say
    // which, from the report.
    let summary = Command::new("python3")
        .args([
            "-c",
            r#"
import json, sys
index = json.load(open(sys.argv[1]))
(cases,) = index.values()
good = ("OK", "NON-STRICT", "INFORMATIONAL")
bad = sorted((k, v["behavior"], v["behaviorClose"]) for k, v in cases.items() if v["behavior"] not in good or v["behaviorClose"] not in good)
print(len(cases), len(bad))
for b in bad: print(*b)
"#,
            dir.path().join("reports/index.json").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&summary.stdout).into_owned();
    let mut lines = text.lines();
    let counts: Vec<usize> = lines
        .next()
        .unwrap_or_else(|| panic!("no report: {said}"))
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    // 1-10: 301 cases; 12 and 13: 216.
    let least = if sections.contains(&"12") { 216 } else { 300 };
    assert!(counts[0] >= least, "only {} cases ran: {said}", counts[0]);
    assert_eq!(
        counts[1],
        0,
        "cases that did not pass:\n{}\n{said}",
        lines.collect::<Vec<_>>().join("\n")
    );
    assert!(out.status.success(), "kosoku failed: {said}");
}
