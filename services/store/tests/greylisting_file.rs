//! Greylisting in the policy file: `[policy.greylisting]` (periods with units) and
//! `[[greylisting_whitelist]]` read, validated (ranges, with the field's line), written back
//! identically, and stored and loaded by the store.

use sluice_store::policy_file::{parse, to_toml};
use sluice_store::Store;

const FILE: &str = r#"[[policy]]
name = "inbound"
priority = 10

  [[policy.member]]
  destination = "@example.org"

  [policy.greylisting]
  period = "4m"
  track = "SenderIP:/24"
  ipv6_prefix = 64
  unauth_validity = "1d"
  auto_whitelist = true
  auto_whitelist_period = "7d"
  auto_whitelist_count = 10
  auto_whitelist_percentage = 90
  auto_blacklist = false
  training = true
  defer_message = "Come back in a few minutes"

[[greylisting_whitelist]]
source = "SenderIP:192.0.2.0/24"

[[greylisting_whitelist]]
source = "ReverseDNS:.mail.example.net"
comment = "big provider"
"#;

#[tokio::test]
async fn read_written_stored_and_loaded() {
    let parsed = parse("p.toml", FILE).unwrap_or_else(|e| panic!("{e:?}"));
    let def = parsed.def;
    let g = def.policies[0].greylisting.as_ref().expect("greylisting");
    assert_eq!(g.period, Some(240));
    assert_eq!(g.unauth_validity, Some(86_400));
    assert_eq!(g.auto_whitelist_count, Some(10));
    assert_eq!(g.training, Some(true));
    assert_eq!(g.blacklist_message, None, "unset stays unset (inherits)");
    assert_eq!(def.greylisting_whitelist.len(), 2);
    // Written back: the same text.
    assert_eq!(to_toml(&def), FILE);
    // Stored and loaded (SQLite, migration 0004).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    store.replace_all(&def).await.unwrap();
    assert_eq!(store.load().await.unwrap(), def);
    store.close().await;
}

#[test]
fn out_of_range_values_are_refused_at_their_line() {
    let bad = FILE
        .replace(
            "auto_whitelist_percentage = 90",
            "auto_whitelist_percentage = 190",
        )
        .replace("period = \"4m\"", "period = \"60d\"");
    let all = refused(&bad);
    assert!(
        all.contains("greylisting.auto_whitelist_percentage 190 is out of range"),
        "{all}"
    );
    assert!(
        all.contains("greylisting.period 5184000 s is out of range"),
        "{all}"
    );
    // The finding points at the field's line.
    assert!(all.contains(":16:") || all.contains("line 16"), "{all}");
    let bad = FILE.replace("SenderIP:/24", "Sender:@x");
    let all = refused(&bad);
    assert!(
        all.contains("greylisting tracks only `SenderIP:/N`"),
        "{all}"
    );
}

/// The findings of a file that must not load, one per line.
fn refused(text: &str) -> String {
    match parse("p.toml", text) {
        Ok(_) => panic!("the file loaded:\n{text}"),
        Err(errs) => errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}
