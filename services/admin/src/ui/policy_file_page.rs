//! The policy file page: download the stored policies as a policy file; paste a file, see
//! the diff from what is stored (and the file's warnings) before anything is written, then
//! apply it. Applying is refused when the policies changed since the preview shown.

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use sluice_store::AdminRole;

use super::layout::{csrf_field, page, Nav};
use super::{error_page, see_other, PageCaller};
use crate::auth::Caller;
use crate::policy_file::{self, ImportPreview, PolicyFileUpload};
use crate::AppState;

/// The import form.
fn import_form(caller: &Caller, text: &str) -> Markup {
    html! {
        form.stack method="post" action="/policy-file/preview" {
            (csrf_field(caller))
            label for="policy-text" { "Policy file (TOML, as " code { "sluice policy export" } " writes it)" }
            textarea #policy-text name="text" rows="16" spellcheck="false" required { (text) }
            div { button type="submit" { "Preview the changes" } }
        }
    }
}

/// `GET /policy-file`.
pub(super) async fn page_get(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
) -> Response {
    let file = match policy_file::export(&state, &caller).await {
        Ok(f) => f,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let content = html! {
        h1 { "Policy file" }
        p.lead { "Every policy and group as one file: the format of " code { "sluice policy import" } " and " code { "export" } "." }
        div.card {
            h3 { "Export" }
            p { "The stored policies, version " (file.version) ". "
                a href="/policy-file/export" download=(format!("policies-v{}.toml", file.version)) { "Download policies.toml" } }
            details {
                summary.muted { "Show the file" }
                pre.file { (file.text) }
            }
        }
        div.card {
            h3 { "Import" }
            p.muted { "Paste a file to see what would change. Nothing is written until you apply the previewed changes; the import replaces every policy and group." }
            (import_form(&caller, ""))
        }
    };
    page("Policy file", Some(&caller), Nav::PolicyFile, content).into_response()
}

/// `GET /policy-file/export`: the file as a download.
pub(super) async fn download(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
) -> Response {
    match policy_file::export(&state, &caller).await {
        Ok(f) => (
            [
                (
                    header::CONTENT_TYPE,
                    "application/toml; charset=utf-8".to_owned(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"policies-v{}.toml\"", f.version),
                ),
            ],
            f.text,
        )
            .into_response(),
        Err(e) => error_page(Some(&caller), &e),
    }
}

/// The preview and apply forms.
#[derive(Deserialize)]
pub(super) struct FileForm {
    #[serde(default)]
    csrf: String,
    text: String,
    #[serde(default)]
    expected_version: Option<i64>,
}

/// `1 policy`, `2 policies`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A unified diff, each line marked as added, removed or context.
fn diff_view(diff: &str) -> Markup {
    html! {
        pre.diff {
            @for line in diff.lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") {
                    "head"
                } else if line.starts_with('+') {
                    "add"
                } else if line.starts_with('-') {
                    "del"
                } else if line.starts_with("@@") {
                    "hunk"
                } else {
                    "ctx"
                };
                span class=(class) { (line) }
            }
        }
    }
}

/// `POST /policy-file/preview`: the diff, and the form that applies it.
pub(super) async fn preview(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Form(form): Form<FileForm>,
) -> Response {
    let outcome: ImportPreview = match policy_file::preview(&state, &caller, &form.text).await {
        Ok(p) => p,
        Err(e) => {
            let content = html! {
                h1 { "Policy file" }
                div.error { p { "The file cannot be imported:" } pre { (e.error) } }
                div.card { h3 { "Import" } (import_form(&caller, &form.text)) }
            };
            return (
                e.status_code(),
                page("Policy file", Some(&caller), Nav::PolicyFile, content),
            )
                .into_response();
        }
    };
    let may_apply = caller.account.role == AdminRole::Admin;
    let content = html! {
        h1 { "Import preview" }
        p.lead {
            (count(outcome.policies, "policy", "policies")) " and " (count(outcome.groups, "group", "groups"))
            " in the file; the stored policies are at version " (outcome.version) "."
        }
        @if !outcome.warnings.is_empty() {
            div.warnings { strong { "Warnings" } ul { @for w in &outcome.warnings { li { (w) } } } }
        }
        @if outcome.changed {
            (diff_view(&outcome.diff))
            @if may_apply {
                form.inline method="post" action="/policy-file/import" {
                    (csrf_field(&caller))
                    input type="hidden" name="text" value=(form.text);
                    input type="hidden" name="expected_version" value=(outcome.version);
                    button type="submit" { "Apply these changes" }
                }
                " "
            }
        } @else {
            p.card { "The file holds exactly what is stored: nothing would change." }
        }
        a href="/policy-file" { "Cancel" }
    };
    page("Import preview", Some(&caller), Nav::PolicyFile, content).into_response()
}

/// `POST /policy-file/import`: applies a previewed file.
pub(super) async fn import(
    State(state): State<Arc<AppState>>,
    PageCaller(mut caller): PageCaller,
    Form(form): Form<FileForm>,
) -> Response {
    caller.csrf_given = Some(form.csrf);
    let upload = PolicyFileUpload {
        text: form.text,
        expected_version: form.expected_version,
    };
    match policy_file::import(&state, &caller, &upload).await {
        Ok(_) => see_other("/policies"),
        Err(e) => error_page(Some(&caller), &e),
    }
}
