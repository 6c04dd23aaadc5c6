//! WebSocket sessions move to the new process of an upgrade
//! (docs/upgrade.md step 6): echo, broadcast and `exec:` sessions keep
//! their TCP connection across three upgrades in a row, with no message
//! lost or doubled and the `exec:` command still running.

mod common;
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

fn connect(addr: SocketAddr, path: &str) -> Ws {
    let s = TcpStream::connect(addr).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), s).expect("handshake");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    ws
}

fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Ok(t.to_string()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => return Err(format!("unexpected {other:?}")),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Sockets, pipes and other non-file fds of a process.
fn fds_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| !t.starts_with("/"))
                .count()
        })
        .unwrap_or(0)
}

fn fd_list(pid: i32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|t| t.display().to_string())
                .filter(|t| !t.starts_with('/'))
                .map(|t| t.split(':').next().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// An echo client on its own thread until `stop`: (messages echoed, the
/// first failure). Any failure (a close, a reset, a wrong echo) ends it.
fn echo_client(
    mut ws: Ws,
    i: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Option<String>, Ws)> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let m = format!("client {i} message {n}");
            if let Err(e) = ws.send(Message::text(m.clone())) {
                return (n, Some(format!("send: {e}")), ws);
            }
            match next_text(&mut ws) {
                Ok(t) if t == m => n += 1,
                Ok(t) => return (n, Some(format!("sent {m:?}, got {t:?}")), ws),
                Err(e) => return (n, Some(e), ws),
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        (n, None, ws)
    })
}

