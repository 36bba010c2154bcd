//! README.md as a new operator follows it: its first lines are the two set-up commands, it
//! puts `sluice` on the PATH before using it, and its `main.cf` lines, pasted into a scratch
//! Postfix configuration directory, give Postfix (`postconf -c DIR`) exactly the intended
//! restriction lists.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The fenced code blocks of a Markdown text: (info string, body).
fn code_blocks(md: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in md.lines() {
        if let Some(info) = line.strip_prefix("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some((info.trim().to_string(), String::new())),
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    blocks
}

/// The README's `main.cf` lines: the code block in "Hook it into Postfix".
fn main_cf_snippet(md: &str) -> String {
    let section = md
        .split("\n## ")
        .find(|s| s.starts_with("Hook it into Postfix"))
        .expect("README has a `Hook it into Postfix` section");
    let blocks = code_blocks(section);
    assert_eq!(blocks.len(), 1, "one main.cf block in the section");
    blocks[0].1.clone()
}

/// A restriction list as Postfix reads it: names separated by commas or whitespace, a
/// `{ ... }` group belonging to the name before it (its inner whitespace normalised).
fn restrictions(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut depth = 0;
    for c in value.chars() {
        match c {
            '{' => {
                depth += 1;
                word.push(c);
            }
            '}' => {
                depth -= 1;
                word.push(c);
            }
            ',' | ' ' | '\t' | '\n' if depth == 0 => {
                if !word.is_empty() {
                    if word.starts_with('{') {
                        let last = out.last_mut().expect("a { } group after a name");
                        last.push(' ');
                        last.push_str(&word);
                    } else {
                        out.push(std::mem::take(&mut word));
                    }
                    word.clear();
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        if word.starts_with('{') {
            let last = out.last_mut().expect("a { } group after a name");
            last.push(' ');
            last.push_str(&word);
        } else {
            out.push(word);
        }
    }
    out.iter()
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// `postconf`, where Debian puts it (also outside root's PATH); `None` when not installed.
fn postconf() -> Option<PathBuf> {
    ["/usr/sbin/postconf", "/usr/bin/postconf"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// What Postfix reads for `names` from a `main.cf` holding `snippet`: one restriction list
/// per name, and postconf's warnings.
fn postfix_reads(postconf: &Path, snippet: &str, names: &[&str]) -> (Vec<Vec<String>>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.cf"), snippet).unwrap();
    std::fs::write(dir.path().join("master.cf"), "").unwrap();
    let out = Command::new(postconf)
        .arg("-c")
        .arg(dir.path())
        .arg("-h")
        .args(names)
        .output()
        .expect("run postconf");
    assert!(out.status.success(), "postconf: {out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lists: Vec<Vec<String>> = stdout.lines().map(restrictions).collect();
    assert_eq!(lists.len(), names.len(), "{stdout}");
    (lists, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The restrictions this README means to configure (Postfix's own names).
const KNOWN: &[&str] = &[
    "permit_mynetworks",
    "permit_sasl_authenticated",
    "reject_unauth_destination",
    "check_policy_service",
];

#[test]
fn readme_main_cf_lines_give_postfix_exactly_the_intended_restrictions() {
    let Some(postconf) = postconf() else {
        // CI installs Postfix (scripts/services.sh ensure_postfix); this only skips on a
        // developer machine without it.
        eprintln!(
            "SKIPPED: postconf not found; install Postfix (apt-get install postfix) to run this test"
        );
        return;
    };
    let snippet = main_cf_snippet(&readme());
    let names = [
        "smtpd_relay_restrictions",
        "smtpd_recipient_restrictions",
        "smtpd_end_of_data_restrictions",
    ];
    let (lists, warnings) = postfix_reads(&postconf, &snippet, &names);
    assert!(warnings.trim().is_empty(), "postconf warns: {warnings}");
    let policy = "check_policy_service { inet:127.0.0.1:10031, timeout=10s, default_action=DUNNO }";
    assert_eq!(
        lists[0],
        [
            "permit_mynetworks",
            "permit_sasl_authenticated",
            "reject_unauth_destination"
        ],
        "relay control"
    );
    assert_eq!(
        lists[1],
        [policy],
        "Sluice sees every recipient relay control let through (inbound and outbound)"
    );
    assert_eq!(lists[2], [policy], "END-OF-MESSAGE for sizes");
    for list in &lists {
        for r in list {
            let name = r.split(' ').next().unwrap();
            assert!(
                KNOWN.contains(&name),
                "{name:?} is not a Postfix restriction"
            );
        }
    }
}

#[test]
fn the_check_sees_an_inline_comment_become_restrictions() {
    let Some(postconf) = postconf() else {
        eprintln!("SKIPPED: postconf not found; install Postfix (apt-get install postfix)");
        return;
    };
    // What the README used to say: Postfix has no inline comments.
    let old = "smtpd_recipient_restrictions =\n    permit_mynetworks,          # or place check_policy_service first\n    reject_unauth_destination\n";
    let (lists, _) = postfix_reads(&postconf, old, &["smtpd_recipient_restrictions"]);
    assert!(lists[0].contains(&"#".to_string()), "{:?}", lists[0]);
    assert!(lists[0].contains(&"or".to_string()), "{:?}", lists[0]);
}

#[test]
fn restriction_lists_split_like_postfix() {
    assert_eq!(
        restrictions("a, b c,{ x }, check_policy_service { inet:h:1,  timeout=1s }"),
        [
            "a",
            "b",
            "c { x }",
            "check_policy_service { inet:h:1, timeout=1s }"
        ]
    );
}

#[test]
fn readme_starts_with_two_true_set_up_commands_and_puts_sluice_on_the_path_first() {
    let md = readme();
    let blocks = code_blocks(&md);
    let first: Vec<&str> = blocks[0]
        .1
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(first, ["cargo run --release -- serve", "scripts/test.sh"]);
    assert!(
        md.find("```").unwrap() < md.find("\n## ").unwrap(),
        "the commands come first"
    );
    let test_sh = root().join("scripts/test.sh");
    let mode = std::os::unix::fs::PermissionsExt::mode(&test_sh.metadata().unwrap().permissions());
    assert!(mode & 0o111 != 0, "scripts/test.sh is executable");
    // `cargo run` at the root runs the sluice binary: the only binary of the workspace's
    // default members, or the root's default-run.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("default-members = [\"services/sluice\"]")
            || manifest.contains("default-run = \"sluice\""),
        "cargo run at the root runs sluice"
    );

    // Before any command runs `sluice ...`, the README says how to get it on the PATH.
    let install = md
        .find("cargo install --locked --path services/sluice")
        .expect("README says how to install sluice");
    let first_use = blocks
        .iter()
        .filter(|(info, _)| info == "sh")
        .flat_map(|(_, body)| body.lines())
        .find(|l| l.starts_with("sluice "))
        .expect("README uses sluice");
    assert!(
        install < md.find(first_use).unwrap(),
        "installed before `{first_use}`"
    );
    assert!(root().join("services/sluice/Cargo.toml").exists());
}
