//! The ways a person or a script drives a session. Each frontend consumes the
//! supervisor's events and sends it commands; rendering goes through
//! [`crate::render::Renderer`].

pub mod pipe;
pub mod repl;
pub mod smoke;
