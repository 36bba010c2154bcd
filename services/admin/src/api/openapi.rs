//! The OpenAPI document of `/api`, built from the route table of [`super::routes`]: each
//! resource's paths and body schema come from its [`Resource`] implementation.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, Ref};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, Paths, RefOr, Required, Schema,
};
use utoipa::{PartialSchema, ToSchema};

use super::AuditRecord;
use crate::auth::{Caller, SESSION_COOKIE};
use crate::error::ApiError;
use crate::explain::{ExplainRequest, Explained};
use crate::policy_file::{ImportPreview, PolicyFile, PolicyFileUpload};
use crate::resource::{
    AccessRules, GroupMembers, Groups, Limits, Members, Policies, Quotas, Resource,
};
use crate::AppState;

/// `GET /api/openapi.json`.
pub(super) async fn document(State(_): State<Arc<AppState>>, _caller: Caller) -> Json<OpenApi> {
    Json(openapi())
}

/// The whole document.
pub fn openapi() -> OpenApi {
    let mut paths = Paths::new();
    let mut components = ComponentsBuilder::new()
        .schema_from::<ApiError>()
        .schema_from::<AuditRecord>()
        .schema_from::<ExplainRequest>()
        .schema_from::<Explained>()
        .schema_from::<PolicyFile>()
        .schema_from::<PolicyFileUpload>()
        .schema_from::<ImportPreview>()
        .security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        )
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
    components = add::<Policies>(&mut paths, components);
    components = add::<Members>(&mut paths, components);
    components = add::<AccessRules>(&mut paths, components);
    components = add::<Quotas>(&mut paths, components);
    components = add::<Limits>(&mut paths, components);
    components = add::<Groups>(&mut paths, components);
    components = add::<GroupMembers>(&mut paths, components);
    components = add::<super::greylisting::PolicyGreylisting>(&mut paths, components);
    components = add::<super::greylisting::GreylistWhitelist>(&mut paths, components);
    components = add::<super::checkspf::PolicyCheckSpf>(&mut paths, components);
    components = add::<super::message_caps::PolicyMessageCaps>(&mut paths, components);
    components = add::<super::checkhelo::PolicyCheckHelo>(&mut paths, components);
    components = add::<super::checkhelo::HeloBlacklist>(&mut paths, components);
    components = add::<super::checkhelo::HeloWhitelist>(&mut paths, components);
    components = add::<super::accounting_rows::PolicyAccounting>(&mut paths, components);
    let audit = operation(
        "List the audit trail, newest first (query: limit, before_id, actor)",
        &[],
        None,
        (
            "200",
            "The entries",
            Some(array(AuditRecord::name().as_ref())),
        ),
    );
    paths.add_path_operation("/api/audit", vec![HttpMethod::Get], audit);
    let explain = operation(
        "Explain what would happen to a request: matching policies, module decisions, counter levels, the action (charges nothing; not for domain admins)",
        &[],
        Some(reference(ExplainRequest::name().as_ref())),
        ("200", "The explanation", Some(reference(Explained::name().as_ref()))),
    );
    paths.add_path_operation("/api/explain", vec![HttpMethod::Post], explain);
    let mut file = PathItem::new(
        HttpMethod::Get,
        operation(
            "Export every policy and group as a policy file (as `sluice policy export`; not for domain admins)",
            &[],
            None,
            ("200", "The file and its version", Some(reference(PolicyFile::name().as_ref()))),
        ),
    );
    file.merge_operations(PathItem::new(
        HttpMethod::Put,
        operation(
            "Import a policy file: replace every policy and group with the file's, audited (not for viewers or domain admins; 409 when expected_version is not the stored one)",
            &[],
            Some(reference(PolicyFileUpload::name().as_ref())),
            ("200", "What changed", Some(reference(ImportPreview::name().as_ref()))),
        ),
    ));
    paths.paths.insert("/api/policy-file".to_owned(), file);
    let preview = operation(
        "Preview an import: validate the file and show the diff from the stored policies (changes nothing)",
        &[],
        Some(reference(PolicyFileUpload::name().as_ref())),
        ("200", "What would change", Some(reference(ImportPreview::name().as_ref()))),
    );
    paths.add_path_operation("/api/policy-file/preview", vec![HttpMethod::Post], preview);
    components = super::history::document(&mut paths, components);
    components = super::counters::document(&mut paths, components);
    components = super::held::document(&mut paths, components);
    components = super::accounting::document(&mut paths, components);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Sluice admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Policies, members, quotas, limits, access control and groups of Sluice, \
                     and the whole policy file (export, preview, import). \
                     Authenticate with `Authorization: Bearer TOKEN` (sluice admin token add) \
                     or a login session (then send X-CSRF-Token on changes).",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .security(Some([
            SecurityRequirement::new("token", Vec::<String>::new()),
            SecurityRequirement::new("session", Vec::<String>::new()),
        ]))
        .build()
}

