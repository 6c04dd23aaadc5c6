//! Who may ask: address rules (`--allow`, `--deny`), for every path or
//! under a path prefix, checked against the client's address (the PROXY
//! header's when there is one, as `Request::peer_addr` gives it).
//!
//! Order-free, so that flags, the settings file and `--help` cannot
//! disagree about it: within one prefix's rules the narrowest network that
//! holds the address decides (a deny wins a tie); an address none holds is
//! refused if that prefix has any `--allow` (an allow-list is closed), else
//! let through. A request passes only if every prefix its path lies under
//! lets it through: a deny for every path cannot be undone by an allow
//! under `/admin`.

use std::net::IpAddr;

use crate::sys::Addr;

/// A network: an address and how many leading bits of it count. IPv4 is
/// kept as its IPv4-mapped IPv6 form, so `10.0.0.0/8` also holds a client
/// that reached a dual-stack socket as `::ffff:10.1.2.3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    len: u8,
}

/// An address as 128 bits (IPv4 mapped).
pub(crate) fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, an address alone (all its bits), or
    /// `all`. Bits set past the length are refused: `10.1.2.3/8` is more
    /// likely a typo than a network.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        if s == "all" {
            return Ok(Cidr { net: 0, len: 0 });
        }
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: not an address or ADDRESS/BITS"))?;
        let (max, offset) = match ip {
            IpAddr::V4(_) => (32, 96),
            IpAddr::V6(_) => (128, 0),
        };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length is 0 to {max}")),
            },
        };
        let cidr = Cidr {
            net: bits(ip),
            len: len + offset,
        };
        if cidr.net & !cidr.mask() != 0 {
            return Err(format!(
                "{s:?}: bits are set past /{len} (the network would be {})",
                cidr.network(ip)
            ));
        }
        Ok(cidr)
    }

    fn mask(&self) -> u128 {
        match self.len {
            0 => 0,
            n => u128::MAX << (128 - n),
        }
    }

    /// The network `ip` lies in, written as given (for the error message).
    fn network(&self, ip: IpAddr) -> String {
        let net = self.net & self.mask();
        match ip {
            IpAddr::V4(_) => format!(
                "{}/{}",
                std::net::Ipv4Addr::from((net & 0xffff_ffff) as u32),
                self.len - 96
            ),
            IpAddr::V6(_) => format!("{}/{}", std::net::Ipv6Addr::from(net), self.len),
        }
    }

    pub(crate) fn contains(&self, ip: u128) -> bool {
        (ip ^ self.net) & self.mask() == 0
    }
}

/// One `--allow` or `--deny`: `[PATH_PREFIX=]CIDR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRule {
    /// Path segments the rule covers (`/admin` → `["admin"]`); empty:
    /// every path.
    pub prefix: Vec<String>,
    /// `--allow` (else `--deny`).
    pub allow: bool,
    /// The network it names.
    pub cidr: Cidr,
}

impl AccessRule {
    /// `--allow [PATH_PREFIX=]CIDR`.
    pub fn allow(s: &str) -> Result<AccessRule, String> {
        Self::parse(s, true)
    }

    /// `--deny [PATH_PREFIX=]CIDR`.
    pub fn deny(s: &str) -> Result<AccessRule, String> {
        Self::parse(s, false)
    }

    fn parse(s: &str, allow: bool) -> Result<AccessRule, String> {
        let (prefix, cidr) = match s.split_once('=') {
            Some((p, c)) if p.starts_with('/') => (segments(p), c),
            Some(_) => return Err(format!("{s:?}: a path prefix begins with /")),
            None => (Vec::new(), s),
        };
        Ok(AccessRule {
            prefix,
            allow,
            cidr: Cidr::parse(cidr)?,
        })
    }
}

/// A path prefix as segments: `/admin/` and `/admin` are both
/// `["admin"]`, and neither covers `/administrator`.
pub(crate) fn segments(prefix: &str) -> Vec<String> {
    prefix
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(str::to_string)
        .collect()
}

/// Does a request path (decoded, as segments) lie under `prefix`? `None`
/// is a path that did not decode or climbs with `..`: every prefix
/// covers it, so no rule is escaped by a malformed path.
pub(crate) fn under(path: Option<&[&str]>, prefix: &[String]) -> bool {
    match path {
        Some(p) => p.len() >= prefix.len() && p.iter().zip(prefix).all(|(a, b)| a == b),
        None => true,
    }
}

/// One prefix's rules: (allow, network).
type Set = Vec<(bool, Cidr)>;

/// The rules, one set per prefix.
#[derive(Clone, Debug, Default)]
pub(super) struct AccessRules {
    sets: Vec<(Vec<String>, Set)>,
}

