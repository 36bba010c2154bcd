//! `sluice`: a policy service for Postfix. This file only parses the command line, sets up
//! logging and hands over to the subcommand; each subcommand lives in its own module.
#![forbid(unsafe_code)]

mod accounting;
mod admin_cmd;
mod admin_role;
mod admin_service;
mod alerts;
mod ask;
mod cli;
mod config;
mod counter_resets;
mod database;
mod descriptors;
mod explain;
mod front;
mod grpc_security;
mod hangup;
mod held;
mod history;
mod import;
mod logging;
mod manual;
mod metrics_listener;
mod persist;
mod policy_cmd;
mod policy_diff;
mod quota;
mod ready;
mod release_agent;
mod reload;
mod role_args;
mod role_check;
mod role_file;
mod serve;
mod settings_table;
mod signal;
mod startup;

use cli::{Command, PolicyCommand};
use std::process::ExitCode;

/// mimalloc: the request path allocates a few dozen small strings per request, and glibc's
/// allocator showed up as the largest single cost in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for invalid configuration or usage (`EX_USAGE`).
pub const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = cli::parse();
    let log = cli.log.clone();
    // The long-running roles set up logs and traces themselves once their configuration
    // is resolved (it says where logs go and whether traces are on).
    let role = matches!(
        cli.command,
        Command::Serve(_)
            | Command::Edge(_)
            | Command::Quota(_)
            | Command::Admin { command: None, .. }
    );
    let _log_guard = if role {
        None
    } else {
        match logging::init(&cli.log) {
            Ok(guard) => Some(guard),
            Err(e) => {
                eprintln!("sluice: {e}");
                return ExitCode::from(EX_USAGE);
            }
        }
    };
    // The quota service runs on one thread (see `quota::runtime`); every other role on a
    // multi-thread runtime.
    let runtime = match cli.command {
        Command::Quota(_) => quota::runtime(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args.into(), &log).await,
            Command::Edge(args) => serve::run_edge(args.into(), &log).await,
            Command::Quota(args) => quota::run(args.into(), &log).await,
            Command::Settings => {
                print!("{}", settings_table::markdown());
                Ok(ExitCode::SUCCESS)
            }
            Command::Policy { command } => match command {
                PolicyCommand::Import(args) => policy_cmd::import(args).await,
                PolicyCommand::Export(args) => policy_cmd::export(args).await,
                PolicyCommand::Check(args) => policy_cmd::check(args),
                PolicyCommand::Diff(args) => policy_cmd::diff(args).await,
            },
            Command::ImportPolicyd(args) => import::run(args).await,
            Command::Explain(args) => Ok(explain::run(args).await),
            Command::ReleaseAgent(args) => release_agent::run(args).await,
            Command::Migrate(args) => policy_cmd::migrate(args).await,
            Command::Admin {
                command: Some(command),
                ..
            } => admin_cmd::run(command).await,
            Command::Admin {
                command: None,
                role,
            } => admin_role::run(role.into(), &log).await,
            Command::Ask(args) => ask::run(args),
            Command::Completions(args) => manual::completions(args),
            Command::Man(args) => manual::man(args),
            Command::Accounting { command } => accounting::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {}", error_text(&e));
            // A schema this build was not made for, or a Redis too old for it, is a
            // configuration problem: waiting does not fix it.
            match database::is_schema_error(&e) || redis_unusable(&e) {
                true => ExitCode::from(EX_USAGE),
                false => ExitCode::FAILURE,
            }
        }
    }
}

/// Whether `e` says Redis cannot work with this build whatever happens (older than
/// [`sluice_redis::MIN_REDIS_VERSION`], not Redis at all).
fn redis_unusable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sluice_redis::ConnectError>(),
            Some(sluice_redis::ConnectError::TooOld { .. } | sluice_redis::ConnectError::NoVersion)
        )
    })
}

/// An error and its causes on one line, `: `-separated, each said once. Library errors
/// often print their source in their own message too (`cannot listen on X: Address in
/// use`, with the `io::Error` as source): a cause whose text is already shown is left out,
/// and one that repeats the text before it replaces that text.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        match parts.last_mut() {
            Some(last) if text.contains(last.as_str()) => *last = text,
            _ => parts.push(text),
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::error_text;
    use anyhow::Context;

    #[test]
    fn every_cause_is_said_once() {
        /// Like the edge's bind error: its message includes its source's.
        #[derive(Debug)]
        struct Bind {
            source: std::io::Error,
        }
        impl std::fmt::Display for Bind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cannot listen on 127.0.0.1:10031: {}", self.source)
            }
        }
        impl std::error::Error for Bind {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = Err::<(), _>(Bind { source: io })
            .context("cannot listen on 127.0.0.1:10031")
            .unwrap_err();
        assert_eq!(
            error_text(&e),
            "cannot listen on 127.0.0.1:10031: Address already in use"
        );
        let e = anyhow::anyhow!("disk full").context("cannot write x");
        assert_eq!(error_text(&e), "cannot write x: disk full");
    }
}