/// JSON content of the schema `name` (an array of them with `array`), for the paths the
/// other API modules document.
pub(crate) fn json_content(name: &str, array_of: bool) -> utoipa::openapi::Content {
    let schema = if array_of {
        array(name)
    } else {
        reference(name)
    };
    utoipa::openapi::ContentBuilder::new()
        .schema(Some(schema))
        .build()
}

fn reference(name: &str) -> RefOr<Schema> {
    Ref::from_schema_name(name).into()
}

fn array(name: &str) -> RefOr<Schema> {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(reference(name))
        .build()
        .into()
}

/// The `{name}` parameters of `path`.
fn parameters(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .collect()
}

/// An operation with `params` in the path, an optional JSON body, and `ok` (status,
/// description, schema) besides the error answers every operation has.
fn operation(
    summary: &str,
    params: &[String],
    body: Option<RefOr<Schema>>,
    ok: (&str, &str, Option<RefOr<Schema>>),
) -> utoipa::openapi::path::Operation {
    let mut op = OperationBuilder::new().summary(Some(summary));
    for p in params {
        let description = if p == "index" {
            "position in the list, from 0"
        } else {
            "name"
        };
        op = op.parameter(
            ParameterBuilder::new()
                .name(p)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(description))
                .schema(Some(String::schema())),
        );
    }
    if let Some(schema) = body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema)).build(),
                )
                .build(),
        ));
    }
    let mut response = ResponseBuilder::new().description(ok.1);
    if let Some(schema) = ok.2 {
        response = response.content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        );
    }
    op = op.response(ok.0, response.build());
    let error = ContentBuilder::new()
        .schema(Some(reference(ApiError::name().as_ref())))
        .build();
    for (status, text) in [
        ("401", "No or unknown credentials"),
        (
            "403",
            "The account may not do this (role, domain, CSRF token)",
        ),
        ("404", "No such object"),
        ("409", "A name is taken, or the policies changed meanwhile"),
        ("422", "Invalid input; `field` names the field"),
    ] {
        op = op.response(
            status,
            ResponseBuilder::new()
                .description(text)
                .content("application/json", error.clone())
                .build(),
        );
    }
    op.build()
}

/// Adds the paths of `R` and its body schema.
fn add<R: Resource>(paths: &mut Paths, components: ComponentsBuilder) -> ComponentsBuilder {
    let name = R::Body::name();
    let kind = R::KIND;
    let collection_params = parameters(R::COLLECTION);
    let item_params = parameters(R::ITEM);
    let one = || Some(reference(&name));
    let mut collection = PathItem::new(
        HttpMethod::Get,
        operation(
            &format!("List every {kind}"),
            &collection_params,
            None,
            ("200", "The list", Some(array(&name))),
        ),
    );
    collection.merge_operations(PathItem::new(
        HttpMethod::Post,
        operation(
            &format!("Create a {kind} (enabled unless `disabled` is true)"),
            &collection_params,
            one(),
            ("201", "Created", one()),
        ),
    ));
    let mut item = PathItem::new(
        HttpMethod::Get,
        operation(
            &format!("Read a {kind}"),
            &item_params,
            None,
            ("200", "The object", one()),
        ),
    );
    item.merge_operations(PathItem::new(
        HttpMethod::Put,
        operation(
            &format!("Replace a {kind}'s fields (its children stay)"),
            &item_params,
            one(),
            ("200", "Replaced", one()),
        ),
    ));
    item.merge_operations(PathItem::new(
        HttpMethod::Delete,
        operation(
            &format!("Delete a {kind} with its children"),
            &item_params,
            None,
            ("204", "Deleted", None),
        ),
    ));
    paths.paths.insert(R::COLLECTION.to_owned(), collection);
    paths.paths.insert(R::ITEM.to_owned(), item);
    for (verb, word) in [("enable", "Enable"), ("disable", "Disable")] {
        let op = operation(
            &format!("{word} a {kind}"),
            &item_params,
            None,
            ("200", "The object", one()),
        );
        paths.paths.insert(
            format!("{}/{verb}", R::ITEM),
            PathItem::new(HttpMethod::Post, op),
        );
    }
    components.schema(name.clone(), R::Body::schema())
}
