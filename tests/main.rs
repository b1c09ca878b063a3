//! The integration tests, as one test binary: a module for each part of the suite, all
//! sharing `support/`. One binary links once, and `cargo test` runs every test in one
//! pool of threads instead of one binary after another. Run a part with its module path:
//! `cargo test --test integration pipe::` or `cargo test --test integration conformance`.

mod support;

mod bench_script;
mod colour;
mod compress;
mod confirm_by_reply;
mod conformance;
mod connect;
mod credentials;
mod exec;
mod eyeballs;
mod fault_proxy;
mod generated;
mod handshake;
mod hostile;
mod interop;
mod matching;
mod node_peer;
mod pipe;
mod proxy;
mod python_peer;
mod readme_examples;
mod repl;
mod replies;
mod resilience;
mod secrets;
mod session_rules;
mod smoke;
mod supervisor;
mod support_tls;
mod unix;
mod wire;
