//! Where sockets come from. Each source is a thin adapter that ends in
//! `Server::add_socket` or `Server::add_stream`.

pub mod control;
pub mod inetd;
pub mod listen;
pub mod systemd;
