//! Basic authentication (`--basic-auth PATH_PREFIX=HTPASSWD_FILE`) with the
//! hashes Apache's `htpasswd` writes that are still worth their salt:
//! bcrypt (`-B`), SHA-256-crypt (`-2`) and SHA-512-crypt (`-5`), checked
//! by the `bcrypt` and `sha-crypt` crates, whose comparisons are constant
//! time. MD5 (`$apr1$`, htpasswd's default), crypt, SHA-1 and plain text
//! are refused at start with the line that has one.
//!
//! A hash is slow on purpose (bcrypt cost 5, htpasswd's default, is about
//! 2 ms) and runs on the event loop, so a browser's credentials, sent
//! again on every request, are checked once: what passed is remembered by
//! an HMAC of the `Authorization` value under a key made at start (not the
//! password), forgotten when the file changes. The file is looked at again
//! (its modification time) at most once a second.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;

/// Credentials remembered as passed, at most (then forgotten at once).
const REMEMBERED: usize = 4096;

/// One `--basic-auth` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRule {
    /// Path segments it covers (`/` covers every path).
    pub prefix: Vec<String>,
    /// The prefix as given, for the realm.
    pub realm: String,
    /// The htpasswd file.
    pub file: PathBuf,
}

impl AuthRule {
    /// `PATH_PREFIX=HTPASSWD_FILE`.
    pub fn parse(s: &str) -> Result<AuthRule, String> {
        match s.split_once('=') {
            Some((p, _)) if p.contains(['"', '\\']) => Err(format!(
                "{s:?}: the prefix is the realm, and may not hold \" or \\"
            )),
            Some((p, f)) if p.starts_with('/') && !f.is_empty() => Ok(AuthRule {
                prefix: super::access::segments(p),
                realm: p.to_string(),
                file: PathBuf::from(f),
            }),
            _ => Err(format!(
                "{s:?}: PATH_PREFIX=HTPASSWD_FILE (/admin=/etc/handoff/htpasswd)"
            )),
        }
    }
}

/// A hash of a kind we check.
#[derive(Clone, Debug)]
enum Hash {
    Bcrypt(String),
    ShaCrypt(String),
}

impl Hash {
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::ShaCrypt(h) => {
                use sha_crypt::PasswordVerifier;
                sha_crypt::ShaCrypt::default()
                    .verify_password(password, h.as_str())
                    .is_ok()
            }
        }
    }
}

/// Reads an htpasswd file: `user:hash` lines; blank lines and `#` comments
/// skipped. Any line with a hash we refuse fails the whole file, naming it.
fn read_users(path: &Path) -> Result<Vec<(String, Hash)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{} line {}", path.display(), n + 1);
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("{}: not user:hash", at()));
        };
        let hash = match hash {
            h if ["$2y$", "$2b$", "$2a$", "$2x$"]
                .iter()
                .any(|p| h.starts_with(p)) =>
            {
                bcrypt_cost(h).ok_or_else(|| format!("{}: a malformed bcrypt hash", at()))?;
                Hash::Bcrypt(h.to_string())
            }
            h if h.starts_with("$5$") || h.starts_with("$6$") => {
                sha_crypt::PasswordHashRef::new(h)
                    .map_err(|_| format!("{}: a malformed SHA-crypt hash", at()))?;
                Hash::ShaCrypt(h.to_string())
            }
            h => {
                let kind = if h.starts_with("$apr1$") || h.starts_with("$1$") {
                    "MD5"
                } else if h.starts_with("{SHA}") {
                    "unsalted SHA-1"
                } else if h.len() == 13 {
                    "DES crypt"
                } else {
                    "plain text or an unknown scheme"
                };
                return Err(format!(
                    "{}: user {user:?} has a {kind} password, which is refused; \
                     make it again with htpasswd -B (bcrypt), -5 (SHA-512) or -2 (SHA-256)",
                    at()
                ));
            }
        };
        users.push((user.to_string(), hash));
    }
    Ok(users)
}

