//! The floor for `scripts/bench.sh`: a canned-response HTTP/1.1 responder
//! on one mio loop, edge-triggered like handoff. It counts request ends
//! (`\r\n\r\n`) in what it reads and writes that many canned answers in one
//! `write`; it parses nothing and opens no file, so it is the most one loop
//! can serve here. Usage: `floor ADDR` (prints `listening on ADDR`).

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nhello, this is 24 bytes\n";

struct Conn {
    sock: TcpStream,
    /// The tail of the last read, so a `\r\n\r\n` split across reads counts.
    tail: [u8; 3],
    out: Vec<u8>,
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let mut listener = TcpListener::bind(addr.parse().expect("ADDR"))?;
    println!("listening on {}", listener.local_addr()?);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, Token(usize::MAX), Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == Token(usize::MAX) {
                loop {
                    match listener.accept() {
                        Ok((mut sock, _)) => {
                            sock.set_nodelay(true)?;
                            // Readable only: a writable edge after every
                            // answer would wake the loop for nothing.
                            poll.registry().register(&mut sock, Token(next), Interest::READABLE)?;
                            conns.insert(next, Conn { sock, tail: [0; 3], out: Vec::new() });
                            next += 1;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let t = ev.token().0;
            let Some(c) = conns.get_mut(&t) else { continue };
            let mut closed = false;
            loop {
                match c.sock.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        // Ends inside this read, and those across the seam
                        // with the last one (no allocation per read).
                        let data = &buf[..n];
                        let mut seam = [0u8; 6];
                        seam[..3].copy_from_slice(&c.tail);
                        let k = n.min(3);
                        seam[3..3 + k].copy_from_slice(&data[..k]);
                        let is_end = |w: &[u8]| w == b"\r\n\r\n";
                        let ends = data.windows(4).filter(|w| is_end(w)).count()
                            + seam[..3 + k].windows(4).filter(|w| is_end(w)).count();
                        // The last three bytes seen: of this read, or of
                        // the seam when the read was shorter.
                        if n >= 3 {
                            c.tail.copy_from_slice(&data[n - 3..]);
                        } else {
                            c.tail.copy_from_slice(&seam[k..k + 3]);
                        }
                        for _ in 0..ends {
                            c.out.extend_from_slice(ANSWER);
                        }
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            let was_blocked = ev.is_writable();
            while !closed && !c.out.is_empty() {
                match c.sock.write(&c.out) {
                    Ok(n) => {
                        c.out.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        // Ask for room only while output waits.
                        let i = Interest::READABLE | Interest::WRITABLE;
                        poll.registry().reregister(&mut c.sock, Token(t), i)?;
                        break;
                    }
                    Err(_) => closed = true,
                }
            }
            if was_blocked && c.out.is_empty() && !closed {
                poll.registry().reregister(&mut c.sock, Token(t), Interest::READABLE)?;
            }
            if closed {
                conns.remove(&t);
            }
        }
    }
}
