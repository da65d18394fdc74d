//! `POST /v1/erasure`: crypto-shredding of one memory or of everything.

use axum::Json;
use axum::extract::State;
use mnemo_core::ErasureTarget;
use mnemo_ledger::LedgerError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::S;
use super::extract::{ApiJson, Caller, memory_id};
use super::memories::memory_row;
use crate::problem::{ApiResult, Problem};
use axum::routing::post;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Erasure {
    memory: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn erase(
    State(api): State<S>,
    caller: Caller,
    ApiJson(e): ApiJson<Erasure>,
) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    let target = match (e.memory, e.all) {
        (Some(m), false) => {
            let id = memory_id(&m)?;
            api.sync(user).await?;
            let m = memory_row(&api, user, &id).await?;
            if m.erased {
                return Err(LedgerError::Erased(id).into());
            }
            ErasureTarget::Memory(id)
        }
        (None, true) => ErasureTarget::All,
        _ => {
            return Err(Problem::bad_request(
                "give either {\"memory\": \"<id>\"} or {\"all\": true}",
            ));
        }
    };
    let r = api.ledger.erase(user, target).await?;
    Ok(Json(json!({ "seq": r.seq.0, "event_hash": r.hash })))
}

/// This resource's routes.
pub(crate) fn router() -> axum::Router<S> {
    axum::Router::new().route("/v1/erasure", post(erase))
}
