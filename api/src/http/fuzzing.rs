//! Entry points for the fuzz targets (`fuzz/`, feature `fuzzing`): the request bodies and
//! query strings of the REST API, through the extractors the handlers use. Not part of the
//! server.

use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::Uri;
use serde::de::DeserializeOwned;

use super::extract::ApiJson;
use super::{devices, erasure, grants, memories, users};

async fn body<T: DeserializeOwned>(data: &[u8], json: bool, out: &mut Vec<u16>) -> Option<T> {
    let mut req = Request::builder().method("POST").uri("/");
    if json {
        req = req.header("content-type", "application/json");
    } else {
        req = req.header("content-type", "application/json; charset=utf-8");
    }
    let req = req
        .body(Body::from(data.to_vec()))
        .expect("a request from bytes");
    match ApiJson::<T>::read(req, &(), Some(1 << 20)).await {
        Ok(ApiJson(v)) => Some(v),
        Err(p) => {
            out.push(p.status.as_u16());
            None
        }
    }
}

/// Parses `data` as every JSON request body, both ways the extractor reads JSON, and as the
/// listing query string with its checks. Returns the status of each refusal (all must be
/// 4xx).
pub async fn parse_bodies(data: &[u8]) -> Vec<u16> {
    let mut refused = Vec::new();
    for json in [true, false] {
        if let Some(t) = body::<memories::TextMemory>(data, json, &mut refused).await {
            // What the ledger then checks: the format's value rules.
            let _ = t.record().check_values();
        }
        body::<grants::NewGrant>(data, json, &mut refused).await;
        body::<erasure::Erasure>(data, json, &mut refused).await;
        body::<devices::NewDevice>(data, json, &mut refused).await;
        body::<users::CreateUser>(data, json, &mut refused).await;
    }
    if let Ok(q) = std::str::from_utf8(data)
        && let Ok(uri) = format!("/v1/memories?{q}").parse::<Uri>()
    {
        match Query::<memories::ListQuery>::try_from_uri(&uri) {
            Ok(Query(l)) => {
                if let Err(p) = l.filter() {
                    refused.push(p.status.as_u16());
                }
            }
            Err(_) => refused.push(400),
        }
    }
    refused
}
