//! Mailpit's "release": a stored message sent on to an SMTP server. Only
//! to the targets the config lists, and only behind a login: otherwise the
//! button would be an open relay, and a way to make Postel connect
//! anywhere. The sending itself is the binary's (delivery), given here as a
//! [`Releaser`], so that this crate needs none of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use postel_store::{Message, Store};
use serde::Deserialize;
use serde_json::json;

use crate::Web;
use crate::api::ApiError;

/// The result of a release: each recipient with the server's reply to it.
pub type Released = Result<Vec<(String, String)>, String>;

/// Sends stored messages on to the configured targets.
pub trait Releaser: Send + Sync + 'static {
    /// The names of the targets, as the config lists them.
    fn targets(&self) -> Vec<String>;

    /// Sends `message` to target `target`, for `to`.
    fn release(
        &self,
        target: &str,
        message: Message,
        to: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Released> + Send>>;
}

/// The body of `POST /api/v1/messages/{id}/release`.
#[derive(Debug, Deserialize)]
pub(crate) struct ReleaseRequest {
    target: String,
    /// Default: the message's own recipients.
    to: Option<Vec<String>>,
}

fn refuse(code: StatusCode, why: String) -> Response {
    (code, Json(json!({ "error": why }))).into_response()
}

pub(crate) async fn release<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    Path(id): Path<String>,
    Json(req): Json<ReleaseRequest>,
) -> Result<Response, ApiError> {
    if !web.login_required() {
        return Ok(refuse(
            StatusCode::FORBIDDEN,
            "release needs a login: set [web] token, or add a user, first".into(),
        ));
    }
    let Some(releaser) = web.release.clone() else {
        return Ok(refuse(
            StatusCode::NOT_FOUND,
            "no release targets are configured ([web] release_targets)".into(),
        ));
    };
    if !releaser.targets().contains(&req.target) {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "no release target {:?}; the config lists: {}",
                req.target,
                releaser.targets().join(", ")
            ),
        ));
    }
    let message = web
        .store
        .get(&id)
        .await
        .map_err(ApiError::Store)?
        .ok_or_else(|| ApiError::NotFound(format!("no message with id {id}")))?;
    let to = req
        .to
        .unwrap_or_else(|| message.summary.envelope.addresses());
    if to.is_empty() || to.len() > 100 {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "give between 1 and 100 recipients".into(),
        ));
    }
    if let Some(bad) = to
        .iter()
        .find(|a| postel_proto::address::parse_mailbox(a.as_bytes(), true).is_err())
    {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            format!("{bad:?} is not an address"),
        ));
    }
    tracing::info!(
        id,
        target = req.target,
        recipients = to.len(),
        "web: release"
    );
    Ok(match releaser.release(&req.target, message, to).await {
        Ok(results) => Json(json!({
            "results": results
                .into_iter()
                .map(|(recipient, reply)| json!({ "recipient": recipient, "reply": reply }))
                .collect::<Vec<_>>()
        }))
        .into_response(),
        Err(why) => refuse(StatusCode::BAD_GATEWAY, why),
    })
}
