//! Which settings each role has, read off the role's command line (one definition per
//! setting, in [`crate::role_args`]), and the refusals for everything else:
//!
//! - a flag of another role: "--listen does not apply to `sluice quota` (it is a setting of
//!   serve, edge)" (a usage error, exit code 2, as for any unknown flag);
//! - a TOML key of another role or of none: refused naming the role (exit code 64);
//! - a `SLUICE_*` environment variable: one of this role's settings is used; a setting of
//!   another role only is ignored with a warning (shared environments commonly set the
//!   variables of several roles); a variable no sluice command reads is refused (exit code
//!   64; most likely a misspelt name), except Kubernetes service-link variables
//!   (`SLUICE_..._SERVICE_HOST`, `..._PORT...`), which the kubelet sets on its own;
//! - `admin_listen` was once the metrics listener's name; it is now the admin service's
//!   setting (serve, admin). A role without it refuses it naming `metrics_listen` as well, for
//!   configurations written for the old meaning.

use crate::config::Role;
use crate::role_args::{AdminRoleArgs, EdgeArgs, FileArgs, QuotaArgs, ServeArgs};
use clap::{Args, Command, CommandFactory};

/// Every long-running role, in the order of the documentation.
pub const ROLES: [Role; 4] = [Role::Serve, Role::Edge, Role::Quota, Role::Admin];

/// Keys that once named another setting: (key, the setting it used to name).
const FORMER_MEANINGS: &[(&str, &str)] = &[("admin_listen", "metrics_listen")];

/// The command line of `role` (its flags and their environment variables).
pub fn command(role: Role) -> Command {
    let cmd = Command::new(role.name());
    match role {
        Role::Serve => ServeArgs::augment_args(cmd),
        Role::Edge => EdgeArgs::augment_args(cmd),
        Role::Quota => QuotaArgs::augment_args(cmd),
        Role::Admin => AdminRoleArgs::augment_args(cmd),
    }
}

/// The settings of `role` (their TOML keys), in the order of its `--help`.
pub fn keys(role: Role) -> Vec<String> {
    let not_settings: Vec<String> = FileArgs::augment_args(Command::new("file"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    command(role)
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|k| !not_settings.contains(k))
        .collect()
}

/// The roles that have the setting `key`.
pub fn owners(key: &str) -> Vec<Role> {
    ROLES
        .into_iter()
        .filter(|&r| keys(r).iter().any(|k| k == key))
        .collect()
}

/// The environment variable of the setting `key`.
pub fn env_name(key: &str) -> String {
    ROLES
        .iter()
        .flat_map(|&r| command(r).get_arguments().cloned().collect::<Vec<_>>())
        .find(|a| a.get_id() == key)
        .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("SLUICE_{}", key.to_uppercase()))
}

