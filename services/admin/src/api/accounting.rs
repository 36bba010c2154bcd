//! `GET /api/accounting/report?period=2026-11` (also `2026-W48`, `2026-11-30`): what
//! Accounting counted in one period, per policy, accounting row and track key, summed over
//! every process (docs/accounting.md, "Reports"). Read-only; viewers may read it; a domain
//! admin sees only rows whose track key is an address or domain at one of its domains or
//! below them.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_engine::accounting::period::parse_key;
use sluice_store::{AccountingTotalRow, AdminRole};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, Ref};
use utoipa::openapi::{ContentBuilder, Paths, Required};
use utoipa::{PartialSchema, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// The totals of one (policy, accounting row, track key) in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountingRecord {
    /// The policy.
    pub policy: String,
    /// The accounting row.
    pub name: String,
    /// The track key (`Sender:@example.com`, `SASLUsername:alice`, ...).
    pub track: String,
    /// Messages counted (once per message and track key).
    pub messages: i64,
    /// Recipients counted (once per RCPT).
    pub recipients: i64,
    /// Bytes counted at END-OF-MESSAGE.
    pub bytes: i64,
}

impl From<AccountingTotalRow> for AccountingRecord {
    fn from(r: AccountingTotalRow) -> Self {
        AccountingRecord {
            policy: r.policy,
            name: r.name,
            track: r.track,
            messages: r.messages,
            recipients: r.recipients,
            bytes: r.bytes,
        }
    }
}

/// The answer of `GET /api/accounting/report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountingReport {
    /// The period, spelled canonically (`2026-11`, `2026-W48`, `2026-11-30`).
    pub period: String,
    /// `day`, `week` or `month`.
    pub kind: String,
    /// The totals, by policy and row, most messages first.
    pub rows: Vec<AccountingRecord>,
}

/// Query of `GET /api/accounting/report`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReportParams {
    /// The period (required).
    pub period: Option<String>,
    /// At most this many rows (default 1000, 1 to 100000).
    pub limit: Option<u32>,
}

/// Whether `track` (a track key) is an address or domain at one of `domains` or below.
fn in_domains(track: &str, domains: &[String]) -> bool {
    let Some((_, value)) = track.split_once(':') else {
        return false;
    };
    let Some((_, domain)) = value.rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    domains.iter().any(|d| {
        let d = d.trim_start_matches('@').to_ascii_lowercase();
        domain == d || domain.ends_with(&format!(".{d}"))
    })
}

/// The report `caller` may read under `params`.
pub async fn report(
    state: &AppState,
    caller: &Caller,
    params: &ReportParams,
) -> Result<AccountingReport, ApiError> {
    let Some(period) = params.period.as_deref().filter(|p| !p.trim().is_empty()) else {
        return Err(ApiError::invalid(
            "period",
            "required: a month (2026-11), an ISO week (2026-W48) or a day (2026-11-30)",
        ));
    };
    let (kind, period) =
        parse_key(period).map_err(|e| ApiError::invalid("period", e.to_string()))?;
    let limit = params.limit.unwrap_or(1000);
    if !(1..=sluice_store::MAX_REPORT_ROWS).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be from 1 to 100000"));
    }
    let rows = state.store.accounting_report(&period, limit).await?;
    let domain_admin = caller.account.role == AdminRole::DomainAdmin;
    let rows = rows
        .into_iter()
        .filter(|r| !domain_admin || in_domains(&r.track, &caller.account.domains))
        .map(AccountingRecord::from)
        .collect();
    Ok(AccountingReport {
        period,
        kind: kind.as_str().into(),
        rows,
    })
}

pub(crate) async fn get_report(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<ReportParams>,
) -> Result<Json<AccountingReport>, ApiError> {
    report(&state, &caller, &params).await.map(Json)
}

/// Adds the path and its schemas to the OpenAPI document.
pub(crate) fn document(paths: &mut Paths, components: ComponentsBuilder) -> ComponentsBuilder {
    let query = |name: &str, required, description: &str, schema| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(required)
            .description(Some(description))
            .schema(Some(schema))
            .build()
    };
    let op = OperationBuilder::new()
        .summary(Some(
            "What Accounting counted in one period, per policy, row and track key, over every process (domain admins: their domains' only)",
        ))
        .parameter(query(
            "period",
            Required::True,
            "a month (2026-11), an ISO week (2026-W48) or a day (2026-11-30)",
            String::schema(),
        ))
        .parameter(query(
            "limit",
            Required::False,
            "at most this many rows (default 1000, 1 to 100000)",
            u32::schema(),
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The totals")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(AccountingReport::name())))
                        .build(),
                )
                .build(),
        )
        .response(
            "401",
            ResponseBuilder::new()
                .description("No or unknown credentials")
                .build(),
        )
        .response(
            "422",
            ResponseBuilder::new()
                .description("Invalid query; `field` names it")
                .build(),
        )
        .build();
    paths.add_path_operation("/api/accounting/report", vec![HttpMethod::Get], op);
    components
        .schema_from::<AccountingReport>()
        .schema_from::<AccountingRecord>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_admins_see_their_domains_and_below() {
        let d = vec!["example.com".to_string()];
        assert!(in_domains("Sender:@example.com", &d));
        assert!(in_domains("Recipient:bob@mail.example.com", &d));
        assert!(!in_domains("Sender:@badexample.com", &d));
        assert!(!in_domains("SenderIP:192.0.2.0/24", &d));
        assert!(!in_domains("SASLUsername:alice", &d));
        assert!(!in_domains("Policy", &d));
    }
}
