use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = tether::cli::Cli::parse();
    match tether::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            tether::report(&err);
            std::process::ExitCode::from(err.status())
        }
    }
}
