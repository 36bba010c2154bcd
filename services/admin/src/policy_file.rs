//! Import and export of the whole policy file (the format of `sluice policy import` and
//! `export`, read and written by [`sluice_store::policy_file`], its one home): the export
//! with the version it was read at; a preview of an import (the file validated, the diff
//! from what is stored, the warnings) that changes nothing; and the import itself, which
//! replaces every policy and group in one transaction with its audit entry, refused when the
//! policies changed since the preview the operator saw. Domain admins may do none of it (a
//! file holds every domain's policies); viewers may export and preview.

use serde::{Deserialize, Serialize};
use sluice_engine::model::PolicySetDef;
use sluice_store::{policy_file, AdminRole, NewAudit, StoreError};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::{now_ms, AppState};

/// Largest policy file accepted, bytes (below axum's 2 MB cap on request bodies, with room
/// for the JSON or form around it).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The name a file is given in findings and diff headers.
const FILE_LABEL: &str = "uploaded file";

/// The stored policies as a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyFile {
    /// The policy version the file was read at.
    pub version: i64,
    /// The policy file (TOML), as `sluice policy export` writes it.
    pub text: String,
}

/// A policy file to preview or import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFileUpload {
    /// The policy file (TOML).
    pub text: String,
    /// Import only if the stored policies are still at this version (the one a preview
    /// showed); 409 otherwise. Without it the file replaces whatever is stored.
    #[serde(default)]
    pub expected_version: Option<i64>,
}

/// What importing a file would change, or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportPreview {
    /// The stored policy version the diff is from (after an import: the new version).
    pub version: i64,
    /// Whether the file differs from what is stored (was stored).
    pub changed: bool,
    /// Unified diff from the stored policies to the file's, both as `export` writes them
    /// (empty when nothing changes).
    pub diff: String,
    /// Warnings about the file (inert quotas, empty groups...), `line: field: message`.
    pub warnings: Vec<String>,
    /// Policies in the file.
    pub policies: usize,
    /// Groups in the file.
    pub groups: usize,
}

/// 403 for domain admins: a policy file holds every domain's policies.
fn whole_set(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.account.role == AdminRole::DomainAdmin {
        return Err(ApiError::forbidden(format!(
            "a policy file holds every domain's policies: domain admins may not {what} it"
        )));
    }
    Ok(())
}

/// The stored policies as a policy file.
pub async fn export(state: &AppState, caller: &Caller) -> Result<PolicyFile, ApiError> {
    whole_set(caller, "export")?;
    let version = state.store.version().await?;
    let def = state.store.load().await?;
    Ok(PolicyFile {
        version,
        text: policy_file::to_toml(&def),
    })
}

/// Parses `text` as a policy file: 422 with every finding (`line: field: message`, one per
/// line) when it does not load.
fn parse(text: &str) -> Result<policy_file::ParsedFile, ApiError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ApiError::invalid(
            "text",
            format!(
                "the file has {} bytes; at most {MAX_FILE_BYTES} are accepted",
                text.len()
            ),
        ));
    }
    policy_file::parse(FILE_LABEL, text).map_err(|findings| {
        let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
        ApiError::invalid("text", lines.join("\n"))
    })
}

fn preview_of(
    version: i64,
    stored: &PolicySetDef,
    parsed: &policy_file::ParsedFile,
) -> ImportPreview {
    let diff = policy_file::diff(
        stored,
        &parsed.def,
        &format!("stored policies (version {version})"),
        FILE_LABEL,
    );
    ImportPreview {
        version,
        changed: diff.is_some(),
        diff: diff.unwrap_or_default(),
        warnings: parsed.warnings.iter().map(ToString::to_string).collect(),
        policies: parsed.def.policies.len(),
        groups: parsed.def.groups.len(),
    }
}

/// What importing `text` would change; changes nothing.
pub async fn preview(
    state: &AppState,
    caller: &Caller,
    text: &str,
) -> Result<ImportPreview, ApiError> {
    whole_set(caller, "import")?;
    let parsed = parse(text)?;
    let version = state.store.version().await?;
    let stored = state.store.load().await?;
    Ok(preview_of(version, &stored, &parsed))
}

/// Replaces every policy and group with those of `upload.text`, audited (`import
/// policy-file`, the whole set before and after). A file equal to what is stored changes
/// nothing and writes no audit entry.
pub async fn import(
    state: &AppState,
    caller: &Caller,
    upload: &PolicyFileUpload,
) -> Result<ImportPreview, ApiError> {
    caller.may_change()?;
    whole_set(caller, "import")?;
    let parsed = parse(&upload.text)?;
    let _one_at_a_time = state.write_lock.lock().await;
    let version = state.store.version().await?;
    if let Some(expected) = upload.expected_version.filter(|&e| e != version) {
        return Err(ApiError::conflict(format!(
            "the policies changed since the preview (version {version} now, {expected} previewed): preview the file again"
        )));
    }
    let stored = state.store.load().await?;
    let mut outcome = preview_of(version, &stored, &parsed);
    if !outcome.changed {
        return Ok(outcome);
    }
    let json = |def: &PolicySetDef| serde_json::to_string(def).ok();
    let entry = NewAudit {
        at_ms: now_ms(),
        actor: caller.account.name.clone(),
        client: caller.client.clone(),
        action: "import".to_owned(),
        object: "policy-file".to_owned(),
        before: json(&stored),
        after: json(&parsed.def),
    };
    match state
        .store
        .replace_all_audited(&parsed.def, version, &[entry])
        .await
    {
        Ok(()) => {}
        Err(StoreError::Changed { .. }) => {
            return Err(ApiError::conflict(
                "the policies changed while importing: preview the file again",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        account = %caller.account.name,
        client = %caller.client,
        policies = outcome.policies,
        groups = outcome.groups,
        "Admin import of a policy file"
    );
    outcome.version = state.store.version().await?;
    Ok(outcome)
}
