//! `sluice policy import --dry-run | diff | export | check` as an operator keeping the policy
//! file in git uses them: real processes on a real SQLite file.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn sluice(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_DATABASE")
        .env_remove("SLUICE_METRICS_LISTEN")
        .output()
        .expect("run sluice")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

fn example() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/policies.example.toml"
    );
    std::fs::read_to_string(path).unwrap()
}

/// The policy version as stored, read with SQL (not through sluice).
async fn version(db: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(db).await.unwrap();
    let v: i64 = sqlx::query_scalar("SELECT version FROM policy_version WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    v
}

fn import(file: &str, db: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "policy",
        "import",
        file,
        "--database",
        db,
        "--server",
        "off",
    ];
    args.extend_from_slice(extra);
    sluice(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_and_diff_change_nothing_and_an_identical_import_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let file = write(dir.path(), "policies.toml", &example());

    // Nothing stored yet: the dry run shows everything as added and imports nothing.
    let out = import(&file, &db, &["--dry-run"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("+    limit = 300\n"), "{t}");
    assert!(t.contains("Dry run: nothing imported"), "{t}");
    let empty = version(&db).await;
    let out = sluice(&["policy", "export", "--database", &db]);
    assert_eq!(stdout(&out), "", "the dry run stored nothing");
    assert_eq!(version(&db).await, empty);

    // diff: 1 while they differ.
    let out = sluice(&["policy", "diff", &file, "--database", &db]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stdout(&out).contains("+name = \"internal_ips\"\n"));

    let out = import(&file, &db, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let imported = version(&db).await;
    assert!(imported > empty);

    // The same file again: no changes, the version stays.
    let out = import(&file, &db, &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.starts_with("No changes: "), "{t}");
    assert_eq!(version(&db).await, imported);
    let out = sluice(&["policy", "diff", &file, "--database", &db]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // One limit changed: the diff shows that line, and a dry run changes nothing.
    let changed = example().replace("limit = 300", "limit = 350");
    let file = write(dir.path(), "policies.toml", &changed);
    let out = sluice(&["policy", "diff", &file, "--database", &db]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let diff = stdout(&out);
    assert!(
        diff.contains("\n-    limit = 300\n+    limit = 350\n"),
        "{diff}"
    );
    assert_eq!(
        diff.lines()
            .filter(|l| (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++"))
            .count(),
        2,
        "only the changed line: {diff}"
    );
    let out = import(&file, &db, &["--dry-run"]);
    assert!(
        stdout(&out).contains("+    limit = 350\n"),
        "{}",
        text(&out)
    );
    assert_eq!(version(&db).await, imported);
    let out = import(&file, &db, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(version(&db).await > imported);

    // Trouble is 2, not "different".
    let bad = write(dir.path(), "bad.toml", "[[policy]\n");
    let out = sluice(&["policy", "diff", &bad, "--database", &db]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// Export after importing the example file gives the file back byte for byte, but for its
/// leading comment block (comments are not stored); from then on the round trip is exact.
#[test]
fn the_example_file_round_trips_through_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let original = example();
    let file = write(dir.path(), "policies.toml", &original);
    assert!(import(&file, &db, &[]).status.success());
    let exported = stdout(&sluice(&["policy", "export", "--database", &db]));
    let body = &original[original.find("[[group]]").unwrap()..];
    assert_eq!(exported, body);

    let again = write(dir.path(), "exported.toml", &exported);
    let out = import(&again, &db, &[]);
    assert!(text(&out).starts_with("No changes: "), "{}", text(&out));
    let twice = stdout(&sluice(&["policy", "export", "--database", &db]));
    assert_eq!(twice, exported);
}

/// `policy check` lists every error in one run, each at its line, and suggests the group
/// that a mistyped `%name` probably meant.
#[test]
fn check_lists_every_error_with_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let text_in = example()
        .replace("limit = 501", "limit = \"501 messages\"")
        .replace("track = \"SenderIP:/32\"", "track = \"SenderIP\"")
        .replace(
            "source = \"%internal_ips,%internal_domains\"",
            "source = \"%internal_ip,%internal_domains\"",
        )
        .replace(
            "priority = 10\ndescription = \"Mail from our",
            "priority = 10\ndescriptoin = \"Mail from our",
        );
    let file = write(dir.path(), "p.toml", &text_in);
    let line = |needle: &str| {
        text_in
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}"))
            + 1
    };
    let out = sluice(&["policy", "check", &file]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    for needle in ["\"501 messages\"", "\"SenderIP\"", "descriptoin"] {
        assert!(
            t.contains(&format!("p.toml:{}: ", line(needle))),
            "{needle}: {t}"
        );
    }
    assert!(t.contains("unknown field `descriptoin`"), "{t}");
    assert!(t.contains("did you mean `description`?"), "{t}");
    // The broken section is skipped, so its group reference is not checked; fix it and the
    // suggestion appears.
    let fixed = text_in.replace("descriptoin", "description");
    let file = write(dir.path(), "p.toml", &fixed);
    let out = sluice(&["policy", "check", &file]);
    let t = text(&out);
    assert!(
        t.contains("unknown group %internal_ip; did you mean %internal_ips?"),
        "{t}"
    );
    let findings = t
        .lines()
        .filter(|l| {
            l.strip_prefix(&format!("{file}:"))
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    assert_eq!(findings, 3, "{t}");
}
