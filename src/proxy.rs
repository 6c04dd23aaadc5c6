//! The PROXY protocol (HAProxy's, v1 text and v2 binary): a load balancer
//! in front says, before the client's first byte, which client this
//! connection is for. Parsing is the `ppp` crate's, which tells input cut
//! short (read more) from bad input (close); this module decides what a
//! listener accepts, bounds the header, and turns it into addresses.

use std::net::SocketAddr;

/// Which headers a listener takes (`--listen ADDR,proxy=v1|v2|any`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// The text header (`PROXY TCP4 …\r\n`).
    V1,
    /// The binary header.
    V2,
    /// Either.
    Any,
}

impl ProxyMode {
    /// `v1`, `v2` or `any`.
    pub fn parse(s: &str) -> Result<ProxyMode, String> {
        match s {
            "v1" => Ok(ProxyMode::V1),
            "v2" => Ok(ProxyMode::V2),
            "any" => Ok(ProxyMode::Any),
            other => Err(format!("proxy={other:?}: expected v1, v2 or any")),
        }
    }
}

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A header may yet come whole: read more.
    Partial,
    /// A header of `len` bytes. `peer` and `local` are the client's and the
    /// address it reached, or `None` (a `LOCAL` or `UNKNOWN` header, such as
    /// a health check's: the socket's own addresses stand).
    Done {
        len: usize,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
    },
    /// Not a header this listener takes: close, saying why.
    Bad(String),
}

/// The longest v1 line (the protocol's own bound, CRLF included).
const V1_MAX: usize = 107;
/// The longest v2 header taken: 16 bytes, addresses, and TLVs up to this.
/// HAProxy's own TLVs (ALPN, authority, unique ID, SSL) fit well within.
pub(crate) const V2_MAX: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";
/// A v2 header's fixed part: signature, version and command, family,
/// length.
const V2_FIXED: usize = 16;

/// Does `b` start `whole`, or is it a start of it?
fn begins(b: &[u8], whole: &[u8]) -> bool {
    let n = b.len().min(whole.len());
    b[..n] == whole[..n]
}

pub(crate) fn parse(mode: ProxyMode, b: &[u8]) -> Parsed {
    if b.is_empty() {
        return Parsed::Partial;
    }
    if begins(b, ppp::v2::PROTOCOL_PREFIX) {
        if mode == ProxyMode::V1 {
            return Parsed::Bad("a PROXY v2 header where v1 is expected".into());
        }
        return parse_v2(b);
    }
    if begins(b, V1_PREFIX) {
        if mode == ProxyMode::V2 {
            return Parsed::Bad("a PROXY v1 header where v2 is expected".into());
        }
        return parse_v1(b);
    }
    Parsed::Bad("the connection does not start with a PROXY header".into())
}

fn parse_v1(b: &[u8]) -> Parsed {
    let Some(end) = b.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if b.len() >= V1_MAX {
            Parsed::Bad(format!("a PROXY v1 line longer than {V1_MAX} bytes"))
        } else {
            Parsed::Partial
        };
    };
    let len = end + 2;
    // The line is US-ASCII (the spec's words). Checked here and not left to
    // ppp: its `Header::try_from(&str)` slices at the first CR plus two
    // bytes, which panics when a multi-byte character follows a stray CR
    // (found by the proxy fuzz target; ppp 2.3.0).
    if !b[..end].iter().all(|&c| c == b' ' || c.is_ascii_graphic()) {
        return Parsed::Bad("a PROXY v1 line that is not printable ASCII".into());
    }
    let Ok(line) = std::str::from_utf8(&b[..len]) else {
        return Parsed::Bad("a PROXY v1 line that is not text".into());
    };
    match ppp::v1::Header::try_from(line) {
        Ok(h) => {
            let (peer, local) = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => (
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                ),
                ppp::v1::Addresses::Tcp6(a) => (
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                ),
                ppp::v1::Addresses::Unknown => {
                    return Parsed::Done {
                        len,
                        peer: None,
                        local: None,
                    };
                }
            };
            Parsed::Done {
                len,
                peer: Some(peer),
                local: Some(local),
            }
        }
        Err(e) => Parsed::Bad(format!("a bad PROXY v1 header: {e}")),
    }
}

