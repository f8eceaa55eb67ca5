//! The routes of the v2 REST API: health, server and model metadata, model readiness,
//! statistics, and infer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::models::{route, Route};
use super::App;
use crate::protocol::{encode_response, parse_request, HEADER_LENGTH};
use crate::wire::WireTensor;
use crate::{Result, ServeError};

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{*rest}", get(get_model).post(post_model))
        .fallback(|| async { error(ServeError::NotFound("no such route".into())) })
        .with_state(app)
}

fn error(e: ServeError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({ "error": e.to_string() }))).into_response()
}

async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "edgerun",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "statistics"],
    }))
    .into_response()
}

async fn ready(State(app): State<Arc<App>>) -> StatusCode {
    if app.draining.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

/// What a path under `/v2/models/` asks: the model name (which may hold `/from/K`), an
/// optional version, and the action.
fn parse_path(rest: &str) -> (&str, &str) {
    let (name, action) = ["/infer", "/ready", "/stats"]
        .iter()
        .find_map(|a| rest.strip_suffix(a).map(|n| (n, &a[1..])))
        .unwrap_or((rest, ""));
    // `/versions/N` names a version; every model here has exactly one.
    let name = name.split_once("/versions/").map_or(name, |(n, _)| n);
    (name, action)
}

async fn get_model(State(app): State<Arc<App>>, Path(rest): Path<String>) -> Response {
    let (name, action) = parse_path(&rest);
    let found = match route(&app.models, name) {
        Ok(found) => found,
        Err(e) => return error(e),
    };
    match action {
        "" => axum::Json(found.metadata(name)).into_response(),
        "ready" => ready(State(Arc::clone(&app))).await.into_response(),
        "stats" => axum::Json(stats(&found, name)).into_response(),
        _ => error(ServeError::NotFound(format!(
            "GET {action} is not a route; POST it"
        ))),
    }
}

fn stats(found: &Route<'_>, name: &str) -> serde_json::Value {
    let c = &found.model.counters;
    let governor = found.model.session.governor();
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    json!({ "model_stats": [{
        "name": name,
        "version": "1",
        "inference_count": get(&c.success),
        "execution_count": get(&c.success) + get(&c.fail),
        "inference_stats": {
            "success": { "count": get(&c.success), "ns": get(&c.success_ns) },
            "fail": { "count": get(&c.fail), "ns": get(&c.fail_ns) },
        },
        "memory": {
            "governor_peak_bytes": governor.peak(),
            "budget_bytes": found.model.session.options().budget,
        },
    }]})
}

async fn post_model(
    State(app): State<Arc<App>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (name, action) = parse_path(&rest);
    if action != "infer" {
        return error(ServeError::NotFound(format!(
            "POST /v2/models/{rest} is not a route"
        )));
    }
    let started = Instant::now();
    let name = name.to_string();
    let answer = infer(&app, &name, &headers, body).await;
    if let Ok(found) = route(&app.models, &name) {
        let ns = started.elapsed().as_nanos() as u64;
        found.model.counters.record(answer.is_ok(), ns);
    }
    answer.unwrap_or_else(error)
}

/// Admission, the body, the pass on a blocking thread, the answer; all within the timeout.
async fn infer(app: &Arc<App>, name: &str, headers: &HeaderMap, body: Body) -> Result<Response> {
    if app.draining.load(Ordering::SeqCst) {
        return Err(ServeError::Unavailable(
            "the server is shutting down".into(),
        ));
    }
    route(&app.models, name)?;
    let limit = app.options.body_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| ServeError::bad(format!("{HEADER_LENGTH} is not a byte count")))?,
        ),
    };
    let admitted = Arc::clone(&app.admitted).try_acquire_owned().map_err(|_| {
        ServeError::Unavailable(format!(
            "{} requests are running or waiting already; retry later",
            app.options.concurrency + app.options.queue
        ))
    })?;
    let timeout = app.options.timeout;
    let work = async {
        let bytes: Bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| too_large(limit))?;
        let request = parse_request(&bytes, header_length)?;
        drop(bytes);
        let computing = Arc::clone(&app.computing)
            .acquire_owned()
            .await
            .map_err(|_| ServeError::Unavailable("the server is shutting down".into()))?;
        let app = Arc::clone(app);
        let name = name.to_string();
        let task = tokio::task::spawn_blocking(move || {
            let _computing = computing;
            let found = route(&app.models, &name)?;
            let outputs = found.infer(&request)?;
            respond(&name, request, outputs)
        });
        match task.await {
            Ok(answer) => answer,
            Err(e) => Err(ServeError::Panicked(panic_message(e))),
        }
    };
    let answer = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ServeError::Timeout {
            seconds: timeout.as_secs_f64(),
        })?;
    drop(admitted);
    answer
}

fn too_large(limit: usize) -> ServeError {
    ServeError::TooLarge { limit }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into()),
        Err(_) => "the task was cancelled".into(),
    }
}

/// The outputs asked for (all by default), binary where asked.
fn respond(
    name: &str,
    request: crate::protocol::InferRequest,
    outputs: Vec<(String, edgerun_tensor::Tensor)>,
) -> Result<Response> {
    if let Some(asked) = &request.outputs {
        if let Some((missing, _)) = asked
            .iter()
            .find(|(n, _)| !outputs.iter().any(|(o, _)| o == n))
        {
            let have: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ServeError::bad(format!(
                "no output {missing:?}; the model gives {have:?}"
            )));
        }
    }
    let mut tensors = Vec::with_capacity(outputs.len());
    for (n, t) in outputs {
        let wanted = request
            .outputs
            .as_ref()
            .is_none_or(|a| a.iter().any(|(o, _)| *o == n));
        if wanted {
            let t = t.contiguous();
            let binary = request.binary(&n);
            tensors.push((
                WireTensor::from_f32(n, t.shape().to_vec(), t.values())?,
                binary,
            ));
        }
    }
    let (body, header_length) = encode_response(name, request.id, &tensors)?;
    let mut response = Response::builder().status(StatusCode::OK);
    response = match header_length {
        Some(n) => response
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(HEADER_LENGTH, n),
        None => response.header(header::CONTENT_TYPE, "application/json"),
    };
    response
        .body(Body::from(body))
        .map_err(|e| ServeError::Panicked(e.to_string()))
}
