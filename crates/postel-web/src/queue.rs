//! The delivery queue over HTTP: `GET /api/v1/queue` lists every queued
//! recipient (the same objects as `postel queue list --json`), and
//! `POST /api/v1/queue/{id}/{retry|hold|release|delete|bounce}` acts on one
//! message's rows (`all` for every message). The webhook outbox beside it:
//! `GET /api/v1/webhooks[?message=ID]`, each delivery's state.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use postel_store::{QueueAction, Store};
use serde_json::json;

use crate::Web;
use crate::api::ApiError;

pub(crate) async fn list<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = web.store.queue_list().await.map_err(ApiError::Store)?;
    Ok(Json(serde_json::Value::Array(
        rows.iter().map(crate::json::queue_entry).collect(),
    )))
}

pub(crate) async fn act<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let action = match action.as_str() {
        "retry" => QueueAction::Retry,
        "hold" => QueueAction::Hold,
        "release" => QueueAction::Release,
        "delete" => QueueAction::Delete,
        "bounce" => QueueAction::Bounce,
        other => {
            return Err(ApiError::NotFound(format!(
                "no queue action {other:?}: retry, hold, release, delete or bounce"
            )));
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let target = (id != "all").then_some(id.as_str());
    let n = web
        .store
        .queue_act(target, action, now)
        .await
        .map_err(ApiError::Store)?;
    Ok(Json(json!({ "changed": n })))
}

/// `?message=ID` for one message's webhook deliveries.
#[derive(serde::Deserialize)]
pub(crate) struct WebhookParams {
    message: Option<String>,
}

/// The webhook deliveries, newest message first (at most 1,000).
pub(crate) async fn webhooks<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    axum::extract::Query(p): axum::extract::Query<WebhookParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = web
        .store
        .webhook_list(p.message.as_deref(), 1000)
        .await
        .map_err(ApiError::Store)?;
    Ok(Json(serde_json::Value::Array(
        rows.iter().map(crate::json::webhook_entry).collect(),
    )))
}
