//! The admin service's tables on SQLite and PostgreSQL: accounts, tokens, sessions, the audit
//! trail, and policy changes that are checked against the version read and audited in the
//! same transaction.

mod common;

use sluice_engine::model::{PolicyDef, PolicySetDef};
use sluice_store::{AdminRole, AuditQuery, NewAudit, Store, StoreError};

fn audit(action: &str, object: &str) -> NewAudit {
    NewAudit {
        at_ms: 1_700_000_000_000,
        actor: "alice".into(),
        client: "127.0.0.1".into(),
        action: action.into(),
        object: object.into(),
        before: None,
        after: Some(r#"{"name":"x'; DROP TABLE policy; --"}"#.into()),
    }
}

async fn accounts_tokens_sessions(store: &Store) {
    store
        .add_account("alice", AdminRole::Admin, &[], "$argon2id$fake", 1)
        .await
        .unwrap();
    let domains = vec!["example.org".to_owned(), "example.net".to_owned()];
    store
        .add_account("dora", AdminRole::DomainAdmin, &domains, "$argon2id$d", 2)
        .await
        .unwrap();
    let again = store
        .add_account("alice", AdminRole::Viewer, &[], "h", 3)
        .await;
    assert!(
        matches!(again, Err(StoreError::AccountExists(_))),
        "{again:?}"
    );

    let all = store.accounts().await.unwrap();
    let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["alice", "dora"]);
    assert_eq!(all[1].role, AdminRole::DomainAdmin);
    assert_eq!(all[1].domains, domains);
    assert!(
        !format!("{:?}", all[0]).contains("argon2"),
        "Debug hides the hash"
    );

    assert!(store
        .set_password_hash("alice", "$argon2id$new")
        .await
        .unwrap());
    assert!(!store.set_password_hash("nobody", "h").await.unwrap());
    assert_eq!(
        store.account("alice").await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );

    // Tokens: found by digest, listed without it, revocable.
    store.add_token("ci", "alice", "digest-1", 5).await.unwrap();
    let dup = store.add_token("ci", "dora", "digest-2", 5).await;
    assert!(matches!(dup, Err(StoreError::TokenExists(_))), "{dup:?}");
    let orphan = store.add_token("x", "nobody", "digest-3", 5).await;
    assert!(
        matches!(orphan, Err(StoreError::NoSuchAccount(_))),
        "{orphan:?}"
    );
    let by_token = store.account_by_token("digest-1").await.unwrap().unwrap();
    assert_eq!(by_token.name, "alice");
    let listed = store.tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].account.as_str()),
        ("ci", "alice")
    );
    assert!(store.revoke_token("ci").await.unwrap());
    assert!(!store.revoke_token("ci").await.unwrap());
    assert!(store.account_by_token("digest-1").await.unwrap().is_none());

    // Sessions: valid until they expire; a password change ends them.
    let alice = store.account("alice").await.unwrap().unwrap();
    store
        .create_session("s1", alice.id, "csrf-1", 2_000, 1_000)
        .await
        .unwrap();
    let (who, csrf) = store.session("s1", 1_500).await.unwrap().unwrap();
    assert_eq!((who.name.as_str(), csrf.as_str()), ("alice", "csrf-1"));
    assert!(
        store.session("s1", 2_000).await.unwrap().is_none(),
        "expired"
    );
    store.set_password_hash("alice", "h2").await.unwrap();
    assert!(store.session("s1", 1_500).await.unwrap().is_none(), "ended");
    store
        .create_session("s2", alice.id, "csrf-2", 9_000, 1_000)
        .await
        .unwrap();
    store.end_session("s2").await.unwrap();
    assert!(
        store.session("s2", 1_500).await.unwrap().is_none(),
        "logged out"
    );

    // Removing an account removes its tokens and sessions.
    store.add_token("t2", "dora", "digest-9", 5).await.unwrap();
    let dora = store.account("dora").await.unwrap().unwrap();
    store
        .create_session("s3", dora.id, "c", 9_000, 1_000)
        .await
        .unwrap();
    assert!(store.remove_account("dora").await.unwrap());
    assert!(!store.remove_account("dora").await.unwrap());
    assert!(store.account_by_token("digest-9").await.unwrap().is_none());
    assert!(store.session("s3", 1_500).await.unwrap().is_none());
    assert!(store.tokens().await.unwrap().is_empty());
}

async fn audited_changes(store: &Store) {
    let version = store.version().await.unwrap();
    let def = PolicySetDef {
        greylisting_whitelist: Vec::new(),
        checkhelo_blacklist: Vec::new(),
        checkhelo_whitelist: Vec::new(),
        groups: vec![],
        policies: vec![PolicyDef {
            name: "x'; DROP TABLE policy; --".into(),
            ..Default::default()
        }],
    };
    store
        .replace_all_audited(&def, version, &[audit("create", "policy/x")])
        .await
        .unwrap();
    assert_eq!(store.load().await.unwrap(), def, "stored verbatim");
    let after = store.version().await.unwrap();
    assert!(
        after > version,
        "edges see the change: {version} -> {after}"
    );

    // A change based on an old version is refused and writes neither policies nor audit.
    let stale = store
        .replace_all_audited(
            &PolicySetDef::default(),
            version,
            &[audit("delete", "policy/x")],
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::Changed { expected, found }) if expected == version && found == after),
        "{stale:?}"
    );
    assert_eq!(store.load().await.unwrap(), def);

    store
        .record_audit(&audit("login", "account/alice"))
        .await
        .unwrap();
    let entries = store
        .audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.change.action.as_str()).collect();
    assert_eq!(
        actions,
        ["login", "create"],
        "newest first, no entry of the refused change"
    );
    assert_eq!(
        entries[1].change.after,
        audit("create", "").after,
        "verbatim"
    );
    let older = store
        .audit(&AuditQuery {
            before_id: Some(entries[0].id),
            actor: Some("alice".into()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    let nobody = store
        .audit(&AuditQuery {
            actor: Some("bob".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(nobody.is_empty());
}

#[tokio::test]
async fn sqlite_admin_tables() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let store = Store::connect(&url).await.unwrap();
    accounts_tokens_sessions(&store).await;
    audited_changes(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_admin_tables() {
    let db = common::PgDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    accounts_tokens_sessions(&store).await;
    audited_changes(&store).await;
    store.close().await;
    db.drop_db().await;
}
