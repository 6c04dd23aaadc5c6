//! handoff: an HTTP/1.1 worker service for sockets handed over by systemd,
//! inetd or a front proxy. See the README for the architecture.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod sys;

pub mod http;
