//! Per-message caps in the policy file (`[policy.message_caps]`, sizes with units) and in
//! the store (migration 0009): read, written back identically, stored and loaded from
//! SQLite and PostgreSQL; a direct change of the table is noticed as a new version.

mod common;

use sluice_store::policy_file::{parse, to_toml};
use sluice_store::Store;
use sqlx::Connection;

const FILE: &str = r#"[[policy]]
name = "everyone"
priority = 0

  [[policy.member]]
  source = "any"

  [policy.message_caps]
  max_message_size = "25MB"
  max_recipients = 50

[[policy]]
name = "submission"
priority = 50

  [[policy.member]]
  source = "server_port=587, !policy_context=relay"

  [policy.message_caps]
  max_recipients = 1000
  comment = "newsletters"
"#;

async fn stored_and_loaded(store: &Store, url: &str) {
    let def = parse("p.toml", FILE)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .def;
    let c = def.policies[0].message_caps.as_ref().expect("caps");
    assert_eq!(c.max_message_size, Some(25_000_000));
    assert_eq!(c.max_recipients, Some(50));
    let c = def.policies[1].message_caps.as_ref().expect("caps");
    assert_eq!(c.max_message_size, None, "unset stays unset (inherits)");
    assert_eq!(to_toml(&def), FILE, "written back: the same text");
    store.replace_all(&def).await.unwrap();
    assert_eq!(store.load().await.unwrap(), def);
    // A change made in SQL is seen as a new version with the new value.
    let before = store.version().await.unwrap();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query("UPDATE policy_message_caps SET max_recipients = 20 WHERE max_recipients = 50")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_ne!(store.version().await.unwrap(), before);
    let loaded = store.load().await.unwrap();
    assert_eq!(
        loaded.policies[0]
            .message_caps
            .as_ref()
            .unwrap()
            .max_recipients,
        Some(20)
    );
}

#[tokio::test]
async fn sqlite_stores_and_loads_caps() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = Store::connect(&url).await.unwrap();
    stored_and_loaded(&store, &url).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_stores_and_loads_caps() {
    sqlx::any::install_default_drivers();
    let db = common::PgDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    stored_and_loaded(&store, &db.url).await;
    store.close().await;
    db.drop_db().await;
}
