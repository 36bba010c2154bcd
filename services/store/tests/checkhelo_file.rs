//! CheckHelo in the policy file: `[policy.checkhelo]` (periods with units),
//! `[[checkhelo_blacklist]]` and `[[checkhelo_whitelist]]` read, validated (ranges, with the
//! field's line), written back identically, and stored and loaded by the store (SQLite,
//! migration 0006).

use sluice_store::policy_file::{parse, to_toml};
use sluice_store::Store;

const FILE: &str = r#"[[policy]]
name = "inbound"
priority = 10

  [[policy.member]]
  destination = "@example.org"

  [policy.checkhelo]
  use_blacklist = true
  blacklist_period = "10m"
  use_hrp = true
  hrp_period = "1h"
  hrp_limit = 3
  reject_invalid = true
  reject_ip = false
  reject_unresolvable = true
  dns_failure = "pass"

[[checkhelo_blacklist]]
helo = "localhost"

[[checkhelo_blacklist]]
helo = "*.localdomain"
comment = "any host of the default domain"

[[checkhelo_whitelist]]
source = "SenderIP:192.0.2.0/24"
disabled = true
"#;

#[tokio::test]
async fn read_written_stored_and_loaded() {
    let parsed = parse("p.toml", FILE).unwrap_or_else(|e| panic!("{e:?}"));
    let def = parsed.def;
    let h = def.policies[0].checkhelo.as_ref().expect("checkhelo");
    assert_eq!(h.blacklist_period, Some(600));
    assert_eq!(h.hrp_period, Some(3600));
    assert_eq!(h.hrp_limit, Some(3));
    assert_eq!(h.reject_ip, Some(false));
    assert_eq!(h.dns_failure.as_deref(), Some("pass"));
    assert_eq!(def.checkhelo_blacklist.len(), 2);
    assert_eq!(def.checkhelo_whitelist.len(), 1);
    assert!(def.checkhelo_whitelist[0].disabled);
    // Written back: the same text.
    assert_eq!(to_toml(&def), FILE);
    // Stored and loaded.
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
        .replace("hrp_limit = 3", "hrp_limit = 0")
        .replace("dns_failure = \"pass\"", "dns_failure = \"maybe\"");
    let all = refused(&bad);
    assert!(
        all.contains("checkhelo.hrp_limit 0 is out of range: it must be 1..=1000"),
        "{all}"
    );
    assert!(all.contains("write `defer` or `pass`"), "{all}");
    // The finding points at the field's line.
    assert!(all.contains("line: 13"), "{all}");
    assert!(all.contains("line: 17"), "{all}");
    let all = refused(&FILE.replace("SenderIP:192.0.2.0/24", "SenderDomain:example.org"));
    assert!(all.contains("the only form CheckHelo understands"), "{all}");
    let all = refused(&FILE.replace("helo = \"localhost\"", "helo = \"two words\""));
    assert!(all.contains("checkhelo blacklist entry"), "{all}");
}

fn refused(text: &str) -> String {
    match parse("p.toml", text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => format!("{e:?}"),
    }
}
