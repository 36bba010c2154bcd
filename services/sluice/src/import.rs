//! `sluice import-policyd`: migrate a Policyd v2 database.

use crate::cli::ImportPolicydArgs;
use crate::config::redact;
use anyhow::Context;
use sluice_engine::compile;
use sluice_store::{policy_file, policyd};
use std::process::ExitCode;

/// Reads the Policyd database, reports, validates and (unless `--dry-run`) stores.
pub async fn run(args: ImportPolicydArgs) -> anyhow::Result<ExitCode> {
    let report = policyd::import_policyd(&args.from)
        .await
        .with_context(|| format!("cannot read the Policyd database {}", redact(&args.from)))?;
    println!("{report}");
    for note in sasl_notes(&report.def) {
        println!("{note}");
    }
    match compile(&report.def) {
        Ok(compiled) => {
            for w in &compiled.warnings {
                println!("{w}");
            }
        }
        Err(findings) => {
            for f in &findings {
                eprintln!("{f}");
            }
            eprintln!("The imported policies do not validate; nothing written.");
            return Ok(ExitCode::FAILURE);
        }
    }
    if let Some(path) = &args.export {
        std::fs::write(path, policy_file::to_toml(&report.def))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("Wrote {}", path.display());
    }
    if args.dry_run {
        println!("Dry run: nothing written to the policy database.");
        return Ok(ExitCode::SUCCESS);
    }
    let url = args.db.url();
    let store = crate::database::open(&url, crate::database::Schema::MigrateSqlite)
        .await
        .with_context(|| format!("cannot open the policy database {}", redact(&url)))?;
    store.replace_all(&report.def).await?;
    store.close().await;
    println!("Imported into {}.", redact(&url));
    Ok(ExitCode::SUCCESS)
}

/// One line per imported quota tracking `SASLUsername`, saying what changed: Policyd counted
/// all unauthenticated mail under one shared key (`SASLUsername:-`); Sluice does not count
/// unauthenticated mail in such a quota at all.
fn sasl_notes(def: &sluice_engine::model::PolicySetDef) -> Vec<String> {
    let mut notes = Vec::new();
    for p in &def.policies {
        for q in &p.quotas {
            if q.track
                .trim()
                .to_ascii_lowercase()
                .starts_with("saslusername")
            {
                notes.push(format!(
                    "changed: policy {:?} quota {:?} tracks SASLUsername: Policyd counted all unauthenticated mail as one user (\"SASLUsername:-\"); Sluice counts authenticated mail only, per user, and unauthenticated mail skips this quota.",
                    p.name, q.name
                ));
            }
        }
    }
    notes
}
