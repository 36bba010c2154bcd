//! PostgreSQL LISTEN/NOTIFY: a change is seen at once, long before the next poll.

mod common;

use sluice_store::Store;
use sqlx::Connection;
use std::time::Duration;

#[tokio::test]
async fn postgres_changes_arrive_by_notification_not_by_polling() {
    let db = common::PgDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    // Poll only once a minute: only a notification can deliver the change within the test.
    let mut rx = store.watch(Duration::from_secs(60)).await.unwrap();
    let before = *rx.borrow_and_update();
    // Give the listener a moment to subscribe, then change a table directly in SQL.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut seen = false;
    for _ in 0..20 {
        sqlx::query("INSERT INTO policy_group (name) VALUES ($1)")
            .bind(common::unique_name("g"))
            .execute(&mut conn)
            .await
            .unwrap();
        if tokio::time::timeout(Duration::from_millis(500), rx.changed())
            .await
            .is_ok()
        {
            seen = true;
            break;
        }
    }
    assert!(seen, "no notification-driven change within 10 s");
    assert!(*rx.borrow() > before);
    conn.close().await.ok();
    store.close().await;
    db.drop_db().await;
}
