//! What the client sends is looked at frame by frame before `h2` takes
//! it, for two things `h2` does not do as RFC 9113 says or at all:
//!
//! - the error code of a frame of the wrong shape: `h2` answers a PING,
//!   SETTINGS, RST_STREAM or WINDOW_UPDATE of the wrong length, and a
//!   SETTINGS value out of range, with GOAWAY `PROTOCOL_ERROR`; the RFC
//!   says `FRAME_SIZE_ERROR` (§6.3–6.9) and, for a window over 2^31−1,
//!   `FLOW_CONTROL_ERROR` (§6.5.2);
//! - floods of frames that cost the server and give the client nothing
//!   (SETTINGS, PING, PRIORITY, empty DATA; RST_STREAM, the rapid reset of
//!   CVE-2023-44487; a header block split into endless CONTINUATIONs,
//!   CVE-2024-27316): past a rate, GOAWAY `ENHANCE_YOUR_CALM`.
//!
//! Only frame heads (9 bytes) and SETTINGS payloads are read; everything
//! else passes through untouched, in order.

use std::time::{Duration, Instant};

use super::PREFACE;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// RFC 9113 §7 error codes.
pub(crate) const PROTOCOL_ERROR: u32 = 0x1;
pub(crate) const FLOW_CONTROL_ERROR: u32 = 0x3;
pub(crate) const FRAME_SIZE_ERROR: u32 = 0x6;
pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Our `SETTINGS_MAX_FRAME_SIZE` (the initial value; we do not raise it).
const MAX_FRAME: usize = 16_384;
/// CONTINUATION frames one header block may take; a block that needs more
/// is a flood (a legitimate one fits in a few at `max_header_bytes`).
const MAX_CONTINUATIONS: u32 = 32;
/// How long the flood counters count before they start again.
const WINDOW: Duration = Duration::from_secs(1);

/// Why the connection must end: the GOAWAY's code, and words for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    pub code: u32,
    pub why: &'static str,
}

fn bad(code: u32, why: &'static str) -> Violation {
    Violation { code, why }
}

/// The flood limits (`Limits::h2_max_control_frames`, `h2_max_resets`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rates {
    pub control: u32,
    pub resets: u32,
}

pub(crate) struct Guard {
    /// Preface bytes still to pass (they are `h2`'s to check).
    preface_left: usize,
    head: [u8; 9],
    head_len: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: usize,
    /// A SETTINGS payload being gathered, to read its values.
    settings: Option<Vec<u8>>,
    /// CONTINUATIONs of the header block under way, if one is.
    continuations: Option<u32>,
    /// The highest client stream whose HEADERS passed (GOAWAY's last id).
    pub(crate) highest_stream: u32,
    /// The client's SETTINGS, the second half of its preface (§3.4), came.
    pub(crate) set_up: bool,
    rates: Rates,
    since: Instant,
    control: u32,
    resets: u32,
}

impl Guard {
    /// `preface`: the preface still comes through here (prior knowledge
    /// and ALPN alike: it is the client's first bytes on the connection).
    pub(crate) fn new(rates: Rates, now: Instant) -> Guard {
        Guard {
            preface_left: PREFACE.len(),
            head: [0; 9],
            head_len: 0,
            payload_left: 0,
            settings: None,
            continuations: None,
            highest_stream: 0,
            set_up: false,
            rates,
            since: now,
            control: 0,
            resets: 0,
        }
    }

