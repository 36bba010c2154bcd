//! Fixtures shared by the integration tests: temporary SQLite files and throw-away databases
//! on the local PostgreSQL (127.0.0.1:5432, user postgres) and MariaDB (127.0.0.1:3306, root).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const MYSQL_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/mysql";

/// A database name no other test (or test run) uses.
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh PostgreSQL database, dropped on [`PgDb::drop_db`].
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let name = unique_name("sluice_test");
        let mut admin = sqlx::PgConnection::connect(PG_ADMIN_URL)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (user postgres) must be running");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        admin.close().await.ok();
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        PgDb { name, url }
    }

    pub async fn drop_db(self) {
        let mut admin = sqlx::PgConnection::connect(PG_ADMIN_URL)
            .await
            .expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("drop database");
        admin.close().await.ok();
    }
}

/// A fresh MariaDB/MySQL database, dropped on [`MyDb::drop_db`].
pub struct MyDb {
    pub name: String,
    pub url: String,
}

impl MyDb {
    pub async fn create() -> MyDb {
        let name = unique_name("sluice_test");
        let mut admin = sqlx::MySqlConnection::connect(MYSQL_ADMIN_URL)
            .await
            .expect("MariaDB at 127.0.0.1:3306 (root, no password) must be running");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        admin.close().await.ok();
        let url = format!("mysql://root@127.0.0.1:3306/{name}");
        MyDb { name, url }
    }

    pub async fn drop_db(self) {
        let mut admin = sqlx::MySqlConnection::connect(MYSQL_ADMIN_URL)
            .await
            .expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {}",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("drop database");
        admin.close().await.ok();
    }
}
