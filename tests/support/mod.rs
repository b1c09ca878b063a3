#![allow(dead_code, unused_imports)]

pub mod cmd;
pub mod fault_proxy;
pub mod hostile;
pub mod proxies;
pub mod pty;
pub mod python;
pub mod server;
pub mod tls;

pub use cmd::Tether;
pub use server::Server;
