//! The process's own streams: the stdin reader thread, the stdout writer
//! thread, and the signals.

pub mod input;
pub mod output;
pub mod signals;
