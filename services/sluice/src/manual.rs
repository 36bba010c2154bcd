//! `sluice completions SHELL` and `sluice man DIR`: shell completion scripts and man pages
//! generated from the command-line definition in `cli.rs` (clap_complete, clap_mangen), so
//! they always describe the binary that prints them. The packages ship their output
//! (scripts/build-packages.sh).

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use anyhow::Context;
use clap::CommandFactory;
use std::process::ExitCode;

/// Prints the completion script for `args.shell` to standard output.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "sluice", &mut out);
    std::io::Write::write_all(&mut std::io::stdout(), &out).context("cannot write the script")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `sluice.1` and one page per subcommand (`sluice-serve.1`, `sluice-policy-import.1`,
/// ...) into `args.dir`, and prints the path of each page written.
pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_pages(cmd, dir, &mut written)?;
    written.sort();
    for page in written {
        println!("{}", page.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// One page for `cmd`, then one for each of its subcommands, recursively.
fn write_pages(
    cmd: clap::Command,
    dir: &std::path::Path,
    written: &mut Vec<std::path::PathBuf>,
) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    let page = clap_mangen::Man::new(cmd)
        .source(concat!("sluice ", env!("CARGO_PKG_VERSION")))
        .manual("Sluice")
        .generate_to(dir)
        .with_context(|| format!("cannot write a man page into {}", dir.display()))?;
    written.push(page);
    Ok(())
}
