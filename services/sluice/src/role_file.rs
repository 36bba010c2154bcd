//! A role's TOML configuration file: its keys are checked against the role's settings
//! (a key of another role, a renamed key and an unknown key are each refused with the role
//! named), then its values are laid under the flags and environment variables given.
//!
//! The layering is these few lines over serde and toml rather than a layering crate such as
//! figment: clap already reads each role's flags and environment variables (and shows them
//! in `--help`), so only the file remains to lay under them, and its keys must be checked
//! against the role's own command line to name the role in refusals.

use crate::config::Role;
use crate::role_args::RoleArgs;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// `args` (flags and environment) over the values of the file at `path`; every problem
/// with the file is pushed to `errors`, prefixed with the file's name.
pub fn layer(args: RoleArgs, path: &Path, role: Role, errors: &mut Vec<String>) -> RoleArgs {
    let file = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            errors.push(format!("{file}: cannot read: {e}"));
            return args;
        }
    };
    let table = match text.parse::<toml::Table>() {
        Ok(table) => table,
        Err(e) => {
            errors.push(format!("{file}: {}", e.to_string().trim()));
            return args;
        }
    };
    for key in table.keys() {
        if let Some(problem) = crate::role_check::key_problem(role, key) {
            errors.push(format!("{file}: {problem}"));
        }
    }
    let mut out = args.clone();
    macro_rules! group {
        ($field:ident) => {
            match over(&args.$field, &text) {
                Ok(g) => out.$field = g,
                Err(e) => errors.push(format!("{file}: {e}")),
            }
        };
    }
    group!(common);
    group!(database);
    group!(policy);
    group!(window);
    group!(redis);
    group!(counters);
    group!(quota_client);
    group!(edge_quota);
    group!(grpc);
    group!(admin);
    group!(history);
    group!(alerts);
    out
}

/// The group `given` with the file's values filled in where nothing was given. The file
/// is read as the group (other keys ignored here: they were checked by name already), so
/// a wrong value's error names its key, line and column.
fn over<G: Serialize + DeserializeOwned>(given: &G, text: &str) -> Result<G, String> {
    let file: G = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    let table = |g: &G| match toml::Value::try_from(g) {
        Ok(toml::Value::Table(t)) => t,
        // A group is a struct of optional values: it always serializes to a table.
        _ => unreachable!("a settings group serializes to a TOML table"),
    };
    let mut merged = table(&file);
    merged.extend(table(given));
    toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string().trim().to_string())
}