/// A bcrypt hash's cost, if it is well formed (`$2y$05$` + 53 characters).
fn bcrypt_cost(h: &str) -> Option<u32> {
    let cost: u32 = h.get(4..6)?.parse().ok()?;
    (h.len() == 60 && h.as_bytes()[6] == b'$' && (4..=31).contains(&cost)).then_some(cost)
}

/// One htpasswd file's users, read again when it changes.
struct Users {
    file: PathBuf,
    users: Vec<(String, Hash)>,
    modified: Option<SystemTime>,
    looked: Instant,
}

impl Users {
    fn load(file: &Path, now: Instant) -> Result<Users, String> {
        Ok(Users {
            users: read_users(file)?,
            modified: std::fs::metadata(file).and_then(|m| m.modified()).ok(),
            file: file.to_path_buf(),
            looked: now,
        })
    }

    /// Reads the file again if it changed (looked at once a second at
    /// most). True if the users changed. A file that no longer reads keeps
    /// the users it had, with an error in the log.
    fn refresh(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.looked) < Duration::from_secs(1) {
            return false;
        }
        self.looked = now;
        let modified = std::fs::metadata(&self.file)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.modified {
            return false;
        }
        self.modified = modified;
        match read_users(&self.file) {
            Ok(u) => {
                tracing::info!(file = %self.file.display(), users = u.len(), "basic auth: read again");
                self.users = u;
                true
            }
            Err(e) => {
                tracing::error!("basic auth: {e}; the users read before stay");
                false
            }
        }
    }
}

/// The `--basic-auth` rules of one loop's site, with what it remembers.
pub(super) struct BasicAuth {
    rules: Vec<(AuthRule, RefCell<Users>)>,
    key: ring::hmac::Key,
    passed: RefCell<HashSet<[u8; 32]>>,
    /// The last credentials that failed: a request with a body is checked
    /// in `on_head` and again in `handle`, and a retry of the same wrong
    /// password costs no second hash.
    failed: std::cell::Cell<Option<[u8; 32]>>,
    /// Plain connections may carry credentials (`--basic-auth-insecure`).
    pub(super) insecure: bool,
}

/// What a request gets from `BasicAuth::check`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict<'a> {
    /// Not under any rule, or the right credentials.
    Pass,
    /// 401 with a challenge for this realm.
    Challenge(&'a str),
    /// Over plain HTTP without `--basic-auth-insecure`: 403.
    NeedsTls,
}