fn role_list(roles: &[Role]) -> String {
    roles
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// For a key that used to name another setting: a sentence naming that setting, as TOML
/// keys or (`as_flags`) as flags.
fn former_meaning(key: &str, as_flags: bool) -> String {
    let show = |k: &str| {
        if as_flags {
            format!("--{}", k.replace('_', "-"))
        } else {
            format!("`{k}`")
        }
    };
    FORMER_MEANINGS
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(String::new(), |(old, was)| {
            format!(
                "; {} used to be the name of {} (the metrics listener): for that, use {}",
                show(old),
                show(was),
                show(was)
            )
        })
}

/// Why the TOML key `key` is refused by `role`, if it is.
pub fn key_problem(role: Role, key: &str) -> Option<String> {
    if keys(role).iter().any(|k| k == key) {
        return None;
    }
    let owners = owners(key);
    Some(if owners.is_empty() {
        format!(
            "`{key}` is not a setting of `sluice {role}` nor of any other role (`sluice {role} --help` lists its settings)"
        )
    } else {
        format!(
            "`{key}` is not a setting of `sluice {role}` (it is a setting of {}); remove it{}",
            role_list(&owners),
            former_meaning(key, false)
        )
    })
}

/// Why the flag `arg` (`--name` or `--name=value`) is refused by `role`, when it is a
/// setting of another role or was renamed; `None` for flags no role knows (clap's own
/// error, with its suggestion, says that best).
pub fn flag_problem(role: Role, arg: &str) -> Option<String> {
    let name = arg.strip_prefix("--")?.split('=').next()?;
    let key = name.replace('-', "_");
    let owners = owners(&key);
    (!owners.is_empty() && !owners.contains(&role)).then(|| {
        format!(
            "--{name} does not apply to `sluice {role}` (it is a setting of {}){}",
            role_list(&owners),
            former_meaning(&key, true)
        )
    })
}

/// Every environment variable some sluice command reads.
fn known_variables() -> Vec<String> {
    fn walk(cmd: &Command, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if let Some(env) = a.get_env() {
                out.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&crate::cli::Cli::command(), &mut out);
    out
}

/// Whether `name` looks like a variable the kubelet sets for a Service called `sluice...`
/// (`SLUICE_SERVICE_HOST`, `SLUICE_EDGE_SERVICE_PORT_GRPC`, `SLUICE_PORT_10031_TCP_ADDR`).
fn service_link(name: &str) -> bool {
    name.contains("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
        || name.ends_with("_PORT")
        || name
            .split("_PORT_")
            .nth(1)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// What the `SLUICE_*` variables among `vars` mean for `role`: (errors, warnings).
pub fn env_problems(
    role: Role,
    vars: impl IntoIterator<Item = String>,
) -> (Vec<String>, Vec<String>) {
    let own: Vec<String> = command(role)
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    let known = known_variables();
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for name in vars {
        let Some(rest) = name.strip_prefix("SLUICE_") else {
            continue;
        };
        if own.contains(&name) {
            continue;
        }
        let key = rest.to_lowercase();
        let owners = owners(&key);
        if !owners.is_empty() && env_name(&key) == name {
            warnings.push(format!(
                "environment variable {name} is a setting of {}, not of `sluice {role}`: ignored{}",
                role_list(&owners),
                former_meaning(&key, false)
            ));
        } else if !known.contains(&name) && !service_link(&name) {
            let near = own
                .iter()
                .filter(|o| strsim::levenshtein(o, &name) <= 2)
                .min_by_key(|o| strsim::levenshtein(o, &name));
            let hint = near.map_or(String::new(), |n| format!(" (did you mean {n}?)"));
            errors.push(format!(
                "environment variable {name} is not a setting of `sluice {role}` nor of any other sluice command: unset it or correct its name{hint}"
            ));
        }
    }
    (errors, warnings)
}

/// The role subcommands of `cli` with each setting's default (or "required") appended to
/// its help, taken from [`crate::config::defaults`].
pub fn with_defaults(mut cli: Command) -> Command {
    for role in ROLES {
        let own = keys(role);
        let required = crate::config::required(role);
        let defaults = crate::config::defaults(role);
        cli = cli.mut_subcommand(role.name(), |mut sub| {
            for (key, value) in defaults.iter().filter(|(k, _)| own.iter().any(|o| o == k)) {
                let note = if required.contains(key) {
                    "[required]".to_string()
                } else {
                    format!("[default: {}]", flag_value(value))
                };
                sub = sub.mut_arg(*key, |a| {
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    let long = a.get_long_help().map(|h| h.to_string());
                    let a = a.help(format!("{help} {note}"));
                    match long {
                        Some(long) => a.long_help(format!("{long}\n\n{note}")),
                        None => a,
                    }
                });
            }
            sub
        });
    }
    cli
}

/// A `--check-config` value (TOML) as it would be written on the command line: strings
/// unquoted, lists comma-separated, nothing as `none`.
pub fn flag_value(toml_value: &str) -> String {
    let parsed = format!("v = {toml_value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    let text = match parsed {
        Some(toml::Value::String(s)) => s,
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
        None => toml_value.to_string(),
    };
    if text.is_empty() {
        "none".into()
    } else {
        text
    }
}

/// Rewrites clap's "unexpected argument" error for a flag of another role (or a renamed
/// flag) into one naming the role; other errors pass unchanged. `cli` is the built command
/// line, `argv` the arguments as given.
pub fn explain_flag_error(error: clap::Error, cli: &mut Command, argv: &[String]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::UnknownArgument {
        return error;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let Some(role) = argv
        .iter()
        .skip(1)
        .find_map(|a| ROLES.into_iter().find(|r| r.name() == a))
    else {
        return error;
    };
    let Some(problem) = flag_problem(role, arg) else {
        return error;
    };
    match cli.find_subcommand_mut(role.name()) {
        Some(sub) => sub.error(ErrorKind::UnknownArgument, problem),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_link_variables_are_told_from_settings() {
        for name in [
            "SLUICE_PORT",
            "SLUICE_SERVICE_HOST",
            "SLUICE_EDGE_SERVICE_PORT_POLICY",
            "SLUICE_QUOTA_PORT_10033_TCP_ADDR",
        ] {
            assert!(service_link(name), "{name}");
        }
        for role in ROLES {
            for key in keys(role) {
                let env = env_name(&key);
                assert!(!service_link(&env), "{env} looks like a service link");
            }
        }
        assert!(!service_link("SLUICE_MAX_CONECTIONS"));
    }

    #[test]
    fn values_are_shown_as_flags_take_them() {
        assert_eq!(flag_value("\"127.0.0.1:10032\""), "127.0.0.1:10032");
        assert_eq!(flag_value("[\"a:1\", \"b:2\"]"), "a:1,b:2");
        assert_eq!(flag_value("[]"), "none");
        assert_eq!(flag_value("\"\""), "none");
        assert_eq!(flag_value("4096"), "4096");
        assert_eq!(flag_value("1.0"), "1.0");
    }
}