impl AccessRules {
    pub(super) fn new(rules: &[AccessRule]) -> AccessRules {
        let mut sets: Vec<(Vec<String>, Set)> = Vec::new();
        for r in rules {
            match sets.iter_mut().find(|(p, _)| *p == r.prefix) {
                Some((_, set)) => set.push((r.allow, r.cidr)),
                None => sets.push((r.prefix.clone(), vec![(r.allow, r.cidr)])),
            }
        }
        AccessRules { sets }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// May `peer` have `path` (decoded segments, `None` if it did not
    /// decode)? A peer without an IP address (a Unix socket's, with no
    /// PROXY header) is held by no network.
    pub(super) fn allows(&self, path: Option<&[&str]>, peer: &Addr) -> bool {
        let ip = match peer {
            Addr::Inet(a) => Some(bits(a.ip())),
            _ => None,
        };
        self.sets
            .iter()
            .filter(|(prefix, _)| under(path, prefix))
            .all(|(_, set)| decide(set, ip))
    }
}

/// One prefix's verdict: the narrowest network holding the address, a
/// deny first among equals; none: closed if there is an allow.
fn decide(set: &[(bool, Cidr)], ip: Option<u128>) -> bool {
    let best = ip.and_then(|ip| {
        set.iter()
            .filter(|(_, c)| c.contains(ip))
            .max_by_key(|(allow, c)| (c.len, !allow))
    });
    match best {
        Some((allow, _)) => *allow,
        None => !set.iter().any(|(allow, _)| *allow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> Addr {
        Addr::Inet(std::net::SocketAddr::new(s.parse().unwrap(), 1))
    }

    fn rules(allow: &[&str], deny: &[&str]) -> AccessRules {
        let mut r: Vec<AccessRule> = allow
            .iter()
            .map(|s| AccessRule::allow(s).unwrap())
            .collect();
        r.extend(deny.iter().map(|s| AccessRule::deny(s).unwrap()));
        AccessRules::new(&r)
    }

    #[test]
    fn reads_networks_and_refuses_host_bits_past_the_length() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(bits("10.255.0.1".parse().unwrap())));
        assert!(c.contains(bits("::ffff:10.1.2.3".parse().unwrap())));
        assert!(!c.contains(bits("11.0.0.1".parse().unwrap())));
        assert!(!c.contains(bits("::a00:1".parse().unwrap())));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains(bits("2001:db8:ffff::1".parse().unwrap())));
        assert!(!c.contains(bits("2001:db9::1".parse().unwrap())));
        assert!(
            Cidr::parse("1.2.3.4")
                .unwrap()
                .contains(bits("1.2.3.4".parse().unwrap()))
        );
        assert!(
            Cidr::parse("all")
                .unwrap()
                .contains(bits("::1".parse().unwrap()))
        );
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains(bits("1.2.3.4".parse().unwrap()))
        );
        let e = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "ten",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert!(AccessRule::allow("admin=10.0.0.0/8").is_err());
        assert_eq!(
            AccessRule::deny("/admin/=::1").unwrap().prefix,
            vec!["admin".to_string()]
        );
    }

    #[test]
    fn the_narrowest_network_decides_and_an_allow_list_is_closed() {
        let r = rules(&["10.0.0.0/8"], &["10.6.0.0/16"]);
        let any = Some(&["x"][..]);
        assert!(r.allows(any, &peer("10.1.1.1")));
        assert!(!r.allows(any, &peer("10.6.1.1")));
        assert!(
            !r.allows(any, &peer("192.0.2.1")),
            "closed: there is an allow"
        );
        let r = rules(&[], &["192.0.2.0/24"]);
        assert!(r.allows(any, &peer("198.51.100.1")), "open: denies only");
        assert!(!r.allows(any, &peer("192.0.2.7")));
        // A tie goes to the deny.
        let r = rules(&["192.0.2.0/24"], &["192.0.2.0/24"]);
        assert!(!r.allows(any, &peer("192.0.2.7")));
        // No address (a Unix socket without PROXY): only open sets pass it.
        assert!(!rules(&["all"], &[]).allows(any, &Addr::Unknown));
        assert!(rules(&[], &["all"]).allows(any, &Addr::Unknown));
    }

    #[test]
    fn every_prefix_a_path_lies_under_must_let_it_through_by_whole_segments() {
        let r = rules(&["/admin=10.0.0.0/8"], &["192.0.2.66"]);
        let admin = Some(&["admin", "users"][..]);
        let other = Some(&["administrator"][..]);
        assert!(r.allows(admin, &peer("10.0.0.1")));
        assert!(!r.allows(admin, &peer("198.51.100.1")));
        assert!(r.allows(other, &peer("198.51.100.1")), "not under /admin");
        assert!(
            !r.allows(other, &peer("192.0.2.66")),
            "the deny for every path"
        );
        let r = rules(&["/admin=192.0.2.66"], &["192.0.2.66"]);
        assert!(
            !r.allows(admin, &peer("192.0.2.66")),
            "not undone under /admin"
        );
        // A path that did not decode is under every prefix.
        assert!(!rules(&["/admin=10.0.0.0/8"], &[]).allows(None, &peer("198.51.100.1")));
    }
}
