//! tether: a resilient command-line WebSocket client.
//!
//! `main.rs` parses the command line and calls [`run`]; everything else is
//! here. See ARCHITECTURE.md for the map of the modules.

pub mod cli;
pub mod config;
pub(crate) mod credentials;
pub mod error;
pub(crate) mod frontend;
pub(crate) mod generate;
pub(crate) mod headers;
pub(crate) mod io;
pub(crate) mod jq_worker;
pub(crate) mod matcher;
pub(crate) mod net;
pub(crate) mod pretty;
#[cfg(test)]
mod readme_tests;
pub(crate) mod render;
pub(crate) mod report;
pub(crate) mod rfc6455;
pub(crate) mod serve;
pub mod session;
pub mod supervisor;
pub(crate) mod template;
pub(crate) mod values;

use config::{ClientConfig, Task, Terminals, Verbosity};
pub use error::{Error, ExitCode, Result};
use net::endpoint::Endpoint;

/// Runs what the command line asks for and says how the process should exit.
pub fn run(cli: cli::Cli) -> Result<ExitCode> {
    // `--timeout` counts from here: the whole run, connecting included.
    let started = std::time::Instant::now();
    let verbosity = Verbosity::from_cli(&cli.verbosity);
    let env = |name: &str| std::env::var_os(name);
    let stderr_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_tracing(
        verbosity,
        config::colour(cli.output.color, stderr_terminal, &env),
    );
    let task = Task::from_cli(cli, Terminals::detect())?;
    let mut stdout = std::io::stdout().lock();
    match task {
        Task::Completions(shell) => return generate::completions(shell, &mut stdout),
        Task::Man => return generate::man_page(&mut stdout),
        _ => drop(stdout),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::Runtime(format!("cannot start the runtime: {err}")))?;
    let result = runtime.block_on(async {
        match task {
            Task::Connect(config) => connect(&config, started).await,
            Task::Serve(config) => {
                let listener = serve::bind(&config.addr).await?;
                let url = listener.url()?;
                if verbosity > Verbosity::Quiet {
                    render::eprint_line(&format!("echo server listening on {url}"));
                }
                // The first Ctrl-C, SIGTERM or SIGHUP closes the clients with
                // 1001; a second one ends the process at once.
                let mut signals = io::signals::Signals::new()?;
                serve::serve(listener, config.echo, async move {
                    signals.recv().await;
                })
                .await;
                Err(Error::Interrupted)
            }
            Task::Completions(_) | Task::Man => unreachable!("handled before the runtime"),
            Task::Demo(mut config) => {
                let listener = serve::bind("127.0.0.1:0").await?;
                let url = listener.url()?;
                config.session.dial.endpoint = Endpoint::parse(&url)?.endpoint;
                // The server is in this process: no proxy could reach it.
                config.session.dial.proxy = net::proxy::ProxyRules::direct();
                render::eprint_line(&format!(
                    "demo: an echo server is running at {url}; what you send comes back"
                ));
                tokio::spawn(serve::serve(
                    listener,
                    serve::EchoConfig::default(),
                    std::future::pending(),
                ));
                connect(&config, started).await
            }
        }
    });
    // A dial still resolving a name must not hold up the exit (a smoke
    // test's deadline can end the run mid-connect).
    runtime.shutdown_background();
    result
}

async fn connect(config: &ClientConfig, started: std::time::Instant) -> Result<ExitCode> {
    if config.output.verbosity > Verbosity::Quiet {
        for note in &config.notes {
            render::eprint_line(note);
        }
    }
    frontend::run(config, started).await
}

/// Prints a failure for a person: what happened, then what to do about it.
pub fn report(err: &Error) {
    render::eprint_line(&format!("error: {err}"));
    if let Some(hint) = err.hint() {
        render::eprint_line(&format!("hint: {hint}"));
    }
}

/// The diagnostics `-v` and `RUST_LOG` ask for, on stderr; `ansi` is
/// `--color`'s decision for stderr (the subscriber's own default would colour
/// a file and ignore `--color never`).
fn init_tracing(verbosity: Verbosity, ansi: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbosity {
        Verbosity::Quiet => "error",
        Verbosity::Normal => "warn",
        Verbosity::Debug => "tether=debug",
        Verbosity::Trace => "tether=trace,tungstenite=debug",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() && verbosity == Verbosity::Normal => EnvFilter::new(spec),
        _ => EnvFilter::new(default),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}
