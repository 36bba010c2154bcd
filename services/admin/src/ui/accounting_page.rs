//! The Accounting page: what Accounting counted in one period (a month, an ISO week or a
//! day), per policy, row and track key. Reads through [`crate::api::accounting`], so it
//! shows what the API does (domain admins: their domains only). Every value is escaped by
//! maud.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout::{self, Nav};
use super::{error_page, PageCaller};
use crate::api::accounting::{self, ReportParams};
use crate::AppState;

/// `GET /accounting`.
pub(super) async fn accounting(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Query(params): Query<ReportParams>,
) -> Response {
    // The current month (UTC) when none is asked for.
    let period = params
        .period
        .clone()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(current_month);
    let query = ReportParams {
        period: Some(period.clone()),
        ..params
    };
    let report = match accounting::report(&state, &caller, &query).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let content = html! {
        h1 { "Accounting" }
        p.lead {
            "What Accounting counted in one period, summed over every process writing to
             this database (as " code { "sluice accounting report" } ")."
        }
        form.add method="get" action="/accounting" {
            label { "Period" input type="text" name="period" value=(report.period) placeholder="2026-11, 2026-W48 or 2026-11-30"; }
            button type="submit" { "Show" }
        }
        p { (report.period) " (" (report.kind) ")" }
        table {
            thead { tr {
                th { "Policy" } th { "Row" } th { "Track" } th { "Messages" } th { "Recipients" } th { "Bytes" }
            } }
            tbody {
                @for r in &report.rows {
                    tr {
                        td { (r.policy) }
                        td { (r.name) }
                        td.mono { (r.track) }
                        td.mono { (r.messages) }
                        td.mono { (r.recipients) }
                        td.mono { (r.bytes) }
                    }
                }
                @if report.rows.is_empty() { tr { td colspan="6" .muted { "Nothing counted in this period." } } }
            }
        }
    };
    layout::page("Accounting", Some(&caller), Nav::Accounting, content).into_response()
}

/// `YYYY-MM` of now, in UTC.
fn current_month() -> String {
    let days = crate::now_ms().div_euclid(86_400_000);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}
