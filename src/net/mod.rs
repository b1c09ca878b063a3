//! Reaching the server: the URL, the dial (DNS, TCP or a proxy tunnel, TLS,
//! the upgrade, redirects) and the metered stream under the socket.

pub mod dial;
pub mod endpoint;
pub mod eyeballs;
pub mod handshake;
pub mod meter;
pub mod proxy;
pub mod redirect;
