//! Each role (`serve`, `edge`, `quota`, `admin`) has exactly its own settings: real `sluice`
//! processes are asked, for every setting and every role, whether the flag, the TOML key
//! and the environment variable are taken or refused. The list of settings is the one
//! `sluice settings` prints (docs/settings.md, compared here too); a few facts about it are
//! pinned independently so that an empty or wrong list fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const ROLES: [&str; 4] = ["serve", "edge", "quota", "admin"];

/// One row of the settings table.
#[derive(Debug)]
struct Setting {
    key: String,
    flag: String,
    env: String,
    /// Per role (in [`ROLES`] order): `None` when the role does not have it, else the
    /// default as shown (`required` for required ones).
    defaults: [Option<String>; 4],
}

impl Setting {
    fn owners(&self) -> Vec<&'static str> {
        ROLES
            .iter()
            .zip(&self.defaults)
            .filter(|(_, d)| d.is_some())
            .map(|(r, _)| *r)
            .collect()
    }
}

/// `sluice` with no `SLUICE_*` variable of the test's own environment, plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SLUICE_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run sluice")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What a role needs besides the setting under test to pass `--check-config`.
fn required_args(role: &str) -> Vec<&'static str> {
    match role {
        "edge" => vec![
            "--quota",
            "http://127.0.0.1:1",
            "--database",
            "postgres://127.0.0.1:1/sluice",
        ],
        "quota" => vec!["--redis", "redis://127.0.0.1:1"],
        // Nothing listens: --check-config binds no port.
        "admin" => vec![
            "--database",
            "postgres://127.0.0.1:1/sluice",
            "--admin-listen",
            "127.0.0.1:10970",
        ],
        _ => vec![],
    }
}

fn check_config(role: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![role, "--check-config"];
    args.extend(required_args(role));
    args.extend(extra);
    run(&args, env)
}

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').to_string()
}

fn settings_markdown() -> String {
    let out = run(&["settings"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

fn settings() -> Vec<Setting> {
    let table: Vec<Setting> = settings_markdown()
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            assert!(cells.len() >= 8, "row {line:?}");
            let default = |c: &str| (c.trim() != "-").then(|| unquote(c));
            Setting {
                key: unquote(cells[0]),
                flag: unquote(cells[1]),
                env: unquote(cells[2]),
                defaults: [
                    default(cells[3]),
                    default(cells[4]),
                    default(cells[5]),
                    default(cells[6]),
                ],
            }
        })
        .collect();
    // Pinned here, independently of the code: the list is complete and says who owns what.
    assert!(
        table.len() >= 26,
        "only {} settings: {table:?}",
        table.len()
    );
    let owners = |key: &str| {
        table
            .iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("no setting {key}"))
            .owners()
    };
    assert_eq!(owners("listen"), ["serve", "edge"]);
    assert_eq!(
        owners("metrics_listen"),
        ["serve", "edge", "quota", "admin"]
    );
    assert_eq!(owners("admin_listen"), ["serve", "admin"]);
    assert_eq!(owners("admin_tls_cert_file"), ["serve", "admin"]);
    assert_eq!(owners("redis"), ["serve", "quota"]);
    assert_eq!(owners("quota"), ["edge", "admin"]);
    assert_eq!(owners("quota_token_file"), ["edge", "admin"]);
    assert_eq!(owners("lease_multiple"), ["edge"]);
    assert_eq!(owners("buckets"), ["serve", "edge", "admin"]);
    assert_eq!(owners("grpc_listen"), ["quota"]);
    assert_eq!(owners("http_explain"), ["serve", "edge"]);
    let database = table.iter().find(|s| s.key == "database").unwrap();
    assert_eq!(
        database.defaults,
        [
            Some("sqlite://sluice.db".to_string()),
            Some("required".to_string()),
            None,
            Some("required".to_string()),
        ],
        "serve has a default database, an edge and the admin role must be told"
    );
    table
}

