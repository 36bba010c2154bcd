//! Admin accounts, API tokens and login sessions (tables of `migrations/*/0003_admin.sql`).
//!
//! The store keeps what it is given: password hashes (argon2 PHC strings) and SHA-256 digests
//! of tokens and session cookies are computed by the admin service; nothing here sees a
//! password, a token or a cookie.

use std::fmt;
use std::str::FromStr;

use super::{Backend, Store};
use crate::StoreError;

/// What an account may do in the admin service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminRole {
    /// Reads and changes everything, manages nothing but policies (accounts are made on the
    /// command line).
    Admin,
    /// Reads everything, changes nothing.
    Viewer,
    /// Reads and changes only the policies of its domains.
    DomainAdmin,
}

impl AdminRole {
    /// Every role, in the order of the documentation.
    pub const ALL: [AdminRole; 3] = [AdminRole::Admin, AdminRole::Viewer, AdminRole::DomainAdmin];

    /// The name stored and typed on the command line: `admin`, `viewer`, `domain-admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Viewer => "viewer",
            AdminRole::DomainAdmin => "domain-admin",
        }
    }
}

impl fmt::Display for AdminRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AdminRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AdminRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: expected admin, viewer or domain-admin"))
    }
}

/// An admin account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// Row id.
    pub id: i64,
    /// Login name (unique).
    pub name: String,
    /// What it may do.
    pub role: AdminRole,
    /// The domains a domain-admin manages (lower-case; empty for other roles).
    pub domains: Vec<String>,
    /// The argon2 PHC string of its password.
    pub password_hash: String,
}

/// Leaves the password hash out, so that an account can be logged without it.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

/// An API token as listed (its digest is never returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token's name (unique).
    pub name: String,
    /// The account it acts as.
    pub account: String,
    /// When it was made, ms since the epoch.
    pub created_ms: i64,
}

type AccountRow = (i64, String, String, String, String);

fn account_from_row(row: AccountRow) -> Result<Account, StoreError> {
    let (id, name, role, domains, password_hash) = row;
    let role = role
        .parse()
        .map_err(|e: String| StoreError::OutOfRange(format!("account {name:?}: {e}")))?;
    Ok(Account {
        id,
        name,
        role,
        domains: domains
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        password_hash,
    })
}

const ACCOUNT_COLUMNS: &str = "a.id, a.name, a.role, a.domains, a.password_hash";

impl Store {
    /// Adds an account. A taken name is [`StoreError::AccountExists`].
    pub async fn add_account(
        &self,
        name: &str,
        role: AdminRole,
        domains: &[String],
        password_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if self.account(name).await?.is_some() {
            return Err(StoreError::AccountExists(name.to_owned()));
        }
        const SQL: &str =
            "INSERT INTO admin_account (name, role, domains, password_hash, created_ms) \
             VALUES ($1, $2, $3, $4, $5)";
        let domains = domains.join(",");
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(name)
            .bind(role.as_str())
            .bind(&domains)
            .bind(password_hash)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM admin_account a ORDER BY a.name");
        let rows: Vec<AccountRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(account_from_row).collect()
    }

