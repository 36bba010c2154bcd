//! Counters and message sessions of `sluice serve` kept in a SQLite policy database.

use sluice_engine::window::WindowSpec;
use sluice_engine::{CounterChanges, CounterSnapshot, EomRecord, SavedSession, SessionData};
use sluice_store::{CountersWritten, Store};

const HOUR: u64 = 3_600_000;
const T0: u64 = 1_700_000_040_000;

fn counter(key: &str, buckets: &[(u64, u64)]) -> CounterSnapshot {
    CounterSnapshot {
        key: key.into(),
        window: WindowSpec::new(HOUR, 60),
        buckets: buckets.to_vec(),
    }
}

async fn all(store: &Store, now: u64) -> Vec<CounterSnapshot> {
    let mut out = Vec::new();
    let n = store
        .load_counters(now, |page| out.extend(page))
        .await
        .unwrap();
    assert_eq!(n, out.len());
    out
}

#[tokio::test]
async fn counters_are_written_replaced_deleted_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let store = Store::connect(&url).await.unwrap();
    assert!(store.keeps_counters());
    let b = T0 / 60_000;
    // Enough counters for several pages and several statements.
    let mut changed: Vec<CounterSnapshot> = (0..45_000)
        .map(|i| {
            counter(
                &format!("p/q/RecipientCount/Sender:s{i:05}@x"),
                &[(b, i + 1)],
            )
        })
        .collect();
    changed.push(counter("old", &[(b - 50, 5)]));
    let changes = CounterChanges {
        removed: vec![],
        changed,
    };
    let w = store.write_counters(&changes, T0).await.unwrap();
    assert_eq!(
        w,
        CountersWritten {
            upserted: 45_001,
            deleted: 0
        }
    );
    let loaded = all(&store, T0).await;
    assert_eq!(loaded.len(), 45_001);
    let mut want = changes.changed.clone();
    want.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(loaded, want, "every bucket and window as written");

    // Replaced, removed, emptied; an hour later "old" has expired and is deleted.
    let update = CounterChanges {
        removed: vec!["p/q/RecipientCount/Sender:s00001@x".into()],
        changed: vec![
            counter("p/q/RecipientCount/Sender:s00000@x", &[(b, 1), (b + 1, 7)]),
            counter("p/q/RecipientCount/Sender:s00002@x", &[]),
        ],
    };
    let later = T0 + HOUR / 2;
    assert!(
        !all(&store, later).await.iter().any(|c| c.key == "old"),
        "expired: not read"
    );
    let w = store.write_counters(&update, later).await.unwrap();
    assert_eq!(w.upserted, 1);
    assert_eq!(w.deleted, 3, "the removed, the emptied and the expired one");
    let loaded = all(&store, later).await;
    assert_eq!(loaded.len(), 44_998);
    assert_eq!(loaded[0].buckets, [(b, 1), (b + 1, 7)]);
    assert!(!loaded
        .iter()
        .any(|c| c.key.ends_with("s00001@x") || c.key == "old"));

    // Counters whose window has passed are not read, and go at the next writes.
    assert_eq!(all(&store, T0 + 2 * HOUR).await.len(), 0);
    let mut deleted = 0;
    for _ in 0..3 {
        deleted += store
            .write_counters(&CounterChanges::default(), T0 + 2 * HOUR)
            .await
            .unwrap()
            .deleted;
    }
    assert_eq!(deleted, 44_998);

    // Message sessions: replaced as a whole, read back once.
    let session = |instance: &str| SessionData {
        instance: instance.into(),
        charged: vec!["a".into()],
        records: vec![EomRecord {
            key: "size".into(),
            limit: 1_000,
            window: WindowSpec::new(HOUR, 60),
            label: "p\u{1f}q".into(),
            group: 1,
        }],
    };
    let saved = vec![
        SavedSession {
            session: session("I1"),
            expires_ms: T0 + HOUR,
        },
        SavedSession {
            session: session("I2"),
            expires_ms: T0 + 10,
        },
    ];
    store.save_sessions(&saved[..1]).await.unwrap();
    store.save_sessions(&saved).await.unwrap();
    let mut back = store.take_sessions(T0).await.unwrap();
    back.sort_by(|a, b| a.session.instance.cmp(&b.session.instance));
    assert_eq!(back, saved);
    assert!(store.take_sessions(T0).await.unwrap().is_empty());
    store.save_sessions(&saved).await.unwrap();
    assert_eq!(store.take_sessions(T0 + 10).await.unwrap(), saved[..1]);
    // The policy version is not touched by any of this.
    assert_eq!(store.version().await.unwrap(), 1);
    store.close().await;
}