/// A TOML value as a flag's value: strings bare, lists comma-separated, empty as `none`.
fn as_flag(toml_value: &str) -> String {
    let value = format!("v = {toml_value}").parse::<toml::Table>().unwrap()["v"].clone();
    let text = match value {
        toml::Value::String(s) => s,
        toml::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    if text.is_empty() {
        "none".into()
    } else {
        text
    }
}

fn temp_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The keys of `--check-config` output (`key = value` lines).
fn printed_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn every_role_refuses_the_flags_and_keys_of_other_roles_and_ignores_their_variables() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for setting in settings() {
        let owners = setting.owners().join(", ");
        for (i, role) in ROLES.iter().enumerate() {
            if setting.defaults[i].is_some() {
                continue;
            }
            let what = format!("{} under `sluice {role}`", setting.key);

            let out = check_config(role, &[&setting.flag, "x"], &[]);
            assert_eq!(out.status.code(), Some(2), "flag {what}: {}", stderr(&out));
            let expected = format!(
                "{} does not apply to `sluice {role}` (it is a setting of {owners})",
                setting.flag
            );
            assert!(stderr(&out).contains(&expected), "{what}: {}", stderr(&out));

            let file = temp_file(
                dir.path(),
                &format!("{role}-{}.toml", setting.key),
                &format!("{} = \"x\"\n", setting.key),
            );
            let out = check_config(role, &["--config", file.to_str().unwrap()], &[]);
            assert_eq!(out.status.code(), Some(64), "key {what}: {}", stderr(&out));
            let expected = format!(
                "`{}` is not a setting of `sluice {role}` (it is a setting of {owners}); remove it",
                setting.key
            );
            assert!(stderr(&out).contains(&expected), "{what}: {}", stderr(&out));

            // Variables of other roles are common in shared environments: ignored, with a
            // warning naming the role.
            let out = check_config(role, &[], &[(&setting.env, "x")]);
            assert!(out.status.success(), "env {what}: {}", stderr(&out));
            let expected = format!(
                "environment variable {} is a setting of {owners}, not of `sluice {role}`: ignored",
                setting.env
            );
            assert!(stderr(&out).contains(&expected), "{what}: {}", stderr(&out));
            assert!(
                !printed_keys(&stdout(&out)).contains(&setting.key),
                "{what} printed: {}",
                stdout(&out)
            );
            checked += 1;
        }
    }
    assert!(checked >= 26, "only {checked} refusals checked");
}

#[test]
fn check_config_prints_exactly_the_roles_settings_and_reads_its_own_output_back() {
    let table = settings();
    let dir = tempfile::tempdir().unwrap();
    for (i, role) in ROLES.iter().enumerate() {
        let own: BTreeSet<String> = table
            .iter()
            .filter(|s| s.defaults[i].is_some())
            .map(|s| s.key.clone())
            .collect();
        let out = check_config(role, &[], &[]);
        assert!(out.status.success(), "{role}: {}", stderr(&out));
        let printed = stdout(&out);
        assert_eq!(printed_keys(&printed), own, "{role}:\n{printed}");
        for s in table.iter().filter(|s| s.defaults[i].is_some()) {
            let default = s.defaults[i].as_deref().unwrap();
            if default != "required" {
                let line = printed
                    .lines()
                    .find(|l| l.starts_with(&format!("{} = ", s.key)));
                assert_eq!(
                    as_flag(line.unwrap().split_once(" = ").unwrap().1),
                    default,
                    "{role} {}: the table's default is not what it runs with",
                    s.key
                );
            }
        }
        // The printed settings are a valid file for the same role, resolving the same.
        let file = temp_file(dir.path(), &format!("{role}.toml"), &printed);
        let again = run(
            &[role, "--check-config", "--config", file.to_str().unwrap()],
            &[],
        );
        assert!(again.status.success(), "{role}: {}", stderr(&again));
        assert_eq!(stdout(&again), printed, "{role}");
    }
}

#[test]
fn help_shows_each_own_setting_with_its_default_and_nothing_else() {
    let table = settings();
    for (i, role) in ROLES.iter().enumerate() {
        let out = run(&[role, "--help"], &[]);
        assert!(out.status.success());
        let help = stdout(&out);
        for s in &table {
            let start = format!("\n      {} ", s.flag);
            let listed = help.contains(&start);
            match &s.defaults[i] {
                None => assert!(!listed, "{role} --help lists {}:\n{help}", s.flag),
                Some(default) => {
                    assert!(listed, "{role} --help lacks {}:\n{help}", s.flag);
                    let note = if default == "required" {
                        "[required]".to_string()
                    } else {
                        format!("[default: {default}]")
                    };
                    let entry = &help[help.find(&start).unwrap() + 1..];
                    let entry = &entry[..entry.find("\n      -").unwrap_or(entry.len())];
                    assert!(entry.contains(&note), "{role} {}: {entry}", s.flag);
                }
            }
        }
    }
}

#[test]
fn docs_settings_table_is_what_the_code_says() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/settings.md");
    let written = std::fs::read_to_string(&docs).unwrap_or_default();
    assert!(
        written == settings_markdown(),
        "docs/settings.md is out of date: regenerate it with `cargo run -p sluice -- settings > docs/settings.md`"
    );
}