#[test]
fn websocket_sessions_move_across_three_upgrades_without_a_close_or_a_lost_message() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--ws",
        "/echo=echo",
        "--ws",
        "/chat=broadcast",
        "--ws",
        "/cat=exec:sh -c 'echo pid $$; exec cat'",
        "--ws-workers",
        "2",
    ]);
    // Once its workers are up (one socket to each).
    assert!(wait_until(Duration::from_secs(5), || h
        .log()
        .matches("WebSocket worker ready")
        .count()
        == 2));
    let baseline = h.settled_fds();
    let first_fds = fd_list(h.pid() as i32);
    let stop = Arc::new(AtomicBool::new(false));
    let echoes: Vec<_> = (0..100)
        .map(|i| echo_client(connect(h.addr, "/echo"), i, stop.clone()))
        .collect();
    let mut sender = connect(h.addr, "/chat");
    let want = Arc::new(Mutex::new(None));
    let listeners: Vec<_> = (0..19)
        .map(|_| listener(connect(h.addr, "/chat"), want.clone()))
        .collect();
    let mut cats: Vec<(Ws, i32, u16)> = (0..5)
        .map(|_| {
            let mut ws = connect(h.addr, "/cat");
            let line = next_text(&mut ws).unwrap();
            let pid = line.strip_prefix("pid ").unwrap().parse().unwrap();
            let port = ws.get_ref().local_addr().unwrap().port();
            (ws, pid, port)
        })
        .collect();
    // The broadcast sender: numbered messages, all through the upgrades.
    let sending = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = sender.send(Message::text(format!("b{n}"))) {
                    return (n, Some(e.to_string()), sender);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (n, None, sender)
        })
    };
    std::thread::sleep(Duration::from_millis(300));

    let mut serving = h.pid() as i32;
    for round in 1..=3 {
        kill(Pid::from_raw(serving), Signal::SIGUSR2).unwrap();
        assert!(
            wait_until(Duration::from_secs(20), || !alive(serving)),
            "round {round}: {serving} did not hand everything over\n{}",
            h.log()
        );
        let pids = new_pids(&h.log());
        assert_eq!(pids.len(), round, "{}", h.log());
        assert_ne!(pids[round - 1], serving);
        serving = pids[round - 1];
        for (ws, pid, _) in &mut cats {
            let m = format!("round {round}");
            ws.send(Message::text(m.clone())).unwrap();
            assert_eq!(next_text(ws).unwrap(), m, "cat {pid} after round {round}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    stop.store(true, Ordering::Relaxed);
    let (sent, send_error, mut sender) = sending.join().unwrap();
    assert_eq!(send_error, None);
    *want.lock().unwrap() = Some(sent);
    let expected: Vec<String> = (0..sent).map(|n| format!("b{n}")).collect();
    let mut own = Vec::new();
    for _ in 0..sent {
        own.push(next_text(&mut sender).unwrap());
    }
    assert_eq!(own, expected, "the sender's own messages");
    let mut open: Vec<Ws> = vec![sender];
    for l in listeners {
        let (got, error, ws) = l.join().unwrap();
        assert_eq!(
            error,
            None,
            "a listener failed after {} messages (last {:?}), of {sent}",
            got.len(),
            got.last()
        );
        assert_eq!(got, expected, "a listener's messages");
        open.push(ws);
    }
    for e in echoes {
        let (n, error, ws) = e.join().unwrap();
        assert_eq!(
            error,
            None,
            "an echo client failed after {n} messages\n{}",
            h.log()
        );
        assert!(n > 20, "{n}");
        open.push(ws);
    }
    for (ws, pid, port) in &mut cats {
        assert!(alive(*pid), "cat {pid} died");
        assert_eq!(
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap()
                .trim(),
            "cat"
        );
        // The same TCP connection throughout.
        assert_eq!(ws.get_ref().local_addr().unwrap().port(), *port);
    }
    assert!(sent > 50, "{sent}");
    let log = h.log();
    assert!(
        !log.contains("closing WebSocket connections with 1001"),
        "a session was told to go away\n{log}"
    );

    // Everything closed: the serving process is back to its baseline, and
    // each cat is ended.
    let cat_pids: Vec<i32> = cats.iter().map(|c| c.1).collect();
    for mut ws in open.into_iter().chain(cats.into_iter().map(|c| c.0)) {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
    assert!(
        wait_until(Duration::from_secs(10), || fds_of(serving) == baseline),
        "fds: {} now, {baseline} at the start\n{:?}\n{first_fds:?}",
        fds_of(serving),
        fd_list(serving)
    );
    assert!(wait_until(Duration::from_secs(10), || cat_pids
        .iter()
        .all(|p| !alive(*p))));
    let _ = kill(Pid::from_raw(serving), Signal::SIGTERM);
}

/// A masked client frame, written by hand (tungstenite does not split a
/// message into fragments).
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn a_session_in_the_middle_of_a_fragmented_message_moves_only_after_it_and_big_messages_come_back_whole()
 {
    use std::io::Write;
    let site = site();
    let mut h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--ws",
        "/echo=echo",
        "--ws-workers",
        "1",
    ]);
    let mut ws = connect(h.addr, "/echo");
    // Bytes that are not the same from one message to the next.
    let mut seed = 0x9e37_79b9_u32;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect()
    };
    let round_trip = |ws: &mut Ws, data: Vec<u8>| {
        ws.send(Message::binary(data.clone())).unwrap();
        loop {
            match ws.read().unwrap() {
                Message::Binary(b) => break assert!(b[..] == data[..], "an echo differs"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("{other:?}"),
            }
        }
    };
    for n in [1, 1000, 65_536, 300_000] {
        round_trip(&mut ws, noise(n));
    }
    // Half a message, then the upgrade: the session cannot move yet.
    ws.get_mut()
        .write_all(&client_frame(false, 1, b"hello "))
        .unwrap();
    h.signal(Signal::SIGUSR2);
    assert!(wait_until(Duration::from_secs(10), || h
        .log()
        .contains("the new process is ready")));
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        h.child.try_wait().unwrap().is_none(),
        "the old process left a session in the middle of a message\n{}",
        h.log()
    );
    ws.get_mut()
        .write_all(&client_frame(true, 0, b"world"))
        .unwrap();
    assert_eq!(next_text(&mut ws).unwrap(), "hello world");
    // Now between messages: it moves, and the old process is done.
    let status = h.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{}", h.log());
    for n in [7, 70_000, 1 << 20] {
        round_trip(&mut ws, noise(n));
    }
    let new_pid = new_pids(&h.log())[0];
    assert!(h.log().contains("WebSocket session moved in"));
    let _ = kill(Pid::from_raw(new_pid), Signal::SIGTERM);
}
