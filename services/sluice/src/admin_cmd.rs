//! `sluice admin user add|list|remove|passwd` and `sluice admin token add|list|revoke`: the
//! admin service's accounts and API tokens, managed where the database is (there is no
//! default account: the first one is made here).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context};
use sluice_admin::secret;
use sluice_store::{AdminRole, Store};

use crate::cli::{AccountRole, AdminCommand, DatabaseArgs, TokenCommand, UserCommand};
use crate::config::redact;

/// Runs one `sluice admin` subcommand.
pub async fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdminCommand::User { command } => match command {
            UserCommand::Add(args) => {
                let role = match args.role {
                    AccountRole::Admin => AdminRole::Admin,
                    AccountRole::Viewer => AdminRole::Viewer,
                    AccountRole::DomainAdmin => AdminRole::DomainAdmin,
                };
                let domains = check_domains(role, &args.domains)?;
                check_name(&args.name)?;
                let store = open(&args.db).await?;
                if store.account(&args.name).await?.is_some() {
                    bail!(
                        "an account named {:?} exists already (sluice admin user passwd changes its password)",
                        args.name
                    );
                }
                let hash = new_password_hash(&args.name)?;
                store
                    .add_account(&args.name, role, &domains, &hash, now_ms())
                    .await?;
                store.close().await;
                println!("Added {role} account {:?}.", args.name);
                Ok(ExitCode::SUCCESS)
            }
            UserCommand::List(db) => {
                let store = open(&db).await?;
                let accounts = store.accounts().await?;
                store.close().await;
                if accounts.is_empty() {
                    println!("No accounts. Add the first: sluice admin user add NAME --role admin");
                }
                for a in accounts {
                    if a.domains.is_empty() {
                        println!("{}\t{}", a.name, a.role);
                    } else {
                        println!("{}\t{}\t{}", a.name, a.role, a.domains.join(","));
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            UserCommand::Remove(args) => {
                let store = open(&args.db).await?;
                let removed = store.remove_account(&args.name).await?;
                store.close().await;
                if !removed {
                    bail!(
                        "no account named {:?} (sluice admin user list shows them)",
                        args.name
                    );
                }
                println!(
                    "Removed account {:?} with its tokens and sessions.",
                    args.name
                );
                Ok(ExitCode::SUCCESS)
            }
            UserCommand::Passwd(args) => {
                let store = open(&args.db).await?;
                if store.account(&args.name).await?.is_none() {
                    bail!(
                        "no account named {:?} (sluice admin user list shows them)",
                        args.name
                    );
                }
                let hash = new_password_hash(&args.name)?;
                store.set_password_hash(&args.name, &hash).await?;
                store.close().await;
                println!(
                    "Changed the password of {:?}; its sessions ended.",
                    args.name
                );
                Ok(ExitCode::SUCCESS)
            }
        },
        AdminCommand::Token { command } => match command {
            TokenCommand::Add(args) => {
                check_name(&args.name)?;
                let store = open(&args.db).await?;
                let token = secret::new_token()?;
                store
                    .add_token(&args.name, &args.user, &secret::digest(&token), now_ms())
                    .await?;
                store.close().await;
                eprintln!(
                    "Token {:?} acts as {:?}. It is shown once, now; only its digest is stored:",
                    args.name, args.user
                );
                println!("{token}");
                Ok(ExitCode::SUCCESS)
            }
            TokenCommand::List(db) => {
                let store = open(&db).await?;
                let tokens = store.tokens().await?;
                store.close().await;
                if tokens.is_empty() {
                    println!("No tokens.");
                }
                for t in tokens {
                    println!("{}\t{}", t.name, t.account);
                }
                Ok(ExitCode::SUCCESS)
            }
            TokenCommand::Revoke(args) => {
                let store = open(&args.db).await?;
                let revoked = store.revoke_token(&args.name).await?;
                store.close().await;
                if !revoked {
                    bail!(
                        "no token named {:?} (sluice admin token list shows them)",
                        args.name
                    );
                }
                println!("Revoked token {:?}.", args.name);
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

async fn open(db: &DatabaseArgs) -> anyhow::Result<Store> {
    let url = db.url();
    Store::connect(&url)
        .await
        .with_context(|| format!("cannot open the policy database {}", redact(&url)))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Names of accounts and tokens: printable, no spaces, at most 64 characters.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if !ok {
        bail!("invalid name {name:?}: use 1 to 64 characters without spaces");
    }
    Ok(())
}

/// The domains of an account: required for domain-admin, refused for the other roles,
/// lower-cased, plain domain names.
fn check_domains(role: AdminRole, domains: &[String]) -> anyhow::Result<Vec<String>> {
    match (role, domains.is_empty()) {
        (AdminRole::DomainAdmin, true) => {
            bail!("a domain-admin needs at least one --domain (e.g. --domain example.org)")
        }
        (AdminRole::Admin | AdminRole::Viewer, false) => {
            bail!("--domain is only for --role domain-admin (an {role} sees every domain)")
        }
        _ => {}
    }
    domains
        .iter()
        .map(|d| {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            let valid = d.contains('.')
                && d.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if valid {
                Ok(d)
            } else {
                Err(anyhow::anyhow!(
                    "--domain {d:?} is not a domain name (e.g. example.org)"
                ))
            }
        })
        .collect()
}

/// Reads a new password (prompted twice without echo on a terminal, else the first line of
/// standard input) and hashes it.
fn new_password_hash(name: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {name}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the passwords differ; nothing changed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    Ok(secret::hash_password(&password)?)
}
