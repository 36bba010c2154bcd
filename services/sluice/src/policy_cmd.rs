//! `sluice policy import|export|check` and `sluice migrate`.

use crate::cli::{DatabaseArgs, PolicyCheckArgs, PolicyImportArgs};
use anyhow::Context;
use sluice_store::{policy_file, Store};
use std::process::ExitCode;

/// Reads and validates a policy file, printing every finding. `None` when it has errors.
fn read_checked(path: &std::path::Path) -> anyhow::Result<Option<policy_file::ParsedFile>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.display().to_string();
    match policy_file::parse(&name, &text) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                eprintln!("{w}");
            }
            Ok(Some(parsed))
        }
        Err(findings) => {
            for f in &findings {
                eprintln!("{f}");
            }
            Ok(None)
        }
    }
}

/// `sluice policy check FILE`.
pub fn check(args: PolicyCheckArgs) -> anyhow::Result<ExitCode> {
    let Some(parsed) = read_checked(&args.file)? else {
        eprintln!("{}: invalid", args.file.display());
        return Ok(ExitCode::FAILURE);
    };
    let d = &parsed.def;
    println!(
        "{}: ok ({} policies, {} groups, {} quotas, {} warnings)",
        args.file.display(),
        d.policies.len(),
        d.groups.len(),
        d.policies.iter().map(|p| p.quotas.len()).sum::<usize>(),
        parsed.warnings.len()
    );
    if args.strict && !parsed.warnings.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `sluice policy import FILE`: validates, then replaces the stored set in one transaction.
pub async fn import(args: PolicyImportArgs) -> anyhow::Result<ExitCode> {
    let Some(parsed) = read_checked(&args.file)? else {
        eprintln!("{}: invalid, nothing imported", args.file.display());
        return Ok(ExitCode::FAILURE);
    };
    let url = args.db.url();
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    store.replace_all(&parsed.def).await?;
    let version = store.version().await?;
    store.close().await;
    println!(
        "Imported {} policies and {} groups from {} into {url} (version {version}); running servers reload within a second.",
        parsed.def.policies.len(),
        parsed.def.groups.len(),
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `sluice policy export`.
pub async fn export(args: DatabaseArgs) -> anyhow::Result<ExitCode> {
    let url = args.url();
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let def = store.load().await?;
    store.close().await;
    print!("{}", policy_file::to_toml(&def));
    Ok(ExitCode::SUCCESS)
}

/// `sluice migrate`.
pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<ExitCode> {
    let url = args.url();
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    store.migrate().await?;
    println!("{url}: schema is up to date ({})", store.backend_name());
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
