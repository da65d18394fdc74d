//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers: each
//! resource's routes are registered with `utoipa_axum::routes!`, which takes the path,
//! method, parameters, bodies and responses from the handler's `#[utoipa::path]`, so a
//! route cannot be served without being documented. The health endpoints add theirs.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa::{Modify, OpenApi as _};

/// The document's frame: info, the server (relative), the bearer scheme (public routes say
/// `security(())`), the shared schemas.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "mnemo",
        description = "Custody ledger for memories: every write is a signed, hash-chained event in the owner's chain; every read by someone else is recorded there too. Errors are RFC 9457 problems (application/problem+json)."
    ),
    paths(openapi_json, crate::health::healthz, crate::health::readyz, crate::health::metrics),
    components(schemas(crate::http::schema::ProblemDoc)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// This document (served by the router in `http`; described here).
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, body = Object, description = "this document")))]
#[allow(dead_code, reason = "described only; the router serves the document")]
fn openapi_json() {}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut OpenApi) {
        // Every route is relative to where the document is served.
        doc.servers = Some(vec![utoipa::openapi::server::Server::new("/")]);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT (EdDSA)".into());
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The frame with this build's version.
pub fn base() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info = InfoBuilder::new()
        .title(doc.info.title.clone())
        .description(doc.info.description.clone())
        .version(env!("CARGO_PKG_VERSION"))
        .build();
    doc
}
