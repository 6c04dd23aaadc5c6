//! `--metrics`: Prometheus text at /metrics, read by the Prometheus
//! project's own parser (`prometheus_client`, in .venv-py, installed by
//! scripts/test.sh), after traffic of every kind it counts.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{fam.type} {s.name}{{{labels}}} {s.value}")
"#;

/// Scrapes `url` and parses it with prometheus_client: `name{labels}` →
/// (type, value).
fn scrape(url: &str) -> BTreeMap<String, (String, f64)> {
    let out = Command::new("curl").args(["-sf", url]).output().unwrap();
    assert!(out.status.success(), "curl {url}");
    let head = Command::new("curl").args(["-sfI", url]).output().unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-py/bin/python");
    let mut p = Command::new(python)
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} (scripts/test.sh makes it): {e}"));
    p.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let parsed = p.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(parsed.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            let (kind, name, value) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            (name.to_string(), (kind.to_string(), value.parse().unwrap()))
        })
        .collect()
}

fn value(m: &BTreeMap<String, (String, f64)>, key: &str) -> f64 {
    m.get(key).unwrap_or_else(|| panic!("no {key} in {m:#?}")).1
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn metrics_count_connections_requests_handoffs_tls_and_deadline_cuts() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--ws",
        "/ws=echo",
        "--ws-workers",
        "1",
        "--setup-timeout",
        "0.5",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let url = h
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("metrics on "))
        .unwrap_or_else(|| panic!("{:?}", h.lines))
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );

    let before = scrape(&url);
    assert_eq!(value(&before, "handoff_connections_open{}"), 0.0);
    assert_eq!(before["handoff_connections_open{}"].0, "gauge");
    assert_eq!(before["handoff_requests_total{class=\"2xx\"}"].0, "counter");

    // Two 2xx, a 404, and a 505 refusal.
    assert_eq!(h.get("/a.txt").status, 200);
    assert_eq!(h.get("/b.txt").status, 200);
    assert_eq!(h.get("/missing").status, 404);
    assert!(
        h.exchange(b"GET / HTTP/9.9\r\n\r\n")
            .starts_with("HTTP/1.1 505")
    );
    // A WebSocket handed to the worker.
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/ws", h.addr)).unwrap();
    ws.send(tungstenite::Message::text("x")).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "x");
    // A TLS handshake (curl), and a TLS session that fails (not TLS after
    // a handshake record's first byte).
    let https = h.addr_of("https");
    let ok = Command::new("curl")
        .args(["-skf", &format!("https://{https}/a.txt")])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let mut bad = TcpStream::connect(https).unwrap();
    bad.write_all(b"\x16\x03\x01\x00\x05hello-not-tls").unwrap();
    let _ = bad.read(&mut [0u8; 64]);
    // A connection that sends nothing is cut at the setup deadline.
    let mut idle = h.connect();
    assert!(closed_within(&mut idle, Duration::from_secs(3)));
    drop(bad);

    let mut m = scrape(&url);
    assert!(
        wait_until(Duration::from_secs(3), || {
            m = scrape(&url);
            value(&m, "handoff_tls_handshake_failures_total{}") >= 1.0
                && value(&m, "handoff_websocket_handoffs_total{}") >= 1.0
                && value(&m, "handoff_connections_open{}") == 0.0
        }),
        "{m:#?}\nlog:\n{}",
        h.log()
    );
    assert_eq!(
        value(&m, "handoff_requests_total{class=\"2xx\"}"),
        3.0,
        "{m:#?}"
    );
    assert_eq!(value(&m, "handoff_requests_total{class=\"4xx\"}"), 1.0);
    assert_eq!(value(&m, "handoff_requests_total{class=\"5xx\"}"), 1.0);
    assert_eq!(
        value(&m, "handoff_requests_total{class=\"none\"}"),
        1.0,
        "the upgrade, handed off"
    );
    assert_eq!(value(&m, "handoff_websocket_handoffs_total{}"), 1.0);
    assert_eq!(value(&m, "handoff_tls_handshakes_total{}"), 1.0);
    assert_eq!(value(&m, "handoff_tls_handshake_failures_total{}"), 1.0);
    assert_eq!(value(&m, "handoff_deadline_cuts_total{kind=\"idle\"}"), 1.0);
    // a.txt and b.txt (6 bytes each, twice a.txt), the 404's and 505's bodies.
    assert!(value(&m, "handoff_response_body_bytes_total{}") > 18.0);
    let accepted = value(
        &m,
        "handoff_connections_accepted_total{source=\"listener\"}",
    );
    assert!(accepted >= 8.0, "{accepted}");
    // The WebSocket left this process; everything else closed.
    assert_eq!(value(&m, "handoff_connections_open{}"), 0.0, "{m:#?}");
    assert_eq!(value(&m, "handoff_connections_opened_total{}"), accepted);
    // A wrong path or method on the metrics port.
    let not = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url.replace("/metrics", "/x"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&not.stdout), "404");
}

#[test]
fn a_metrics_address_in_use_exits_69() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            &taken.local_addr().unwrap().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
