//! Where sockets come from. Each source is a thin adapter that ends in
//! `Server::add_socket` or `Server::add_stream`.

pub(crate) mod control;
pub(crate) mod inetd;
pub(crate) mod listen;
pub(crate) mod systemd;
