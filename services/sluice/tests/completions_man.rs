//! `sluice completions` and `sluice man`: generated from the command-line definition, they
//! must name every subcommand the binary's own `--help` lists, and bash must complete them.

use sluice_test_support::output_text;
use std::collections::BTreeSet;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn sluice(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().expect("run sluice");
    assert!(
        out.status.success(),
        "sluice {args:?}: {}",
        output_text(&out)
    );
    out
}

/// The subcommands `sluice [PATH...] --help` lists under "Commands:" (without `help`;
/// none for a command without subcommands).
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = String::from_utf8(sluice(&args).stdout).unwrap();
    let Some(section) = help.split("Commands:\n").nth(1) else {
        assert!(!path.is_empty(), "no Commands: in {help}");
        return Vec::new();
    };
    section
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect()
}

/// Every (parent path, subcommand) pair of the command tree, as `--help` shows it.
fn command_tree() -> Vec<Vec<String>> {
    fn walk(path: &[String], tree: &mut Vec<Vec<String>>) {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&args) {
            let mut child = path.to_vec();
            child.push(sub);
            walk(&child, tree);
            tree.push(child);
        }
    }
    let mut tree = Vec::new();
    walk(&[], &mut tree);
    tree
}

#[test]
fn help_lists_the_known_subcommands() {
    let tree = command_tree();
    let have: BTreeSet<String> = tree.iter().map(|p| p.join(" ")).collect();
    for want in [
        "serve",
        "edge",
        "quota",
        "policy",
        "policy import",
        "policy export",
        "policy check",
        "import-policyd",
        "explain",
        "migrate",
        "ask",
        "completions",
        "man",
        "admin user add",
        "admin token revoke",
    ] {
        assert!(have.contains(want), "{want} missing from --help: {have:?}");
    }
}

#[test]
fn completion_scripts_name_every_subcommand() {
    let tree = command_tree();
    for shell in ["bash", "zsh", "fish"] {
        let script = String::from_utf8(sluice(&["completions", shell]).stdout).unwrap();
        assert!(script.len() > 500, "{shell}: script too short:\n{script}");
        for path in &tree {
            let name = path.last().unwrap();
            assert!(
                script.contains(name.as_str()),
                "{shell} completion does not mention {}",
                path.join(" ")
            );
        }
    }
    let bad = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", output_text(&bad));
}

#[test]
fn bash_completes_subcommands_and_options() {
    // Source the generated script in a real bash and ask it what it would complete.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sluice.bash");
    std::fs::write(&script, sluice(&["completions", "bash"]).stdout).unwrap();
    let complete = |words: &str| -> BTreeSet<String> {
        let prog = format!(
            ". {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _sluice sluice \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").args(["-c", &prog]).output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let top = complete("sluice ''");
    for name in subcommands(&[]) {
        assert!(top.contains(&name), "bash offers {top:?}, not {name}");
    }
    let policy = complete("sluice policy ''");
    for name in subcommands(&["policy"]) {
        assert!(policy.contains(&name), "bash offers {policy:?}, not {name}");
    }
    let migrate = complete("sluice migrate --");
    assert!(migrate.contains("--database"), "{migrate:?}");
    let shells = complete("sluice completions ''");
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(shell), "{shells:?}");
    }
}

#[test]
fn man_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = sluice(&["man", dir.path().to_str().unwrap()]);
    let listed: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let main = std::fs::read_to_string(dir.path().join("sluice.1")).expect("sluice.1");
    assert!(main.contains(".TH sluice 1 "), "{main}");
    let mut pages = BTreeSet::from([dir.path().join("sluice.1").display().to_string()]);
    for path in command_tree() {
        let file = dir.path().join(format!("sluice-{}.1", path.join("-")));
        let page =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            page.contains(&format!(".TH sluice-{} 1", path.join("-"))),
            "{}:\n{page}",
            file.display()
        );
        if path.len() == 1 {
            // roff escapes hyphens: sluice\-import\-policyd(1).
            let reference = format!("sluice-{}(1)", path[0]);
            assert!(
                main.replace("\\-", "-").contains(&reference),
                "sluice.1 does not list {reference}"
            );
        }
        pages.insert(file.display().to_string());
    }
    assert_eq!(listed, pages, "printed list vs pages expected");
    let written: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert_eq!(written, pages, "files written vs pages expected");
    // Options and their environment variables come from the definition.
    let migrate = std::fs::read_to_string(dir.path().join("sluice-migrate.1")).unwrap();
    assert!(migrate.contains("database") && migrate.contains("SLUICE_DATABASE"));
}
