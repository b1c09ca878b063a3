//! Shell completions and the man page, generated from the clap definition so
//! they cannot drift from the real flags. The committed copies in
//! `completions/` and `doc/` are checked against these by a test.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::cli::{Cli, EXAMPLES};
use crate::error::{EXIT_CODE_TABLE, Error, ExitCode, Result};

pub fn completions(shell: Shell, out: &mut dyn Write) -> Result<ExitCode> {
    clap_complete::generate(shell, &mut Cli::command(), "tether", out);
    Ok(ExitCode::Success)
}

pub fn man_page(out: &mut dyn Write) -> Result<ExitCode> {
    render_man(out).map_err(|err| Error::Runtime(format!("cannot write the man page: {err}")))?;
    Ok(ExitCode::Success)
}

fn render_man(out: &mut dyn Write) -> std::io::Result<()> {
    // The examples and exit codes get sections of their own below.
    let command = Cli::command().after_long_help("").after_help("");
    let man = clap_mangen::Man::new(command).date("2026-11-21");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;

    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODE_TABLE {
        roff.control("TP", [])
            .text([bold(code.to_string())])
            .text([roman(*meaning)]);
    }

    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in [
        (
            "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY",
            "Proxies, as curl reads them (upper or lower case); --no-proxy ignores them.",
        ),
        (
            "NO_COLOR",
            "When set and not empty, no colour (unless --color always).",
        ),
        (
            "RUST_LOG",
            "Diagnostics filter, e.g. tether=debug; -v and -q take precedence.",
        ),
        (
            "XDG_STATE_HOME",
            "Where the interactive history is kept (see FILES).",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(name)])
            .text([roman(meaning)]);
    }

    roff.control("SH", ["FILES"]);
    roff.control("TP", [])
        .text([italic("$XDG_STATE_HOME/tether/history")])
        .text([roman(
            "History of the interactive session, mode 0600; ~/.local/state/tether/history when XDG_STATE_HOME is unset.",
        )]);

    roff.control("SH", ["EXAMPLES"]);
    for (command, what) in EXAMPLES {
        roff.control("TP", [])
            .text([roman(*what)])
            .text([bold(*command)]);
    }
    roff.to_writer(out)?;
    man.render_version_section(out)
}