fn parse_v2(b: &[u8]) -> Parsed {
    if b.len() < V2_FIXED {
        return Parsed::Partial;
    }
    let len = V2_FIXED + usize::from(u16::from_be_bytes([b[14], b[15]]));
    if len > V2_MAX {
        return Parsed::Bad(format!(
            "a PROXY v2 header of {len} bytes (at most {V2_MAX} taken)"
        ));
    }
    if b.len() < len {
        return Parsed::Partial;
    }
    match ppp::v2::Header::try_from(&b[..len]) {
        Ok(h) => {
            let addresses = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                (_, ppp::v2::Addresses::IPv6(a)) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                // Unix or unspecified: nothing better than the socket's.
                _ => None,
            };
            Parsed::Done {
                len,
                peer: addresses.map(|a| a.0),
                local: addresses.map(|a| a.1),
            }
        }
        Err(e) => Parsed::Bad(format!("a bad PROXY v2 header: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = ppp::v2::PROTOCOL_PREFIX.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    const V4: [u8; 12] = [203, 0, 113, 7, 127, 0, 0, 1, 0xc8, 0x3a, 0x1f, 0x90];

    #[test]
    fn reads_a_v1_header_whole_or_a_byte_at_a_time() {
        let line = b"PROXY TCP4 203.0.113.7 127.0.0.1 51258 8080\r\nGET / HTTP/1.1\r\n";
        let want = Parsed::Done {
            len: 45,
            peer: Some("203.0.113.7:51258".parse().unwrap()),
            local: Some("127.0.0.1:8080".parse().unwrap()),
        };
        assert_eq!(parse(ProxyMode::Any, line), want);
        assert_eq!(parse(ProxyMode::V1, line), want);
        for n in 0..45 {
            assert_eq!(parse(ProxyMode::V1, &line[..n]), Parsed::Partial, "{n}");
        }
        let six = b"PROXY TCP6 2001:db8::1 ::1 443 8443\r\n";
        assert!(matches!(
            parse(ProxyMode::Any, six),
            Parsed::Done { len: 37, peer: Some(p), .. } if p.to_string() == "[2001:db8::1]:443"
        ));
    }

    #[test]
    fn reads_a_v2_header_with_tlvs_and_keeps_the_socket_addresses_for_local() {
        let h = v2(1, 0x11, &V4, &[0x04, 0x00, 0x01, 0x2a]);
        let mut bytes = h.clone();
        bytes.extend_from_slice(b"\x16\x03\x01"); // a ClientHello follows
        assert_eq!(
            parse(ProxyMode::V2, &bytes),
            Parsed::Done {
                len: h.len(),
                peer: Some("203.0.113.7:51258".parse().unwrap()),
                local: Some("127.0.0.1:8080".parse().unwrap()),
            }
        );
        for n in 0..h.len() {
            assert_eq!(parse(ProxyMode::Any, &h[..n]), Parsed::Partial, "{n}");
        }
        // LOCAL (a health check): no addresses, the socket's stand.
        let local = v2(0, 0x00, &[], &[]);
        assert_eq!(
            parse(ProxyMode::Any, &local),
            Parsed::Done {
                len: 16,
                peer: None,
                local: None
            }
        );
        let unknown = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            parse(ProxyMode::V1, unknown),
            Parsed::Done {
                len: 15,
                peer: None,
                local: None
            }
        );
    }

    #[test]
    fn refuses_no_header_the_other_version_oversized_and_malformed_headers() {
        let bad = |m, b: &[u8]| matches!(parse(m, b), Parsed::Bad(_));
        assert!(bad(ProxyMode::Any, b"GET / HTTP/1.1\r\n\r\n"));
        assert!(bad(ProxyMode::Any, b"\x16\x03\x01\x02\x00"));
        assert!(bad(ProxyMode::V2, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(bad(ProxyMode::V1, &v2(1, 0x11, &V4, &[])));
        assert!(bad(
            ProxyMode::V1,
            &[b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat()
        ));
        assert!(bad(ProxyMode::V1, b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n"));
        // A stray CR before a multi-byte character once panicked in ppp.
        assert!(bad(
            ProxyMode::V1,
            "PROXY TCP4 1.2.3.4\r\u{c9}5.6.7.8 1 2\r\n".as_bytes()
        ));
        assert!(bad(ProxyMode::V1, b"PROXY TCP4 1.2.3.4 5.6.7.8\t1 2\r\n"));
        let mut huge = v2(1, 0x11, &V4, &[]);
        huge[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert!(bad(ProxyMode::V2, &huge));
        assert!(bad(ProxyMode::V2, &v2(1, 0x11, &V4[..5], &[])));
        assert_eq!(
            ProxyMode::parse("v3"),
            Err("proxy=\"v3\": expected v1, v2 or any".into())
        );
    }
}
