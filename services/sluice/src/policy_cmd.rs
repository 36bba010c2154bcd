//! `sluice policy import|export|check|diff` and `sluice migrate`.

use crate::cli::{DatabaseArgs, PolicyCheckArgs, PolicyDiffArgs, PolicyImportArgs};
use crate::config::redact;
use crate::database::{self, Schema};
use crate::policy_diff;
use anyhow::Context;
use sluice_runtime::metrics::{names, unix_now};
use sluice_store::policy_file;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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

/// `sluice policy import FILE`: validates, then replaces the stored set in one transaction
/// — unless the file holds what is stored already (nothing changes, the version stays) or
/// `--dry-run` asks only for the diff.
pub async fn import(args: PolicyImportArgs) -> anyhow::Result<ExitCode> {
    let Some(parsed) = read_checked(&args.file)? else {
        eprintln!("{}: invalid, nothing imported", args.file.display());
        return Ok(ExitCode::FAILURE);
    };
    let url = args.db.url();
    let store = database::open(&url, Schema::MigrateSqlite)
        .await
        .with_context(|| format!("cannot open the policy database {}", redact(&url)))?;
    let stored = store.load().await?;
    let stored_version = store.version().await?;
    let file = args.file.display().to_string();
    let shown = redact(&url);
    let stored_label = format!("{shown} (version {stored_version})");
    let Some(diff) = policy_diff::render(&stored, &parsed.def, &stored_label, &file) else {
        store.close().await;
        println!(
            "No changes: {shown} already holds the policies of {file} (version {stored_version}); nothing imported."
        );
        return Ok(ExitCode::SUCCESS);
    };
    if args.dry_run {
        store.close().await;
        print!("{diff}");
        println!(
            "Dry run: nothing imported; {shown} stays at version {stored_version}. Run without --dry-run to apply."
        );
        return Ok(ExitCode::SUCCESS);
    }
    let imported_at = unix_now();
    store.replace_all(&parsed.def).await?;
    let version = store.version().await?;
    store.close().await;
    println!(
        "Imported {} policies and {} groups from {} into {} (version {version}).",
        parsed.def.policies.len(),
        parsed.def.groups.len(),
        args.file.display(),
        redact(&url)
    );
    if args.server != "off" {
        let server = args.server.clone();
        let outcome =
            tokio::task::spawn_blocking(move || wait_for_pickup(&server, version, imported_at))
                .await?;
        match outcome {
            Pickup::Loaded => println!("The server at {} now serves version {version}.", args.server),
            Pickup::NoServer(why) => println!(
                "No server answered at http://{}/metrics ({why}): a server on this database loads version {version} within a second of starting or of its next check; --server ADDR names another server's metrics address.",
                args.server
            ),
            Pickup::Stale(Some(seen)) => eprintln!(
                "warning: the server at {} still serves version {seen} 3 s after the import: it does not read {}, or cannot (see its log).", redact(&url),
                args.server
            ),
            Pickup::Stale(None) => eprintln!(
                "warning: the server at {} answers but reports no policy version: is it a sluice serve or edge?",
                args.server
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether a running server picked an import up.
enum Pickup {
    /// It reports the imported version, loaded after the import began.
    Loaded,
    /// Nothing answered (why).
    NoServer(String),
    /// It answers, with another version (or none) after the wait.
    Stale(Option<f64>),
}

/// Reads `server`'s `/metrics` until it reports `version` loaded at or after `since` (unix
/// seconds), for at most 3 s.
fn wait_for_pickup(server: &str, version: i64, since: f64) -> Pickup {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = None;
    loop {
        let scrape = agent
            .get(&format!("http://{server}/metrics"))
            .call()
            .and_then(|mut r| r.body_mut().read_to_string());
        match scrape {
            Ok(text) => {
                seen = metric(&text, names::POLICY_SET_VERSION);
                let loaded_at = metric(&text, names::POLICY_RELOAD_TIMESTAMP).unwrap_or(0.0);
                // The version number alone is not enough: a replaced SQLite file can repeat
                // the number the server had loaded from the old file.
                if seen == Some(version as f64) && loaded_at >= since {
                    return Pickup::Loaded;
                }
            }
            Err(e) if seen.is_none() => return Pickup::NoServer(e.to_string()),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Pickup::Stale(seen);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of an unlabelled-or-labelled sample `name` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `sluice policy export`.
pub async fn export(args: DatabaseArgs) -> anyhow::Result<ExitCode> {
    let url = args.url();
    let store = database::open(&url, Schema::MigrateSqlite)
        .await
        .with_context(|| format!("cannot open the policy database {}", redact(&url)))?;
    let def = store.load().await?;
    store.close().await;
    print!("{}", policy_file::to_toml(&def));
    Ok(ExitCode::SUCCESS)
}

/// `sluice policy diff FILE`: the stored policies against the file. Exit status 0 when
/// they are the same, 1 when they differ, 2 when the file is invalid or the database cannot
/// be read (like diff(1)).
pub async fn diff(args: PolicyDiffArgs) -> anyhow::Result<ExitCode> {
    const TROUBLE: u8 = 2;
    let parsed = match read_checked(&args.file) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            eprintln!("{}: invalid, nothing compared", args.file.display());
            return Ok(ExitCode::from(TROUBLE));
        }
        Err(e) => {
            eprintln!("sluice: {e:#}");
            return Ok(ExitCode::from(TROUBLE));
        }
    };
    let url = args.db.url();
    let stored = async {
        let store = database::open(&url, Schema::MigrateSqlite)
            .await
            .with_context(|| format!("cannot open the policy database {}", redact(&url)))?;
        let def = store.load().await?;
        let version = store.version().await?;
        store.close().await;
        anyhow::Ok((def, version))
    }
    .await;
    let (stored, version) = match stored {
        Ok(found) => found,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            return Ok(ExitCode::from(TROUBLE));
        }
    };
    let file = args.file.display().to_string();
    let shown = redact(&url);
    match policy_diff::render(
        &stored,
        &parsed.def,
        &format!("{shown} (version {version})"),
        &file,
    ) {
        None => {
            println!("{file}: the same as {shown} (version {version})");
            Ok(ExitCode::SUCCESS)
        }
        Some(diff) => {
            print!("{diff}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `sluice migrate`.
pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<ExitCode> {
    let url = args.url();
    let store = database::open(&url, Schema::Migrate)
        .await
        .with_context(|| format!("cannot open the policy database {}", redact(&url)))?;
    // Connecting applies what is pending; a second run finds nothing left.
    let applied = store.migrations_applied() + store.migrate().await?;
    let shown = redact(&url);
    match applied {
        0 => println!("{shown}: schema already up to date, nothing applied."),
        1 => println!("{shown}: applied 1 migration; the schema is up to date."),
        n => println!("{shown}: applied {n} migrations; the schema is up to date."),
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
