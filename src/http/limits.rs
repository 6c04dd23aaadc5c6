//! Named limits and deadlines. Every one is on by default: a server that is
//! safe only after tuning is not safe.

use std::time::Duration;

/// Size limits of one request. Each maps to a status when exceeded.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest request line (method, target, version) → 414.
    pub max_request_line: usize,
    /// Largest request head, request line included, and largest trailer
    /// section → 431.
    pub max_header_bytes: usize,
    /// Most header fields in a head → 431.
    pub max_headers: usize,
    /// Largest request body after chunked decoding → 413.
    pub max_body: u64,
    /// Largest body streamed to a `BodySink` → 413.
    pub max_streamed_body: u64,
    /// Largest body read and thrown away after an early answer
    /// (`BodyPlan::Discard`) so the connection stays in step; a larger one
    /// (declared, or a chunked body that grows past it) ends the connection
    /// after the answer instead.
    pub max_discarded_body: u64,
    /// Largest piece given to a `BodySink` at a time (Moonbridge's
    /// `maximum_input_chunk_size`).
    pub max_input_chunk: usize,
    /// Deferred responses hold body data back until this much gathers
    /// (Moonbridge's `minimum_output_chunk_size`; `flush` sends at once).
    pub min_output_chunk: usize,
    /// Responses queued but not yet written on one connection; past it we
    /// stop parsing pipelined requests (and so stop reading) until it drains.
    pub max_pipelined: usize,
    /// Bytes of response queued on one connection past which we stop
    /// parsing further pipelined requests; for HTTP/2, past which streams
    /// wait for the socket before they send more DATA.
    pub max_output_buffer: usize,
    /// HTTP/2: streams a client may have open at once on one connection
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`); more are refused with
    /// `REFUSED_STREAM`. The request head limits (`max_header_bytes` for
    /// the header list) are HTTP/1.1's.
    pub max_concurrent_streams: u32,
    /// HTTP/2: SETTINGS, PING, PRIORITY and empty DATA frames a client may
    /// send a second on one connection (they cost the server and give the
    /// client nothing); past it, GOAWAY `ENHANCE_YOUR_CALM`.
    pub max_control_frames_per_second: u32,
    /// HTTP/2: streams a client may reset a second on one connection
    /// (rapid reset, CVE-2023-44487); past it, GOAWAY `ENHANCE_YOUR_CALM`.
    pub max_resets_per_second: u32,
}

/// The hard cap on `max_headers`: httparse parses into an array on the stack.
pub(crate) const HEADERS_CAP: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
            max_streamed_body: 64 << 30,
            max_discarded_body: 1024 * 1024,
            max_input_chunk: 64 * 1024,
            min_output_chunk: 0,
            max_pipelined: 16,
            max_output_buffer: 256 * 1024,
            max_concurrent_streams: 100,
            max_control_frames_per_second: 200,
            max_resets_per_second: 100,
        }
    }
}

/// Deadlines of each phase of a connection.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// From accept to the end of the first request head; for later requests,
    /// from their first byte to the end of their head (lua-http's
    /// `connection_setup_timeout`). A total, not a per-byte gap, so a client
    /// dribbling one byte a second is still cut off.
    pub connection_setup: Duration,
    /// How long a keep-alive connection may wait idle for its next request
    /// (lua-http's `intra_stream_timeout`).
    pub intra_stream: Duration,
    /// Longest gap without any request-body bytes arriving; also the time
    /// a body has before `body_min_rate` counts.
    pub body_progress: Duration,
    /// Bytes per second a request body must keep up on average, as
    /// Apache's `mod_reqtimeout` (`body=…,MinRate=500`): the body's deadline
    /// starts `body_progress` after its head and moves one second later for
    /// every `body_min_rate` bytes received; past it, 408. So a body
    /// trickled a byte every few seconds (R.U.D.Y.) is cut even though no
    /// gap is long. 0: no minimum.
    pub body_min_rate: u32,
    /// Longest gap without any response bytes leaving while some are queued.
    pub write_progress: Duration,
    /// After we close our side, how long we keep reading and discarding what
    /// the peer still sends, so our last response is not destroyed by a RST.
    pub linger: Duration,
    /// How long a deferred response may take to be finished: past it, 504
    /// if nothing was sent, else the connection is cut.
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connection_setup: Duration::from_secs(10),
            intra_stream: Duration::from_secs(60),
            body_progress: Duration::from_secs(30),
            body_min_rate: 500,
            write_progress: Duration::from_secs(30),
            linger: Duration::from_secs(2),
            response: Duration::from_secs(60),
        }
    }
}
