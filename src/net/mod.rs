//! Reaching the server: the URL, the dial (DNS, TCP or a proxy tunnel, TLS,
//! the upgrade, redirects), the metered stream under the socket and the
//! transport below it (TCP or a Unix-domain socket).

pub mod deflate;
pub mod dial;
pub mod endpoint;
pub mod eyeballs;
pub mod handshake;
pub mod meter;
pub mod proxy;
pub mod redirect;
pub mod unix;
