//! Rows of `policy_message_caps` (`migrations/*/0009_message_caps.sql`): one row per policy
//! that has per-message caps.

use sluice_engine::MessageCapsDef;

use crate::StoreError;

pub(crate) const SELECT: &str = "SELECT policy_id, max_message_size, max_recipients, \
     disabled, comment FROM policy_message_caps ORDER BY id";

pub(crate) const DELETE_ALL: &str = "DELETE FROM policy_message_caps";

pub(crate) const INSERT: &str = "INSERT INTO policy_message_caps (policy_id, \
     max_message_size, max_recipients, disabled, comment) VALUES ($1, $2, $3, $4, $5)";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MessageCapsRow {
    pub policy_id: i64,
    pub max_message_size: Option<i64>,
    pub max_recipients: Option<i64>,
    pub disabled: bool,
    pub comment: Option<String>,
}

/// A stored number as the model's, or an error naming the column.
fn num(v: Option<i64>, column: &str) -> Result<Option<u64>, StoreError> {
    v.map(|v| {
        u64::try_from(v)
            .map_err(|_| StoreError::OutOfRange(format!("policy_message_caps.{column} is {v}")))
    })
    .transpose()
}

impl MessageCapsRow {
    /// The model's definition.
    pub(crate) fn into_def(self) -> Result<MessageCapsDef, StoreError> {
        Ok(MessageCapsDef {
            max_message_size: num(self.max_message_size, "max_message_size")?,
            max_recipients: num(self.max_recipients, "max_recipients")?,
            disabled: self.disabled,
            comment: self.comment,
        })
    }
}

/// The numbers of a definition as column values (BIGINT): max_message_size,
/// max_recipients.
pub(crate) fn numbers(d: &MessageCapsDef, policy: &str) -> Result<[Option<i64>; 2], StoreError> {
    let v = |x: Option<u64>, what: &str| {
        x.map(|x| super::rows::to_i64(x, || format!("message_caps {what} of policy {policy:?}")))
            .transpose()
    };
    Ok([
        v(d.max_message_size, "max_message_size")?,
        v(d.max_recipients, "max_recipients")?,
    ])
}