#[test]
fn flags_win_over_variables_and_variables_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = temp_file(
        dir.path(),
        "serve.toml",
        "max_connections = 10\nbuckets = 30\n",
    );
    let config = file.to_str().unwrap();
    let out = check_config(
        "serve",
        &["--config", config, "--max-connections", "30"],
        &[
            ("SLUICE_MAX_CONNECTIONS", "20"),
            ("SLUICE_MAX_LINE", "1024"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "max_connections = 30",
        "max_line = 1024",
        "buckets = 30",
        "max_request = 65536",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    let out = check_config(
        "serve",
        &["--config", config],
        &[("SLUICE_MAX_CONNECTIONS", "20")],
    );
    assert!(stdout(&out).lines().any(|l| l == "max_connections = 20"));
}

#[test]
fn unknown_variables_and_keys_are_refused_naming_the_role() {
    let out = check_config("serve", &[], &[("SLUICE_MAX_CONECTIONS", "10")]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "environment variable SLUICE_MAX_CONECTIONS is not a setting of `sluice serve` nor of any other sluice command: unset it or correct its name (did you mean SLUICE_MAX_CONNECTIONS?)"
        ),
        "{}",
        stderr(&out)
    );
    // Variables the kubelet sets for Services named `sluice...` and those of other
    // commands (explain, policy import) or of logging are not settings to refuse.
    let out = check_config(
        "quota",
        &[],
        &[
            ("SLUICE_EDGE_SERVICE_HOST", "10.0.0.1"),
            ("SLUICE_PORT", "tcp://10.0.0.1:10031"),
            ("SLUICE_PORT_10031_TCP_ADDR", "10.0.0.1"),
            ("SLUICE_LOG", "debug"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no warning");

    let dir = tempfile::tempdir().unwrap();
    let file = temp_file(dir.path(), "edge.toml", "max_conections = 10\n");
    let out = check_config("edge", &["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "`max_conections` is not a setting of `sluice edge` nor of any other role (`sluice edge --help` lists its settings)"
        ),
        "{}",
        stderr(&out)
    );
    // An unknown flag keeps clap's own error, with its suggestion.
    let out = check_config("quota", &["--redis-timeout", "5"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--redis-timeout-ms"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn admin_listen_is_the_admin_service_of_serve_and_other_roles_name_its_old_meaning() {
    // serve: the admin service's listener, off by default.
    let out = check_config("serve", &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("admin_listen = \"off\""),
        "{}",
        stdout(&out)
    );
    let out = check_config("serve", &["--admin-listen", "127.0.0.1:10035"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("admin_listen = \"127.0.0.1:10035\""),
        "{}",
        stdout(&out)
    );
    let out = check_config("serve", &["--admin-listen", "localhost"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("admin_listen \"localhost\""),
        "{}",
        stderr(&out)
    );
    // edge and quota: refused, naming serve and admin and what the key used to mean.
    for role in ["edge", "quota"] {
        let out = check_config(role, &["--admin-listen", "off"], &[]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("--admin-listen does not apply to `sluice {role}` (it is a setting of serve, admin); --admin-listen used to be the name of --metrics-listen (the metrics listener): for that, use --metrics-listen")),
            "{}",
            stderr(&out)
        );
        let out = check_config(role, &[], &[("SLUICE_ADMIN_LISTEN", "off")]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out)
                .contains("SLUICE_ADMIN_LISTEN is a setting of serve, admin, not of `sluice"),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("use `metrics_listen`"),
            "{}",
            stderr(&out)
        );
        let dir = tempfile::tempdir().unwrap();
        let file = temp_file(dir.path(), "c.toml", "admin_listen = \"off\"\n");
        let out = check_config(role, &["--config", file.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("`admin_listen` is not a setting of `sluice"),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("`admin_listen` used to be the name of `metrics_listen`"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn the_admin_role_needs_a_postgresql_database_and_a_listener() {
    let out = run(&["admin", "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    for needed in [
        "`sluice admin` needs the cluster's policy database (postgres://...): set `database`",
        "`sluice admin` needs the admin service's listener address: set `admin_listen`",
    ] {
        assert!(stderr(&out).contains(needed), "{}", stderr(&out));
    }
    let listen = ["--admin-listen", "127.0.0.1:10970"];
    let out = run(
        &[
            &["admin", "--check-config", "--database", "sqlite://x.db"],
            &listen[..],
        ]
        .concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "for a SQLite file, serve the admin service from `sluice serve --admin-listen ADDR`"
        ),
        "{}",
        stderr(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let cert = temp_file(dir.path(), "cert.pem", "not a certificate\n");
    let out = check_config(
        "admin",
        &["--admin-tls-cert-file", cert.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("admin_tls_cert_file needs admin_tls_key_file"),
        "{}",
        stderr(&out)
    );
    let out = check_config(
        "admin",
        &[
            "--admin-tls-cert-file",
            cert.to_str().unwrap(),
            "--admin-tls-key-file",
            cert.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("admin_tls_cert_file holds no PEM certificate"),
        "{}",
        stderr(&out)
    );
    // The account commands live under the same word.
    let out = run(&["admin", "user", "--help"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("passwd"), "{}", stdout(&out));
}

#[test]
fn serve_reads_the_admin_settings_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = temp_file(
        dir.path(),
        "serve.toml",
        "admin_listen = \"127.0.0.1:10971\"\nadmin_secure_cookies = true\n",
    );
    let out = check_config("serve", &["--config", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for line in [
        "admin_listen = \"127.0.0.1:10971\"",
        "admin_secure_cookies = true",
    ] {
        assert!(
            stdout(&out).lines().any(|l| l == line),
            "{line}: {}",
            stdout(&out)
        );
    }
}
