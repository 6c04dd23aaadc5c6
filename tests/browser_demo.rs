//! The demo page in a real browser: Debian's Chromium, driven headless by
//! Python's playwright (its wheel carries its own driver, so Debian 12's
//! Node.js 18, which playwright-core refuses, plays no part), opens a
//! WebSocket to /echo through the handoff path and shows the echoed text.

mod common;
use common::*;

use std::process::Command;

/// The demo site served with the echo route (and `extra`).
fn demo(extra: &[&str]) -> Handoff {
    let site = format!("{}/site", env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["--root", site.as_str(), "--ws", "/echo=echo"];
    args.extend_from_slice(extra);
    Handoff::start(&args)
}

/// Runs the browser driver on `base` (it saves a screenshot to `shot`):
/// its output, once it has seen the echo.
fn chromium(base: &str, shot: &std::path::Path) -> String {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let python = venv_tool("BROWSER_PYTHON", "python");
    let out = Command::new(python)
        .arg(format!("{manifest}/tests/browser/echo.py"))
        .arg(base)
        .arg(shot)
        .output()
        .expect("run the browser driver");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("echoed: echo from chromium"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs python3, .venv-py"]
fn the_demo_page_shows_the_echo_in_headless_chromium() {
    let h = demo(&[]);
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("ws.png");
    let stdout = chromium(&format!("http://{}", h.addr), &shot);
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 1000,
        "no screenshot"
    );
    if let Ok(keep) = std::env::var("KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    assert!(stdout.contains("protocol: http/1.1"), "{stdout}");
    assert!(h.log().contains("\"GET /echo HTTP/1.1\" 101 -"));
}

/// Over HTTPS Chromium loads the page over HTTP/2 (ALPN h2) and opens the
/// page's WebSocket on an HTTP/1.1 connection of its own (no RFC 8441
/// extended CONNECT is offered), which is handed to a worker as ever.
#[test]
#[ignore = "full tier (scripts/test.sh): needs python3, .venv-py"]
fn chromium_loads_the_demo_page_over_h2_and_its_websocket_over_http11() {
    // With permessage-deflate: Chromium offers it, so the echo goes
    // compressed both ways.
    let h = demo(&["--listen", "127.0.0.1:0,tls=on", "--ws-deflate"]);
    let dir = tempfile::tempdir().unwrap();
    let https = h.addr_of("https");
    let stdout = chromium(
        &format!("https://localhost:{}", https.port()),
        &dir.path().join("ws.png"),
    );
    assert!(stdout.contains("protocol: h2"), "{stdout}");
    let log = h.log();
    assert!(log.contains("\"GET /ws.html HTTP/2.0\" 200"), "{log}");
    assert!(log.contains("\"GET /echo HTTP/1.1\" 101 -"), "{log}");
}

/// Chromium aborts a WebSocket whose server does not answer one of the
/// subprotocols the page offered; a route with `protocols=` answers the
/// first of the page's offers it speaks.
#[test]
#[ignore = "full tier (scripts/test.sh): needs python3, .venv-py"]
fn chromium_gets_the_subprotocol_a_route_speaks_and_fails_where_none_is_answered() {
    let h = demo(&[
        "--ws",
        "/chat=echo,protocols=chat|superchat",
        "--ws-deflate",
    ]);
    let manifest = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(venv_tool("BROWSER_PYTHON", "python"))
        .arg(format!("{manifest}/tests/browser/subprotocol.py"))
        .arg(format!("http://{}", h.addr))
        .args([
            "/chat:mqtt,superchat,chat",
            "/chat:chat",
            "/echo:mqtt",
            "/chat:mqtt",
        ])
        .output()
        .expect("run the browser driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "/chat open superchat [permessage-deflate; server_no_context_takeover; client_no_context_takeover]",
            "/chat open chat [permessage-deflate; server_no_context_takeover; client_no_context_takeover]",
            "/echo failed",
            "/chat failed"
        ],
        "{stdout}"
    );
}