    /// Looks at `bytes`, the next the client sent. `Ok`: all may pass.
    /// `Err((n, v))`: the first `n` may pass (whole frames before the bad
    /// one), then the connection ends with `v`.
    pub(crate) fn inspect(&mut self, bytes: &[u8], now: Instant) -> Result<(), (usize, Violation)> {
        let mut i = 0;
        let mut frame_start = 0;
        if self.preface_left > 0 {
            let n = self.preface_left.min(bytes.len());
            self.preface_left -= n;
            i = n;
            frame_start = n;
        }
        while i < bytes.len() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() - i);
                if let Some(s) = &mut self.settings {
                    s.extend_from_slice(&bytes[i..i + n]);
                }
                self.payload_left -= n;
                i += n;
                if self.payload_left == 0 {
                    if let Some(s) = self.settings.take() {
                        settings_values(&s).map_err(|v| (frame_start, v))?;
                    }
                    frame_start = i;
                }
                continue;
            }
            let n = (9 - self.head_len).min(bytes.len() - i);
            self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[i..i + n]);
            self.head_len += n;
            i += n;
            if self.head_len < 9 {
                break;
            }
            self.head_len = 0;
            let h = self.head;
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            self.frame(h[3], h[4], stream_of(&h), len, now)
                .map_err(|v| (frame_start, v))?;
            self.payload_left = len;
            if self.settings.is_some() && len == 0 {
                self.settings = None;
            }
            if len == 0 {
                frame_start = i;
            }
        }
        Ok(())
    }

    /// Checks one frame's head (and starts gathering a SETTINGS payload).
    fn frame(
        &mut self,
        ty: u8,
        flags: u8,
        stream: u32,
        len: usize,
        now: Instant,
    ) -> Result<(), Violation> {
        if len > MAX_FRAME {
            return Err(bad(
                FRAME_SIZE_ERROR,
                "a frame over SETTINGS_MAX_FRAME_SIZE",
            ));
        }
        if !self.set_up {
            if ty != SETTINGS || flags & ACK != 0 {
                return Err(bad(PROTOCOL_ERROR, "the preface not followed by SETTINGS"));
            }
            self.set_up = true;
        }
        if now.saturating_duration_since(self.since) >= WINDOW {
            self.since = now;
            self.control = 0;
            self.resets = 0;
        }
        match self.continuations {
            Some(n) if ty == CONTINUATION => {
                if n + 1 > MAX_CONTINUATIONS {
                    return Err(bad(
                        ENHANCE_YOUR_CALM,
                        "a header block in too many CONTINUATION frames",
                    ));
                }
                self.continuations = (flags & END_HEADERS == 0).then_some(n + 1);
                return Ok(());
            }
            // Anything else inside a header block is `h2`'s to refuse.
            _ => {}
        }
        match ty {
            DATA if len == 0 && flags & END_STREAM == 0 => self.count_control()?,
            HEADERS => {
                if stream % 2 == 1 && stream > self.highest_stream {
                    self.highest_stream = stream;
                }
                if flags & END_HEADERS == 0 {
                    self.continuations = Some(0);
                }
            }
            PRIORITY => {
                if len != 5 {
                    // A stream error (§6.3), which §5.4 lets us treat as
                    // the connection's.
                    return Err(bad(FRAME_SIZE_ERROR, "a PRIORITY frame not 5 bytes long"));
                }
                self.count_control()?
            }
            RST_STREAM => {
                if len != 4 {
                    return Err(bad(
                        FRAME_SIZE_ERROR,
                        "an RST_STREAM frame not 4 bytes long",
                    ));
                }
                self.resets += 1;
                if self.resets > self.rates.resets {
                    return Err(bad(
                        ENHANCE_YOUR_CALM,
                        "too many streams reset (rapid reset)",
                    ));
                }
            }
            SETTINGS => {
                if stream != 0 {
                    return Err(bad(PROTOCOL_ERROR, "a SETTINGS frame on a stream"));
                }
                if flags & ACK != 0 {
                    if len != 0 {
                        return Err(bad(
                            FRAME_SIZE_ERROR,
                            "a SETTINGS acknowledgement with a payload",
                        ));
                    }
                } else {
                    if !len.is_multiple_of(6) {
                        return Err(bad(
                            FRAME_SIZE_ERROR,
                            "a SETTINGS frame whose length is not a multiple of 6",
                        ));
                    }
                    self.count_control()?;
                    self.settings = Some(Vec::with_capacity(len));
                }
            }
            PUSH_PROMISE => {
                return Err(bad(PROTOCOL_ERROR, "a PUSH_PROMISE from a client"));
            }
            PING => {
                if stream != 0 {
                    return Err(bad(PROTOCOL_ERROR, "a PING frame on a stream"));
                }
                if len != 8 {
                    return Err(bad(FRAME_SIZE_ERROR, "a PING frame not 8 bytes long"));
                }
                if flags & ACK == 0 {
                    self.count_control()?;
                }
            }
            GOAWAY if len < 8 => {
                return Err(bad(FRAME_SIZE_ERROR, "a GOAWAY frame under 8 bytes"));
            }
            WINDOW_UPDATE if len != 4 => {
                return Err(bad(
                    FRAME_SIZE_ERROR,
                    "a WINDOW_UPDATE frame not 4 bytes long",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn count_control(&mut self) -> Result<(), Violation> {
        self.control += 1;
        if self.control > self.rates.control {
            return Err(bad(
                ENHANCE_YOUR_CALM,
                "too many SETTINGS, PING, PRIORITY or empty DATA frames",
            ));
        }
        Ok(())
    }
}

fn stream_of(h: &[u8; 9]) -> u32 {
    u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff
}

/// The values of one SETTINGS frame (§6.5.2).
fn settings_values(payload: &[u8]) -> Result<(), Violation> {
    for s in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([s[0], s[1]]);
        let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
        match id {
            2 if v > 1 => {
                return Err(bad(
                    PROTOCOL_ERROR,
                    "SETTINGS_ENABLE_PUSH other than 0 or 1",
                ));
            }
            4 if v > 0x7fff_ffff => {
                return Err(bad(
                    FLOW_CONTROL_ERROR,
                    "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1",
                ));
            }
            5 if !(16_384..=16_777_215).contains(&v) => {
                return Err(bad(
                    PROTOCOL_ERROR,
                    "SETTINGS_MAX_FRAME_SIZE out of its range",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A GOAWAY frame: the last stream processed, the code, no debug data.
pub(crate) fn goaway(last_stream: u32, code: u32) -> Vec<u8> {
    let mut f = vec![0, 0, 8, GOAWAY, 0, 0, 0, 0, 0];
    f.extend_from_slice(&last_stream.to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.push(ty);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn guard() -> Guard {
        let mut g = Guard::new(
            Rates {
                control: 10,
                resets: 10,
            },
            Instant::now(),
        );
        g.inspect(PREFACE, Instant::now()).unwrap();
        g.inspect(&frame(SETTINGS, 0, 0, &[]), Instant::now())
            .unwrap();
        g
    }

    #[test]
    fn the_preface_must_be_followed_by_settings() {
        let mut g = Guard::new(
            Rates {
                control: 10,
                resets: 10,
            },
            Instant::now(),
        );
        let mut first = PREFACE.to_vec();
        first.extend(frame(PING, 0, 0, b"12345678"));
        let e = g.inspect(&first, Instant::now()).unwrap_err();
        assert_eq!(
            e,
            (
                PREFACE.len(),
                bad(PROTOCOL_ERROR, "the preface not followed by SETTINGS")
            )
        );
    }

    #[test]
    fn passes_well_formed_frames_in_any_pieces() {
        let mut g = guard();
        let mut all = frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]);
        all.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x84"));
        all.extend(frame(PING, 0, 0, b"12345678"));
        for piece in all.chunks(3) {
            g.inspect(piece, Instant::now()).unwrap();
        }
        assert_eq!(g.highest_stream, 1);
    }

    #[test]
    fn gives_the_rfcs_codes_to_frames_of_the_wrong_shape() {
        for (f, code) in [
            (frame(PING, 0, 0, b"seven!!"), FRAME_SIZE_ERROR),
            (frame(PING, 0, 1, b"12345678"), PROTOCOL_ERROR),
            (frame(SETTINGS, ACK, 0, &[0; 6]), FRAME_SIZE_ERROR),
            (frame(SETTINGS, 0, 0, &[0; 5]), FRAME_SIZE_ERROR),
            (frame(SETTINGS, 0, 1, &[]), PROTOCOL_ERROR),
            (
                frame(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
                FLOW_CONTROL_ERROR,
            ),
            (frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]), PROTOCOL_ERROR),
            (
                frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff]),
                PROTOCOL_ERROR,
            ),
            (frame(RST_STREAM, 0, 1, &[0, 0, 8]), FRAME_SIZE_ERROR),
            (frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1]), FRAME_SIZE_ERROR),
            (frame(GOAWAY, 0, 0, &[0; 7]), FRAME_SIZE_ERROR),
            (
                frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]),
                PROTOCOL_ERROR,
            ),
            (frame(DATA, 0, 1, &vec![0; MAX_FRAME + 1]), FRAME_SIZE_ERROR),
        ] {
            let mut g = guard();
            let Err((n, v)) = g.inspect(&f, Instant::now()) else {
                panic!("{f:?} passed");
            };
            assert_eq!((n, v.code), (0, code), "{}", v.why);
        }
    }

    #[test]
    fn lets_whole_frames_before_a_bad_one_pass() {
        let mut g = guard();
        let good = frame(PING, 0, 0, b"12345678");
        let mut all = good.clone();
        all.extend(frame(PING, 0, 0, b"short"));
        let Err((n, _)) = g.inspect(&all, Instant::now()) else {
            panic!("passed");
        };
        assert_eq!(n, good.len());
    }

    #[test]
    fn a_flood_of_pings_or_resets_is_told_to_calm_down_and_the_count_starts_again_each_second() {
        let t = Instant::now();
        let mut g = guard();
        // The SETTINGS `guard()` sent was the first of 10.
        for _ in 0..9 {
            g.inspect(&frame(PING, 0, 0, b"12345678"), t).unwrap();
        }
        let e = g.inspect(&frame(PING, 0, 0, b"12345678"), t).unwrap_err();
        assert_eq!(e.1.code, ENHANCE_YOUR_CALM);

        let mut g = guard();
        // The SETTINGS `guard()` sent was the first of 10.
        for _ in 0..9 {
            g.inspect(&frame(PING, 0, 0, b"12345678"), t).unwrap();
        }
        g.inspect(&frame(PING, 0, 0, b"12345678"), t + 2 * WINDOW)
            .unwrap();

        let mut g = guard();
        for id in 0..10u32 {
            g.inspect(&frame(RST_STREAM, 0, 2 * id + 1, &[0, 0, 0, 8]), t)
                .unwrap();
        }
        let e = g
            .inspect(&frame(RST_STREAM, 0, 21, &[0, 0, 0, 8]), t)
            .unwrap_err();
        assert_eq!(e.1.code, ENHANCE_YOUR_CALM);
    }

    #[test]
    fn a_header_block_in_endless_continuations_is_told_to_calm_down() {
        let t = Instant::now();
        let mut g = guard();
        g.inspect(&frame(HEADERS, 0, 1, b"\x82"), t).unwrap();
        let c = frame(CONTINUATION, 0, 1, b"\x00");
        for _ in 0..MAX_CONTINUATIONS {
            g.inspect(&c, t).unwrap();
        }
        let e = g.inspect(&c, t).unwrap_err();
        assert_eq!(e.1.code, ENHANCE_YOUR_CALM);
    }

    #[test]
    fn writes_a_goaway_with_the_last_stream_and_the_code() {
        let f = goaway(7, ENHANCE_YOUR_CALM);
        assert_eq!(&f[..9], &[0, 0, 8, GOAWAY, 0, 0, 0, 0, 0]);
        assert_eq!(&f[9..], &[0, 0, 0, 7, 0, 0, 0, 11]);
    }
}
