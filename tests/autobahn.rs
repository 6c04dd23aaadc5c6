//! Autobahn|Testsuite, sections 1 to 10, against `handoff serve` with echo
//! workers, through the handoff path. wstest exits 0 even when cases fail,
//! so its index.json is read: every case must end OK, NON-STRICT or
//! INFORMATIONAL. (Sections 12 and 13 test permessage-deflate, which
//! handoff does not offer.)

mod common;
use common::*;

use std::process::Command;

#[test]
fn passes_autobahn_sections_1_to_10_over_the_handoff_path() {
    run(&[], "http", "ws");
}

#[test]
fn passes_autobahn_sections_1_to_10_over_wss_through_the_tls_relay() {
    run(&["--listen", "127.0.0.1:0,tls=on"], "https", "wss");
}

fn run(extra: &[&str], scheme: &str, ws_scheme: &str) {
    let wstest = std::env::var("WSTEST")
        .unwrap_or_else(|_| format!("{}/.venv-autobahn/bin/wstest", env!("CARGO_MANIFEST_DIR")));
    assert!(
        std::path::Path::new(&wstest).exists(),
        "{wstest} is missing: scripts/test.sh installs it"
    );
    let site = site();
    let root = root_arg(site.path());
    let mut args = vec!["--root", &root, "--ws", "/echo=echo", "--ws-workers", "2"];
    args.extend_from_slice(extra);
    let h = Handoff::start(&args);
    let addr = if scheme == "http" {
        h.addr
    } else {
        h.addr_of(scheme)
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        r#"{{"outdir": "./reports", "servers": [{{"agent": "handoff", "url": "{ws_scheme}://{addr}/echo"}}],
            "cases": ["1.*","2.*","3.*","4.*","5.*","6.*","7.*","8.*","9.*","10.*"], "exclude-cases": [], "exclude-agent-cases": {{}}}}"#
    );
    std::fs::write(dir.path().join("spec.json"), spec).unwrap();
    let out = Command::new(&wstest)
        .args(["-m", "fuzzingclient", "-s", "spec.json"])
        .current_dir(dir.path())
        .output()
        .expect("run wstest");
    assert!(
        out.status.success(),
        "wstest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Summarise index.json with Python (no JSON crate needed for one test).
    let summary = Command::new("python3")
        .args([
            "-c",
            r#"
import json, sys
d = json.load(open(sys.argv[1]))["handoff"]
good = ("OK", "NON-STRICT", "INFORMATIONAL")
bad = sorted((k, v["behavior"], v["behaviorClose"]) for k, v in d.items() if v["behavior"] not in good or v["behaviorClose"] not in good)
print(len(d), len(bad))
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
        .unwrap_or("0 0")
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(counts[0] >= 300, "only {} cases ran: {text}", counts[0]);
    assert_eq!(
        counts[1],
        0,
        "cases that did not pass:\n{}",
        lines.collect::<Vec<_>>().join("\n")
    );
}
