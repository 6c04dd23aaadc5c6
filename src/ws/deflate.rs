//! permessage-deflate's negotiation (RFC 7692 §5, §7.1): the HTTP process
//! picks the first offer it can honour and hands the answer to the worker
//! (an `ENV` pair, as the subprotocol goes), which sends it in its 101 and
//! reads its window size back from it (`window_bits`).
//!
//! The answer always asks for no context takeover both ways: every
//! message is compressed and inflated on its own, so a connection keeps no
//! compression state between messages (no 300 KiB of zlib state per idle
//! connection) at some cost in ratio for small messages alike.

/// The `ENV` name the answer travels under.
pub(crate) const EXTENSIONS_VAR: &str = "WEBSOCKET_EXTENSIONS";

/// One offer's parameters, if every one is known, well formed and given
/// once (an offer that breaks that is declined, §7.1).
fn offer_params(params: &[&str]) -> Option<Option<u8>> {
    let mut seen: Vec<&str> = Vec::new();
    let mut server_bits = None;
    for p in params {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p.trim(), None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        let bits = |v: Option<&str>| {
            v.and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b))
        };
        match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", v) => server_bits = Some(bits(v)?),
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", v) => {
                bits(v)?;
            }
            _ => return None,
        }
    }
    Some(server_bits)
}

/// The answer to a request's `Sec-WebSocket-Extensions` fields: the first
/// permessage-deflate offer we can honour, or `None`. An offer that asks
/// for a server window of 8 bits is declined: zlib's raw deflate has no
/// 256-byte window (the client's next offer may do).
pub(crate) fn negotiate<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Option<String> {
    for field in fields {
        let field = std::str::from_utf8(field).ok()?;
        // Offers are comma-separated; a quoted value holds no comma here
        // (every value of this extension is a number).
        for offer in field.split(',') {
            let mut parts = offer.split(';').map(str::trim);
            if parts.next() != Some("permessage-deflate") {
                continue;
            }
            let params: Vec<&str> = parts.filter(|p| !p.is_empty()).collect();
            match offer_params(&params) {
                Some(Some(8)) | None => continue,
                Some(bits) => {
                    let mut answer = String::from(
                        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                    );
                    if let Some(b) = bits {
                        answer.push_str(&format!("; server_max_window_bits={b}"));
                    }
                    return Some(answer);
                }
            }
        }
    }
    None
}

/// The server window an answer agreed (15 unless it says less).
pub(crate) fn window_bits(answer: &str) -> u8 {
    answer
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("server_max_window_bits="))
        .find_map(|v| v.parse().ok())
        .unwrap_or(15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(offers: &[&str]) -> Option<String> {
        negotiate(offers.iter().map(|o| o.as_bytes()))
    }

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn answers_the_first_offer_it_can_honour_with_no_context_takeover() {
        // Chromium's and Firefox's offer.
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(BOTH)
        );
        assert_eq!(
            answer(&["x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10"]),
            Some(format!("{BOTH}; server_max_window_bits=10"))
        );
        assert_eq!(
            window_bits(&format!("{BOTH}; server_max_window_bits=10")),
            10
        );
        assert_eq!(window_bits(BOTH), 15);
        // 8 bits declined, the next offer taken.
        assert_eq!(
            answer(&[
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_no_context_takeover"
            ])
            .as_deref(),
            Some(BOTH)
        );
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits=\"12\""]).as_deref(),
            Some(BOTH)
        );
    }

    #[test]
    fn declines_unknown_repeated_or_malformed_parameters() {
        for bad in [
            "permessage-deflate; mystery",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "deflate-frame",
        ] {
            assert_eq!(answer(&[bad]), None, "{bad}");
        }
        assert_eq!(answer(&[]), None);
    }
}