impl BasicAuth {
    /// Reads every file now: a missing or refused one stops the start.
    pub(super) fn new(rules: &[AuthRule], insecure: bool) -> std::io::Result<BasicAuth> {
        let now = Instant::now();
        let mut loaded = Vec::new();
        for r in rules {
            let users = Users::load(&r.file, now).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("--basic-auth: {e}"),
                )
            })?;
            loaded.push((r.clone(), RefCell::new(users)));
        }
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| std::io::Error::other("no random key for basic auth"))?;
        Ok(BasicAuth {
            rules: loaded,
            key,
            passed: RefCell::default(),
            failed: Default::default(),
            insecure,
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks a request for `path` (decoded segments; `None` did not
    /// decode: the first rule applies) against the rule with the longest
    /// prefix it lies under.
    pub(super) fn check(
        &self,
        path: Option<&[&str]>,
        authorization: Option<&[u8]>,
        tls: bool,
        now: Instant,
    ) -> Verdict<'_> {
        let Some((rule, users)) = self
            .rules
            .iter()
            .filter(|(r, _)| super::access::under(path, &r.prefix))
            .max_by_key(|(r, _)| r.prefix.len())
        else {
            return Verdict::Pass;
        };
        if !tls && !self.insecure {
            return Verdict::NeedsTls;
        }
        if users.borrow_mut().refresh(now) {
            self.passed.borrow_mut().clear();
            self.failed.set(None);
        }
        let Some(value) = authorization else {
            return Verdict::Challenge(&rule.realm);
        };
        // Remembered per rule: the same credentials may pass one file and
        // not another.
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(rule.realm.as_bytes());
        ctx.update(&[0]);
        ctx.update(value);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(ctx.sign().as_ref());
        if self.passed.borrow().contains(&tag) {
            return Verdict::Pass;
        }
        if self.failed.get() == Some(tag) || !verify(&users.borrow().users, value) {
            self.failed.set(Some(tag));
            return Verdict::Challenge(&rule.realm);
        }
        let mut passed = self.passed.borrow_mut();
        if passed.len() >= REMEMBERED {
            passed.clear();
        }
        passed.insert(tag);
        Verdict::Pass
    }
}

/// Checks `Basic base64(user:password)` against the users. An unknown user
/// costs a hash too (the first user's), so that timing does not tell which
/// names exist.
fn verify(users: &[(String, Hash)], value: &[u8]) -> bool {
    let Some(encoded) = value
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case(b"basic "))
        .map(|_| value[6..].trim_ascii())
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    match users.iter().find(|(u, _)| u.as_bytes() == user) {
        Some((_, hash)) => hash.verify(password),
        None => {
            if let Some((_, hash)) = users.first() {
                hash.verify(password);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn basic(user_password: &str) -> Vec<u8> {
        let b = base64::engine::general_purpose::STANDARD.encode(user_password);
        format!("Basic {b}").into_bytes()
    }

    // Made with `htpasswd -nbB -C 4 alice wonderland` and `openssl passwd
    // -6 -salt saltsalt secret`.
    const ALICE: &str = "alice:$2y$04$S4.c0j0hN2BnyFue3dghv..1z3D6SyJViH9wxv0kTzoIMhio00vz.";
    const BOB: &str = "bob:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

    #[test]
    fn checks_bcrypt_and_sha_crypt_and_remembers_what_passed() {
        let f = file(&format!("# users\n{ALICE}\n\n{BOB}\n"));
        let rule = AuthRule::parse(&format!("/admin={}", f.path().display())).unwrap();
        let auth = BasicAuth::new(&[rule], false).unwrap();
        let now = Instant::now();
        let admin = Some(&["admin", "x"][..]);
        let ok = basic("alice:wonderland");
        assert_eq!(auth.check(admin, Some(&ok), true, now), Verdict::Pass);
        assert_eq!(auth.passed.borrow().len(), 1);
        assert_eq!(auth.check(admin, Some(&ok), true, now), Verdict::Pass);
        assert_eq!(
            auth.check(admin, Some(&basic("bob:secret")), true, now),
            Verdict::Pass
        );
        for wrong in [
            "alice:wonderlan",
            "bob:Secret",
            "carol:wonderland",
            "alice",
            "",
        ] {
            let v = auth.check(admin, Some(&basic(wrong)), true, now);
            assert_eq!(v, Verdict::Challenge("/admin"), "{wrong}");
        }
        assert_eq!(
            auth.check(admin, Some(b"Bearer x"), true, now),
            Verdict::Challenge("/admin")
        );
        assert_eq!(
            auth.check(admin, None, true, now),
            Verdict::Challenge("/admin")
        );
        assert_eq!(auth.check(admin, Some(&ok), false, now), Verdict::NeedsTls);
        assert_eq!(
            auth.check(Some(&["public"]), None, false, now),
            Verdict::Pass
        );
        assert_eq!(
            auth.check(None, None, true, now),
            Verdict::Challenge("/admin")
        );
    }

    #[test]
    fn refuses_md5_crypt_sha1_and_plain_passwords_naming_the_line() {
        for (line, kind) in [
            ("u:$apr1$abcdefgh$0123456789012345678901", "MD5"),
            ("u:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("u:abJnggxhB/yWI", "DES crypt"),
            ("u:secret", "plain text"),
        ] {
            let f = file(&format!("{ALICE}\n{line}\n"));
            let e = read_users(f.path()).err().unwrap();
            assert!(e.contains("line 2") && e.contains(kind), "{e}");
        }
        let f = file("no colon here\n");
        assert!(
            read_users(f.path())
                .err()
                .unwrap()
                .contains("not user:hash")
        );
        assert!(AuthRule::parse("admin=/x").is_err());
        assert!(AuthRule::parse("/admin=").is_err());
        assert!(AuthRule::parse("/a\"b=/x").is_err());
    }
}
