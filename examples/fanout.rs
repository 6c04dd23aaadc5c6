//! A broadcast fan-out load: CLIENTS WebSocket clients on PATH, spread
//! over the TARGETS (host:port, comma-separated), and one sender on the
//! first target that sends MESSAGES texts of SIZE bytes, keeping at most
//! WINDOW ahead of the first client. Prints how long until every client
//! had every message, and the deliveries per second (scripts/bus-bench.py).
//!
//!     fanout TARGETS PATH CLIENTS MESSAGES SIZE [WINDOW]
//!
//! One thread reads every client with mio; frames are counted, not kept.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

fn handshake(target: &str, path: &str) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(target)?;
    s.set_nodelay(true)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    // The head a byte at a time: nothing after it is read here.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b)?;
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101 ") {
        return Err(io::Error::other(
            String::from_utf8_lossy(&head).into_owned(),
        ));
    }
    Ok(s)
}

/// Counts the data frames in `buf`, keeping an incomplete one.
fn count_frames(buf: &mut Vec<u8>) -> u64 {
    let (mut at, mut n) = (0, 0);
    loop {
        let rest = &buf[at..];
        if rest.len() < 2 {
            break;
        }
        let (len, head) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap_or_default()) as usize,
                10,
            ),
            126 | 127 => break,
            l => (l as usize, 2),
        };
        if rest.len() < head + len {
            break;
        }
        if matches!(rest[0] & 0x0f, 1 | 2) {
            n += 1;
        }
        at += head + len;
    }
    buf.drain(..at);
    n
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: fanout TARGETS PATH CLIENTS MESSAGES SIZE [WINDOW]");
        std::process::exit(2);
    }
    let targets: Vec<&str> = args[1].split(',').collect();
    let path = args[2].as_str();
    let parse = |i: usize| args[i].parse::<u64>().map_err(io::Error::other);
    let (clients, messages, size) = (parse(3)?, parse(4)?, parse(5)? as usize);
    let window = if args.len() > 6 { parse(6)? } else { 256 };

    let mut poll = Poll::new()?;
    let mut conns = Vec::new();
    for i in 0..clients as usize {
        let s = handshake(targets[i % targets.len()], path)?;
        s.set_nonblocking(true)?;
        let mut s = MioStream::from_std(s);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)?;
        conns.push((s, Vec::new(), 0u64));
    }
    let first = Arc::new(AtomicU64::new(0));
    let mut sender = handshake(targets[0], path)?;
    // The sender hears every message too: drained, or the server would
    // stop reading it (back-pressure) once its socket is full.
    let mut drain = sender.try_clone()?;
    std::thread::spawn(move || io::copy(&mut drain, &mut io::sink()));
    let start = Instant::now();
    let sending = {
        let first = first.clone();
        std::thread::spawn(move || -> io::Result<()> {
            let payload = vec![b'x'; size];
            let mut frame = Vec::new();
            for n in 1..=messages {
                frame.clear();
                frame.push(0x81);
                if size < 126 {
                    frame.push(0x80 | size as u8);
                } else {
                    frame.push(0x80 | 126);
                    frame.extend_from_slice(&(size as u16).to_be_bytes());
                }
                frame.extend_from_slice(&[0, 0, 0, 0]); // a zero mask
                frame.extend_from_slice(&payload);
                sender.write_all(&frame)?;
                // At most `window` ahead of the first client.
                while n > first.load(Ordering::Relaxed) + window {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Ok(())
        })
    };
    let mut events = Events::with_capacity(1024);
    let mut done = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while done < conns.len() {
        poll.poll(&mut events, Some(Duration::from_secs(10)))?;
        if events.is_empty() {
            let least = conns.iter().map(|c| c.2).min().unwrap_or(0);
            return Err(io::Error::other(format!(
                "stalled: the slowest client has {least} of {messages}"
            )));
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let (s, pending, got) = &mut conns[i];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Err(io::Error::other(format!("client {i} closed"))),
                    Ok(n) => {
                        pending.extend_from_slice(&buf[..n]);
                        let before = *got;
                        *got += count_frames(pending);
                        if before < messages && *got >= messages {
                            done += 1;
                        }
                        if i == 0 {
                            first.store(*got, Ordering::Relaxed);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    sending
        .join()
        .map_err(|_| io::Error::other("sender panicked"))??;
    let deliveries = clients * messages;
    println!(
        "{{\"clients\": {clients}, \"messages\": {messages}, \"size\": {size}, \"seconds\": {secs:.3}, \"deliveries_per_s\": {:.0}, \"messages_per_s\": {:.0}}}",
        deliveries as f64 / secs,
        messages as f64 / secs
    );
    Ok(())
}
