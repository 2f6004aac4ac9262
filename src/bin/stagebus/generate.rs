//! `stagebus generate` (hidden, for installers): the man page stagebus(1)
//! and the shell completions, drawn from the same clap description as the
//! parser, so they cannot drift from it.
//!
//! ```text
//! stagebus generate man > stagebus.1
//! stagebus generate completions bash > stagebus
//! ```

use crate::command_line::base_command;
use crate::Failure;
use clap_complete::Shell;
use std::io::{self, Write};

/// `stagebus generate`'s words.
#[derive(clap::Args, Debug)]
pub(crate) struct GenerateArgs {
    /// what to print
    #[command(subcommand)]
    pub(crate) what: What,
}

/// What `stagebus generate` prints.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum What {
    /// the man page stagebus(1), as roff
    Man,
    /// the completions for SHELL (bash, zsh, fish, elvish, powershell)
    Completions {
        /// the shell
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },
}

pub(crate) fn cmd_generate(args: &GenerateArgs) -> Result<(), Failure> {
    let mut out = Vec::new();
    match &args.what {
        What::Man => man_page(&mut out),
        What::Completions { shell } => {
            let mut cmd = public_command();
            clap_complete::generate(*shell, &mut cmd, "stagebus", &mut out);
            Ok(())
        }
    }
    .map_err(|e| Failure::Failed(format!("cannot render: {e}")))?;
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::Failed(format!("cannot write to stdout: {e}")))
}

/// The command line without its hidden commands.
fn public_command() -> clap::Command {
    base_command()
}

/// stagebus(1): the top level page, then one section per command with its
/// synopsis and its flags, then the exit status.
fn man_page(out: &mut Vec<u8>) -> io::Result<()> {
    let cmd = public_command();
    let man = clap_mangen::Man::new(cmd.clone()).section("1");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_command(out, sub)?;
    }
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    writeln!(
        out,
        "0 on success; 1 when the operation failed (the reason is printed to stderr as\n\
         .BR \"stagebus: \" <error>);\n\
         2 when the command line is wrong (a message and the usage go to stderr)."
    )?;
    writeln!(out, ".SH \"JSON ARGS\"")?;
    writeln!(
        out,
        ".B stagebus call\nprints each response as one JSON line {{\"type\":KIND,\"args\":{{…}}}} and takes args as\n\
         .I key=value\nwords or as one JSON object\n(.BR \\-\\-json\\-args ).\n\
         Bytes are written {{\"$bytes\":\"<hex>\"}}, two hex digits a byte, both ways."
    )?;
    man.render_version_section(out)
}

/// One command: `.SS`, its synopsis, its summary, then its flags as a list.
fn render_command(out: &mut Vec<u8>, sub: &clap::Command) -> io::Result<()> {
    let usage = sub
        .clone()
        .render_usage()
        .to_string()
        .trim_start_matches("Usage: ")
        .to_string();
    writeln!(out, ".SS \"{}\"", roff_escape(sub.get_name()))?;
    writeln!(out, ".B {}", roff_escape(&usage))?;
    writeln!(out, ".br")?;
    if let Some(about) = sub.get_about() {
        writeln!(out, "{}", roff_escape(&about.to_string()))?;
    }
    for arg in sub.get_arguments() {
        if arg.is_hide_set()
            || matches!(
                arg.get_action(),
                clap::ArgAction::Help | clap::ArgAction::Version
            )
        {
            continue;
        }
        let value = arg
            .get_value_names()
            .and_then(|n| n.first())
            .map(|n| n.to_string());
        let head = match (arg.get_long(), value) {
            (Some(long), Some(value)) if arg.get_action().takes_values() => {
                format!(
                    "\\fB\\-\\-{}\\fR \\fI{}\\fR",
                    roff_escape(long),
                    roff_escape(&value)
                )
            }
            (Some(long), _) => format!("\\fB\\-\\-{}\\fR", roff_escape(long)),
            (None, Some(value)) => format!("\\fI{}\\fR", roff_escape(&value)),
            (None, None) => roff_escape(arg.get_id().as_str()),
        };
        writeln!(out, ".TP\n{head}")?;
        if let Some(help) = arg.get_help() {
            writeln!(out, "{}", roff_escape(&help.to_string()))?;
        }
    }
    Ok(())
}

/// Text made safe for a roff line: backslashes and dashes escaped, and a
/// leading dot or quote kept from reading as a request.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