    /// The account called `name`.
    pub async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM admin_account a WHERE a.name = $1");
        let row: Option<AccountRow> =
            on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(name)
                .fetch_optional(pool)
                .await?);
        row.map(account_from_row).transpose()
    }

    /// Removes the account `name` with its tokens and sessions; `false` if there was none.
    pub async fn remove_account(&self, name: &str) -> Result<bool, StoreError> {
        // Children first: SQLite enforces the cascade only with foreign keys on.
        const SQLS: [&str; 3] = [
            "DELETE FROM admin_token WHERE account_id IN (SELECT id FROM admin_account WHERE name = $1)",
            "DELETE FROM admin_session WHERE account_id IN (SELECT id FROM admin_account WHERE name = $1)",
            "DELETE FROM admin_account WHERE name = $1",
        ];
        let removed = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut last = 0;
            for sql in SQLS {
                last = sqlx::query(sql)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            last
        });
        Ok(removed > 0)
    }

    /// Replaces the password hash of `name` and ends its sessions; `false` if no such account.
    pub async fn set_password_hash(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        const UPDATE: &str = "UPDATE admin_account SET password_hash = $2 WHERE name = $1";
        const END_SESSIONS: &str = "DELETE FROM admin_session WHERE account_id IN \
             (SELECT id FROM admin_account WHERE name = $1)";
        let changed = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(UPDATE)
                .bind(name)
                .bind(hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(END_SESSIONS)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            changed
        });
        Ok(changed > 0)
    }

    /// Adds an API token called `name` acting as `account`, given the SHA-256 (hex) of the
    /// token. Fails with [`StoreError::NoSuchAccount`] or [`StoreError::TokenExists`].
    pub async fn add_token(
        &self,
        name: &str,
        account: &str,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let Some(owner) = self.account(account).await? else {
            return Err(StoreError::NoSuchAccount(account.to_owned()));
        };
        if self.tokens().await?.iter().any(|t| t.name == name) {
            return Err(StoreError::TokenExists(name.to_owned()));
        }
        const SQL: &str = "INSERT INTO admin_token (account_id, name, token_hash, created_ms) \
             VALUES ($1, $2, $3, $4)";
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(owner.id)
            .bind(name)
            .bind(token_hash)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Every API token (names and owners; never the digests), by name.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        const SQL: &str = "SELECT t.name, a.name, t.created_ms FROM admin_token t \
             JOIN admin_account a ON a.id = t.account_id ORDER BY t.name";
        let rows: Vec<(String, String, i64)> =
            on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(name, account, created_ms)| TokenInfo {
                name,
                account,
                created_ms,
            })
            .collect())
    }

    /// Revokes the token called `name`; `false` if there was none.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM admin_token WHERE name = $1";
        let n = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// The account a token acts as, by the token's SHA-256 (hex).
    pub async fn account_by_token(&self, token_hash: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM admin_account a \
             JOIN admin_token t ON t.account_id = a.id WHERE t.token_hash = $1"
        );
        let row: Option<AccountRow> =
            on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(token_hash)
                .fetch_optional(pool)
                .await?);
        row.map(account_from_row).transpose()
    }

    /// Starts a session of `account` (by id) until `expires_ms`, keyed by the SHA-256 (hex) of
    /// its cookie, with its CSRF token. Ended sessions are deleted on the way.
    pub async fn create_session(
        &self,
        session_hash: &str,
        account_id: i64,
        csrf: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const PURGE: &str = "DELETE FROM admin_session WHERE expires_ms <= $1";
        const SQL: &str = "INSERT INTO admin_session (session_hash, account_id, csrf, expires_ms) \
             VALUES ($1, $2, $3, $4)";
        on_pool!(self, |pool| {
            sqlx::query(PURGE).bind(now_ms).execute(pool).await?;
            sqlx::query(SQL)
                .bind(session_hash)
                .bind(account_id)
                .bind(csrf)
                .bind(expires_ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The account and CSRF token of a session still running at `now_ms`.
    pub async fn session(
        &self,
        session_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(Account, String)>, StoreError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS}, s.csrf FROM admin_account a \
             JOIN admin_session s ON s.account_id = a.id \
             WHERE s.session_hash = $1 AND s.expires_ms > $2"
        );
        let row: Option<(i64, String, String, String, String, String)> =
            on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(session_hash)
                .bind(now_ms)
                .fetch_optional(pool)
                .await?);
        match row {
            None => Ok(None),
            Some((id, name, role, domains, hash, csrf)) => Ok(Some((
                account_from_row((id, name, role, domains, hash))?,
                csrf,
            ))),
        }
    }

    /// Ends a session (logout).
    pub async fn end_session(&self, session_hash: &str) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM admin_session WHERE session_hash = $1";
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(session_hash)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }
}
