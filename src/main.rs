use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // clap's own errors and help follow --color as the rest of stderr does;
    // the flag is read before clap has parsed anything.
    let command = tether::cli::Cli::command().color(tether::cli::clap_colour(&args));
    let cli = command
        .try_get_matches_from(&args)
        .and_then(|matches| tether::cli::Cli::from_arg_matches(&matches))
        .unwrap_or_else(|err| err.exit());
    match tether::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            tether::report(&err);
            std::process::ExitCode::from(err.status())
        }
    }
}
