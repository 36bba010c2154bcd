//! Counter resets (`counter_resets`): recorded with their audit entry, followed in id order
//! from the moment a follower starts (each once), on PostgreSQL also by notification (long
//! before the next poll); old rows are pruned by the next reset; the policy version does
//! not change.

mod common;

use sluice_store::{AuditQuery, CounterReset, NewAudit, Store, COUNTER_RESETS_KEEP_MS};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

fn entry(at_ms: i64, key: &str) -> NewAudit {
    NewAudit {
        at_ms,
        actor: "alice".into(),
        client: "127.0.0.1".into(),
        action: "reset".into(),
        object: format!("counters/{key}"),
        before: Some(r#"{"used":2}"#.into()),
        after: Some(r#"{"used":0}"#.into()),
    }
}

async fn next(rx: &mut Receiver<CounterReset>, within: Duration) -> CounterReset {
    tokio::time::timeout(within, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no reset within {within:?}"))
        .expect("the follower ended")
}

async fn records_follows_and_prunes(store: &Store, poll: Duration, within: Duration) {
    let now = 1_800_000_000_000_i64;
    // Before the follower: not sent to it.
    store
        .record_counter_reset("p/q/MessageCount/Sender:old@x", &entry(now, "old"))
        .await
        .unwrap();
    let version = store.version().await.unwrap();
    let mut rx = store.follow_counter_resets(poll).await.unwrap();
    for (i, key) in [
        "p/q/MessageCount/Sender:a@x",
        "p/q/RecipientCount/Sender:b@x",
    ]
    .iter()
    .enumerate()
    {
        store
            .record_counter_reset(key, &entry(now + 1 + i as i64, key))
            .await
            .unwrap();
    }
    let first = next(&mut rx, within).await;
    let second = next(&mut rx, within).await;
    assert_eq!(first.key, "p/q/MessageCount/Sender:a@x");
    assert_eq!(second.key, "p/q/RecipientCount/Sender:b@x");
    assert!(first.id < second.id, "{first:?} {second:?}");
    assert_eq!(first.at_ms, now + 1);
    assert!(rx.try_recv().is_err(), "each once");
    assert_eq!(
        store.version().await.unwrap(),
        version,
        "a reset changes no policy"
    );
    // Each with its audit entry.
    let audit = store
        .audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(audit.iter().all(|a| a.change.action == "reset"));
    // A reset more than an hour later prunes the older rows; ids keep growing.
    let later = now + COUNTER_RESETS_KEEP_MS + 10;
    store
        .record_counter_reset("p/q/MessageCount/Sender:c@x", &entry(later, "c"))
        .await
        .unwrap();
    let third = next(&mut rx, within).await;
    assert!(third.id > second.id);
    let left = store.counter_resets_after(0).await.unwrap();
    assert_eq!(left, vec![third.clone()], "the older rows are gone");
    assert_eq!(store.last_counter_reset().await.unwrap(), third.id);
}

#[tokio::test]
async fn postgres_resets_are_followed_in_order() {
    let db = common::PgDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    records_follows_and_prunes(&store, Duration::from_millis(50), Duration::from_secs(5)).await;
    store.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn sqlite_resets_are_followed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("resets.db").display());
    let store = Store::connect(&url).await.unwrap();
    records_follows_and_prunes(&store, Duration::from_millis(50), Duration::from_secs(5)).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_resets_arrive_by_notification_not_by_polling() {
    let db = common::PgDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    // Poll only once a minute: only a notification can deliver a reset within the test.
    let mut rx = store
        .follow_counter_resets(Duration::from_secs(60))
        .await
        .unwrap();
    // The listener subscribes in the background: reset until one arrives.
    let mut seen = None;
    for i in 0..20 {
        let key = format!("p/q/MessageCount/Sender:{i}@x");
        store
            .record_counter_reset(&key, &entry(1_800_000_000_000, &key))
            .await
            .unwrap();
        if let Ok(Some(reset)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            seen = Some(reset);
            break;
        }
    }
    let reset = seen.expect("no notification-driven reset within 10 s");
    assert!(
        reset.key.starts_with("p/q/MessageCount/Sender:"),
        "{reset:?}"
    );
    store.close().await;
    db.drop_db().await;
}
