//! Dropping root (`serve --user USER[:GROUP]`), for hosts where no
//! systemd does it for us: the process binds its ports and reads its keys
//! as root, then becomes the user, in the only order that works
//! (supplementary groups, then the group, then the user: once the uid is
//! gone the others cannot change) and checks that it cannot go back.
//! Every step that fails stops the start: a server that meant to drop
//! root and did not must not serve.

use std::ffi::CString;
use std::io;

use nix::unistd::{Gid, Group, Uid, User};

/// Who the process becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    /// The user's name, for its supplementary groups (`initgroups`);
    /// `None` for a uid with no passwd entry (no groups but `gid` then).
    pub(crate) name: Option<String>,
    pub(crate) uid: Uid,
    pub(crate) gid: Gid,
}

/// A user or group id from a number, or from a name looked up with
/// `by_name`; `what` and `noun` name the option and the thing in the error.
pub(crate) fn id_of<T>(
    v: &str,
    (what, noun): (&str, &str),
    raw: fn(u32) -> T,
    by_name: impl FnOnce(&str) -> nix::Result<Option<T>>,
) -> io::Result<T> {
    match v.parse::<u32>() {
        Ok(n) => Ok(raw(n)),
        Err(_) => by_name(v)
            .map_err(io::Error::from)?
            .ok_or_else(|| io::Error::other(format!("{what}={v}: no such {noun}"))),
    }
}

fn looked_up<T>(r: nix::Result<Option<T>>, what: &str) -> io::Result<T> {
    r.map_err(io::Error::from)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("--user: no such {what}")))
}

impl RunAs {
    /// `USER` or `USER:GROUP`, names or numbers; without a group, the
    /// user's own (its passwd entry's).
    pub(crate) fn resolve(spec: &str) -> io::Result<RunAs> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, entry) = match user.parse::<u32>() {
            Ok(n) => {
                let uid = Uid::from_raw(n);
                (uid, User::from_uid(uid).map_err(io::Error::from)?)
            }
            Err(_) => {
                let e = looked_up(User::from_name(user), &format!("user {user:?}"))?;
                (e.uid, Some(e))
            }
        };
        let gid = match group {
            Some(g) => id_of(g, ("--user group", "group"), Gid::from_raw, |n| {
                Group::from_name(n).map(|g| g.map(|g| g.gid))
            })?,
            None => match &entry {
                Some(e) => e.gid,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "--user {spec}: uid {user} has no passwd entry; name a group (--user {user}:GROUP)"
                        ),
                    ));
                }
            },
        };
        if uid.is_root() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--user {spec}: that is root; name the user to become"),
            ));
        }
        Ok(RunAs {
            name: entry.map(|e| e.name),
            uid,
            gid,
        })
    }

    /// Is this process that user and group already (a process an upgrade
    /// started, or one started as the user)?
    pub(crate) fn is_current(&self) -> bool {
        nix::unistd::getuid() == self.uid
            && nix::unistd::geteuid() == self.uid
            && nix::unistd::getgid() == self.gid
            && nix::unistd::getegid() == self.gid
    }

    /// Becomes the user, for every thread of the process (glibc's wrappers
    /// change them all), and checks it holds. Nothing to do if it is the
    /// user already; an error if it is neither root nor the user.
    pub(crate) fn become_it(&self) -> io::Result<()> {
        if self.is_current() {
            return Ok(());
        }
        let step = |what: &str, r: nix::Result<()>| {
            r.map_err(|e| {
                io::Error::other(format!("--user: {what} failed: {e}; not serving as root"))
            })
        };
        if !nix::unistd::geteuid().is_root() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "--user: changing to uid {} needs root; running as uid {}",
                    self.uid,
                    nix::unistd::geteuid()
                ),
            ));
        }
        match &self.name {
            Some(name) => {
                let name = CString::new(name.as_str()).map_err(io::Error::other)?;
                step("initgroups", nix::unistd::initgroups(&name, self.gid))?;
            }
            None => step("setgroups", nix::unistd::setgroups(&[self.gid]))?,
        }
        step("setgid", nix::unistd::setgid(self.gid))?;
        step("setuid", nix::unistd::setuid(self.uid))?;
        let groups = nix::unistd::getgroups().map_err(io::Error::from)?;
        let root_group = groups.iter().any(|g| g.as_raw() == 0) && self.gid.as_raw() != 0;
        if !self.is_current() || root_group || nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(io::Error::other(
                "--user: the process could still act as root after dropping it; not serving",
            ));
        }
        Ok(())
    }
}
