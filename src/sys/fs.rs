//! Opening files beneath a root: `openat2(RESOLVE_BENEATH)` lets the kernel
//! refuse `..`, absolute paths and symlinks that leave the root, however
//! they are spelled.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

/// Opens `rel` for reading beneath the folder `root` (whose path is
/// `root_path`, canonical). `O_NONBLOCK`: opening a FIFO or a device must
/// not wait for a writer and freeze the event loop; reads of regular files
/// ignore the flag. Kernels before 5.6 have no `openat2`: there the path is
/// canonicalised and checked instead (racy against a concurrent rename,
/// which is why it is only the fallback).
pub(crate) fn open_beneath(root: &OwnedFd, root_path: &Path, rel: &str) -> io::Result<File> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(root.as_fd(), rel, how) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::ENOSYS) => {
            let full = root_path.join(rel).canonicalize()?;
            if !full.starts_with(root_path) {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(full)
        }
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}
