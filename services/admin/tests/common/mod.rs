//! The admin service served on a real 127.0.0.1 socket (its own runtime on background
//! threads), a store to set up accounts, and an HTTP client that keeps every reply (to
//! check that no secret ever appears in one).
#![allow(dead_code)]

use std::cell::RefCell;

use serde_json::Value;
use sluice_admin::{secret, AdminOptions};
use sluice_store::{AdminRole, Store};
use sluice_test_support::{http, HttpReply};
use sqlx::Connection;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh PostgreSQL database on the local server (dropped by [`Admin::stop`]).
pub fn pg_database(rt: &tokio::runtime::Runtime) -> (String, String) {
    let name = format!(
        "sluice_admin_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(PG_ADMIN_URL)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (user postgres) must be running");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .expect("create database");
    });
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    (name, url)
}

/// A running admin service.
pub struct Admin {
    pub port: u16,
    pub rt: tokio::runtime::Runtime,
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
    /// Every reply received, for the secret scan.
    pub replies: RefCell<Vec<HttpReply>>,
}

impl Admin {
    /// On a new SQLite file.
    pub fn sqlite() -> Admin {
        Admin::sqlite_with(AdminOptions::default())
    }

    /// On a new SQLite file, with `options` (live counters, ...).
    pub fn sqlite_with(options: AdminOptions) -> Admin {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("admin.db").display());
        let mut admin = Admin::start(&url, runtime(), None, options);
        admin._dir = Some(dir);
        admin
    }

    /// On a new PostgreSQL database.
    pub fn postgres() -> Admin {
        let rt = runtime();
        let (name, url) = pg_database(&rt);
        Admin::start(&url, rt, Some(name), AdminOptions::default())
    }

    fn start(
        url: &str,
        rt: tokio::runtime::Runtime,
        pg_name: Option<String>,
        options: AdminOptions,
    ) -> Admin {
        let store = rt.block_on(Store::connect(url)).expect("open the database");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(sluice_admin::serve(
            listener,
            store.clone(),
            options,
            async {
                let _ = rx.await;
            },
        ));
        Admin {
            port,
            rt,
            store,
            stop: Some(tx),
            pg_name,
            _dir: None,
            replies: RefCell::new(Vec::new()),
        }
    }

    /// Adds an account with `password`.
    pub fn account(&self, name: &str, role: AdminRole, domains: &[&str], password: &str) {
        let hash = secret::hash_password(password).unwrap();
        let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
        self.rt
            .block_on(self.store.add_account(name, role, &domains, &hash, 0))
            .unwrap();
    }

    /// A new API token acting as `user`.
    pub fn token(&self, name: &str, user: &str) -> String {
        let token = secret::new_token().unwrap();
        self.rt
            .block_on(self.store.add_token(name, user, &secret::digest(&token), 0))
            .unwrap();
        token
    }

    /// A request with raw headers.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpReply {
        let reply = http(self.port, method, path, headers, body);
        self.replies.borrow_mut().push(reply.clone());
        reply
    }

    /// A JSON API call with a bearer token (or none).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> HttpReply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let body = body.map(|b| b.to_string());
        self.raw(method, path, &headers, body.as_deref())
    }

    /// Logs in through the form; returns the session cookie (`name=value`).
    pub fn login(&self, name: &str, password: &str) -> Result<String, HttpReply> {
        let form = self.raw("GET", "/login", &[], None);
        let login_cookie =
            cookie_of(&form, "sluice_login").expect("the login form sets its cookie");
        let csrf = hidden_csrf(&form.body).expect("the login form has a csrf field");
        let body = format!(
            "name={}&password={}&csrf={csrf}",
            form_encode(name),
            form_encode(password)
        );
        let reply = self.raw(
            "POST",
            "/login",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &login_cookie),
            ],
            Some(&body),
        );
        if reply.status != 303 {
            return Err(reply);
        }
        Ok(cookie_of(&reply, "sluice_session").expect("a session cookie"))
    }

    pub fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.rt.block_on(self.store.close());
        if let Some(name) = self.pg_name.take() {
            self.rt.block_on(async {
                let mut c = sqlx::PgConnection::connect(PG_ADMIN_URL).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await
                .unwrap();
            });
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `name=value` of the cookie `name` a reply sets.
pub fn cookie_of(reply: &HttpReply, name: &str) -> Option<String> {
    reply
        .headers_named("set-cookie")
        .into_iter()
        .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")) && c.len() > name.len() + 1)
}

/// The value of the first hidden `csrf` field of a page.
pub fn hidden_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")?;
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Percent-encodes for a form body or a path segment.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
