//! Reading the Policyd v2 tables through sqlx's `Any` driver (SQLite, PostgreSQL, MySQL).
//!
//! Columns are cast in SQL to BIGINT or text so that every backend yields the same types.

use sqlx::any::AnyRow;
// The SELECTs below are built from this module's constant table and column names (never
// from input), so they are asserted safe for sqlx's dynamic-SQL check.
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::error::url_scheme;
use crate::StoreError;

/// The SQL dialect, from the URL scheme.
#[derive(Debug, Clone, Copy)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    pub(super) fn from_url(url: &str) -> Result<Dialect, StoreError> {
        match url_scheme(url).as_str() {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" => Ok(Dialect::MySql),
            scheme => Err(StoreError::UnsupportedUrl {
                scheme: scheme.to_owned(),
                expected: "sqlite:, postgres:, postgresql: or mysql:",
            }),
        }
    }

    pub(super) fn int(self, col: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST({col} AS INTEGER)"),
            Dialect::Postgres => format!("CAST({col} AS BIGINT)"),
            Dialect::MySql => format!("CAST({col} AS SIGNED)"),
        }
    }

    fn text(self, col: &str) -> String {
        match self {
            Dialect::Sqlite | Dialect::Postgres => format!("CAST({col} AS TEXT)"),
            Dialect::MySql => format!("CAST({col} AS CHAR)"),
        }
    }

    /// `SELECT` of `cols` (each `i:` for integer or `t:` for text) from `table`, by ID.
    pub(super) fn select(self, table: &str, cols: &[&str]) -> String {
        let cols: Vec<String> = cols
            .iter()
            .map(|c| match c.split_once(':') {
                Some(("i", name)) => self.int(name),
                Some((_, name)) => self.text(name),
                None => self.text(c),
            })
            .collect();
        format!("SELECT {} FROM {table} ORDER BY ID", cols.join(", "))
    }
}

/// The rows of Policyd's definition tables, as read (IDs kept).
#[derive(Debug, Default)]
pub(super) struct Raw {
    pub policies: Vec<RawPolicy>,
    pub members: Vec<RawMember>,
    pub groups: Vec<RawGroup>,
    pub group_members: Vec<RawGroupMember>,
    pub access_control: Vec<RawAccessControl>,
    pub quotas: Vec<RawQuota>,
    pub limits: Vec<RawLimit>,
    /// The greylisting tables.
    pub greylisting: super::greylisting::RawGrey,
    /// The `checkspf` table.
    pub checkspf: Vec<super::checkspf::RawCheckSpf>,
    /// The CheckHelo tables.
    pub checkhelo: super::checkhelo::RawHelo,
    /// `amavis_rules` (empty without the Amavis module's table).
    pub amavis: Vec<super::amavis::RawAmavis>,
    /// The accounting tables.
    pub accounting: super::accounting::RawAcct,
}

#[derive(Debug, Default)]
pub(super) struct RawPolicy {
    pub id: i64,
    pub name: Option<String>,
    pub priority: i64,
    pub description: Option<String>,
    pub disabled: bool,
}

#[derive(Debug, Default)]
pub(super) struct RawMember {
    pub id: i64,
    pub policy_id: Option<i64>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub comment: Option<String>,
    pub disabled: bool,
}

#[derive(Debug, Default)]
pub(super) struct RawGroup {
    pub id: i64,
    pub name: Option<String>,
    pub disabled: bool,
    pub comment: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawGroupMember {
    pub id: i64,
    pub group_id: Option<i64>,
    pub member: Option<String>,
    pub disabled: bool,
    pub comment: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawAccessControl {
    pub id: i64,
    pub policy_id: Option<i64>,
    pub name: Option<String>,
    pub verdict: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
    pub disabled: bool,
}

#[derive(Debug, Default)]
pub(super) struct RawQuota {
    pub id: i64,
    pub policy_id: Option<i64>,
    pub name: Option<String>,
    pub track: Option<String>,
    pub period: Option<i64>,
    pub verdict: Option<String>,
    pub data: Option<String>,
    pub last_quota: bool,
    pub comment: Option<String>,
    pub disabled: bool,
}

#[derive(Debug, Default)]
pub(super) struct RawLimit {
    pub id: i64,
    pub quota_id: Option<i64>,
    pub kind: Option<String>,
    pub counter_limit: Option<i64>,
    pub comment: Option<String>,
    pub disabled: bool,
}

/// Tables of Policyd modules Sluice does not import yet, with what their rows are.
pub(super) fn int(row: &AnyRow, i: usize) -> Result<Option<i64>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(i)?)
}

pub(super) fn id(row: &AnyRow, i: usize) -> Result<i64, StoreError> {
    Ok(int(row, i)?.unwrap_or_default())
}

pub(super) fn flag(row: &AnyRow, i: usize) -> Result<bool, StoreError> {
    Ok(int(row, i)?.unwrap_or_default() != 0)
}

/// Text, accepting drivers that report casted text as bytes.
pub(super) fn text(row: &AnyRow, i: usize) -> Result<Option<String>, StoreError> {
    match row.try_get::<Option<String>, _>(i) {
        Ok(v) => Ok(v),
        Err(sqlx::Error::ColumnDecode { .. }) => Ok(row
            .try_get::<Option<Vec<u8>>, _>(i)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn read_all(conn: &mut AnyConnection, d: Dialect) -> Result<Raw, StoreError> {
    let mut raw = Raw::default();
    let sql = d.select(
        "policies",
        &[
            "i:ID",
            "t:Name",
            "i:Priority",
            "t:Description",
            "i:Disabled",
        ],
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?
    {
        raw.policies.push(RawPolicy {
            id: id(&r, 0)?,
            name: text(&r, 1)?,
            priority: int(&r, 2)?.unwrap_or_default(),
            description: text(&r, 3)?,
            disabled: flag(&r, 4)?,
        });
    }
    let sql = d.select(
        "policy_members",
        &[
            "i:ID",
            "i:PolicyID",
            "t:Source",
            "t:Destination",
            "t:Comment",
            "i:Disabled",
        ],
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?
    {
        raw.members.push(RawMember {
            id: id(&r, 0)?,
            policy_id: int(&r, 1)?,
            source: text(&r, 2)?,
            destination: text(&r, 3)?,
            comment: text(&r, 4)?,
            disabled: flag(&r, 5)?,
        });
    }
    let sql = d.select(
        "policy_groups",
        &["i:ID", "t:Name", "i:Disabled", "t:Comment"],
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?
    {
        raw.groups.push(RawGroup {
            id: id(&r, 0)?,
            name: text(&r, 1)?,
            disabled: flag(&r, 2)?,
            comment: text(&r, 3)?,
        });
    }
    let sql = d.select(
        "policy_group_members",
        &[
            "i:ID",
            "i:PolicyGroupID",
            "t:Member",
            "i:Disabled",
            "t:Comment",
        ],
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?
    {
        raw.group_members.push(RawGroupMember {
            id: id(&r, 0)?,
            group_id: int(&r, 1)?,
            member: text(&r, 2)?,
            disabled: flag(&r, 3)?,
            comment: text(&r, 4)?,
        });
    }
    let sql = d.select(
        "access_control",
        &[
            "i:ID",
            "i:PolicyID",
            "t:Name",
            "t:Verdict",
            "t:Data",
            "t:Comment",
            "i:Disabled",
        ],
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?
    {
        raw.access_control.push(RawAccessControl {
            id: id(&r, 0)?,
            policy_id: int(&r, 1)?,
            name: text(&r, 2)?,
            verdict: text(&r, 3)?,
            data: text(&r, 4)?,
            comment: text(&r, 5)?,
            disabled: flag(&r, 6)?,
        });
    }
    let sql = d.select(
        "quotas",
        &[
            "i:ID",
            "i:PolicyID",
            "t:Name",
            "t:Track",
            "i:Period",
            "t:Verdict",
            "t:Data",
            "i:LastQuota",
            "t:Comment",
            "i:Disabled",
        ],
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?
    {
        raw.quotas.push(RawQuota {
            id: id(&r, 0)?,
            policy_id: int(&r, 1)?,
            name: text(&r, 2)?,
            track: text(&r, 3)?,
            period: int(&r, 4)?,
            verdict: text(&r, 5)?,
            data: text(&r, 6)?,
            last_quota: flag(&r, 7)?,
            comment: text(&r, 8)?,
            disabled: flag(&r, 9)?,
        });
    }
    let sql = d.select(
        "quotas_limits",
        &[
            "i:ID",
            "i:QuotasID",
            "t:Type",
            "i:CounterLimit",
            "t:Comment",
            "i:Disabled",
        ],
    );
    for r in sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?
    {
        raw.limits.push(RawLimit {
            id: id(&r, 0)?,
            quota_id: int(&r, 1)?,
            kind: text(&r, 2)?,
            counter_limit: int(&r, 3)?,
            comment: text(&r, 4)?,
            disabled: flag(&r, 5)?,
        });
    }
    raw.greylisting = super::greylisting::read(&mut *conn, d).await?;
    raw.checkspf = super::checkspf::read(&mut *conn, d).await?;
    raw.checkhelo = super::checkhelo::read(&mut *conn, d).await?;
    raw.amavis = super::amavis::read(&mut *conn, d).await?;
    raw.accounting = super::accounting::read(&mut *conn, d).await?;
    Ok(raw)
}
