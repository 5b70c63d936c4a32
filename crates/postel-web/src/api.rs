//! The routes: the inbox page and its assets, `/api/v1/...`, `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use postel_store::time::parse_time;
use postel_store::{Change, Message, Store, StoreError};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::guard::guard;
use crate::{Web, json, mime};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// The page may load only its own script, style and frames; no inline
/// script, no plugin, no remote anything.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// A message's HTML: no script at all (`sandbox` without `allow-scripts`),
/// images only inline (its own cid: parts, made data: URLs), no fonts or
/// styles from elsewhere, nothing fetched from anywhere, this server
/// included.
const MESSAGE_CSP: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; frame-ancestors 'self'; sandbox";
/// Raw sources and attachments: never run, whatever a browser makes of them.
const DOWNLOAD_CSP: &str = "default-src 'none'; sandbox";

/// The size of the pieces a large raw message is sent in.
const RAW_PIECE: usize = 64 * 1024;

/// Most messages in one page of the list.
const MAX_LIMIT: u64 = 500;
const DEFAULT_LIMIT: u64 = 50;

pub(crate) fn routes<S: Store + Clone>(web: Arc<Web<S>>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
        .route("/api/v1/messages", get(list::<S>).delete(delete_all::<S>))
        .route(
            "/api/v1/messages/{id}",
            get(one::<S>).delete(delete_one::<S>),
        )
        .route("/api/v1/messages/{id}/raw", get(raw::<S>))
        .route(
            "/api/v1/messages/{id}/release",
            axum::routing::post(crate::release::release::<S>),
        )
        .route("/api/v1/messages/{id}/html", get(html::<S>))
        .route(
            "/api/v1/messages/{id}/attachments/{index}",
            get(attachment::<S>),
        )
        .route("/api/v1/webhooks", get(crate::queue::webhooks::<S>))
        .route("/api/v1/queue", get(crate::queue::list::<S>))
        .route(
            "/api/v1/queue/{id}/{action}",
            axum::routing::post(crate::queue::act::<S>),
        )
        .route("/api/v1/status", get(status::<S>))
        .route("/api/v1/events", get(events::<S>))
        .route("/metrics", get(metrics::<S>))
        .fallback(|| async { ApiError::NotFound("no such page".into()) })
        .layer(middleware::from_fn_with_state(web.clone(), guard::<S>))
        .with_state(web)
}

/// Errors as JSON `{"error": "..."}` with the right status.
pub(crate) enum ApiError {
    NotFound(String),
    BadRequest(String),
    Store(StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, text) = match self {
            ApiError::NotFound(t) => (StatusCode::NOT_FOUND, t),
            ApiError::BadRequest(t) => (StatusCode::BAD_REQUEST, t),
            ApiError::Store(e) => {
                tracing::error!(error = %e, "web: store error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("store error: {e}"),
                )
            }
        };
        (code, Json(json!({ "error": text }))).into_response()
    }
}

async fn fetch<S: Store + Clone>(web: &Arc<Web<S>>, id: String) -> Result<Message, ApiError> {
    let missing = format!("no message with id {id}");
    web.store
        .get(&id)
        .await
        .map_err(ApiError::Store)?
        .ok_or(ApiError::NotFound(missing))
}

fn with_headers(body: impl IntoResponse, headers: &[(header::HeaderName, String)]) -> Response {
    let mut r = body.into_response();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            r.headers_mut().insert(name.clone(), v);
        }
    }
    r
}

async fn index() -> Response {
    with_headers(
        INDEX_HTML,
        &[
            (header::CONTENT_TYPE, "text/html; charset=utf-8".into()),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP.into()),
            (header::X_FRAME_OPTIONS, "DENY".into()),
        ],
    )
}

async fn app_js() -> Response {
    with_headers(
        APP_JS,
        &[(
            header::CONTENT_TYPE,
            "text/javascript; charset=utf-8".into(),
        )],
    )
}

async fn style_css() -> Response {
    with_headers(
        STYLE_CSS,
        &[(header::CONTENT_TYPE, "text/css; charset=utf-8".into())],
    )
}

#[derive(Deserialize)]
struct ListParams {
    limit: Option<u64>,
    offset: Option<u64>,
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    subject: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_time(v).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name}: {v:?} is not a time: use RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23) or Unix seconds"
            ))
        }),
    }
}

async fn list<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    for (name, v) in [
        ("q", &p.q),
        ("from", &p.from),
        ("to", &p.to),
        ("subject", &p.subject),
    ] {
        if v.as_deref()
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            return Err(ApiError::BadRequest(format!(
                "{name}: control characters cannot be searched for"
            )));
        }
    }
    let query = postel_store::Query {
        text: p.q,
        from: p.from,
        to: p.to,
        subject: p.subject,
        since: time_param("since", p.since.as_deref())?,
        until: time_param("until", p.until.as_deref())?,
        offset: p.offset.unwrap_or(0),
        limit: p.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
    };
    let (offset, limit) = (query.offset, query.limit);
    let page = web.store.query(&query).await.map_err(ApiError::Store)?;
    Ok(Json(json!({
        "total": page.total,
        "offset": offset,
        "limit": limit,
        "messages": page.messages.iter().map(json::summary).collect::<Vec<_>>(),
    })))
}

/// A place among the views that parse a message: they are few at once,
/// since each may take a few times the message's size in memory. The
/// place goes with the parsing itself into its blocking task, so a client
/// that hangs up cannot leave parses running outside the count.
async fn view_slot<S: Store + Clone>(
    web: &Arc<Web<S>>,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    web.views
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::NotFound("the server is stopping".into()))
}

async fn one<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let slot = view_slot(&web).await?;
    let m = fetch(&web, id).await?;
    // Parsing a large message takes a while: not on the async threads.
    let v = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        mime::detail(&m)
    })
    .await
    .map_err(|e| ApiError::Store(StoreError::Io(std::io::Error::other(e))))?;
    Ok(Json(v))
}

/// The stored bytes, streamed: the part kept in the database, then the
/// file of a large message in pieces, never the whole in memory.
async fn raw<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let missing = format!("no message with id {id}");
    let m = web
        .store
        .open_raw(&id)
        .await
        .map_err(ApiError::Store)?
        .ok_or(ApiError::NotFound(missing))?;
    let name = format!("{}.eml", m.summary.id);
    let size = m.summary.size;
    let head =
        futures_util::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from(m.head))]);
    // The file is read up to the length the store recorded, no further.
    let rest = m.rest.map(|(f, len)| std::io::Read::take(f, len));
    let rest = futures_util::stream::unfold(rest, |file| async move {
        let mut file = file?;
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let mut buf = vec![0u8; RAW_PIECE];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, file))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match read {
            Ok((buf, _)) if buf.is_empty() => None,
            Ok((buf, file)) => Some((Ok(axum::body::Bytes::from(buf)), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    });
    let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(head, rest));
    Ok(with_headers(
        body,
        &[
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_TYPE, "message/rfc822".into()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
            (header::CONTENT_SECURITY_POLICY, DOWNLOAD_CSP.into()),
        ],
    ))
}

async fn html<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let slot = view_slot(&web).await?;
    let m = fetch(&web, id).await?;
    let h = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        mime::html(&m)
    })
    .await
    .map_err(|e| ApiError::Store(StoreError::Io(std::io::Error::other(e))))?
    .ok_or_else(|| ApiError::NotFound("this message has no HTML part".into()))?;
    Ok(with_headers(
        h,
        &[
            (header::CONTENT_TYPE, "text/html; charset=utf-8".into()),
            (header::CONTENT_SECURITY_POLICY, MESSAGE_CSP.into()),
        ],
    ))
}

async fn attachment<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    Path((id, index)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    let slot = view_slot(&web).await?;
    let m = fetch(&web, id).await?;
    let a = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        mime::attachment(&m, index)
    })
    .await
    .map_err(|e| ApiError::Store(StoreError::Io(std::io::Error::other(e))))?
    .ok_or_else(|| ApiError::NotFound(format!("no attachment {index}")))?;
    let name = a.filename.unwrap_or_else(|| format!("attachment-{index}"));
    // The content type is the sender's: keep it only if it is a plain
    // token pair, so it cannot smuggle parameters or header breaks.
    let ctype = if a
        .content_type
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/+-.".contains(&b))
    {
        a.content_type
    } else {
        "application/octet-stream".to_owned()
    };
    Ok(with_headers(
        a.bytes,
        &[
            (header::CONTENT_TYPE, ctype),
            (header::CONTENT_DISPOSITION, disposition(&name)),
            (header::CONTENT_SECURITY_POLICY, DOWNLOAD_CSP.into()),
        ],
    ))
}

/// `attachment` with the file name twice: ASCII for old clients, and
/// RFC 5987 UTF-8 for the rest.
fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn delete_one<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let missing = format!("no message with id {id}");
    if web.store.delete(&id).await.map_err(ApiError::Store)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(missing))
    }
}

async fn delete_all<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = web.store.delete_all().await.map_err(ApiError::Store)?;
    Ok(Json(json!({ "deleted": n })))
}

async fn status<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let stats = web.store.stats().await.map_err(ApiError::Store)?;
    let sessions = (web.sessions)();
    Ok(Json(json!({
        "version": web.version,
        "uptime_secs": web.started.elapsed().as_secs(),
        "sessions_open": sessions.open,
        "sessions_total": sessions.total,
        "messages": stats.messages,
        "bytes": stats.bytes,
        "release_targets": web
            .release
            .as_ref()
            .filter(|_| web.login_required())
            .map(|r| r.targets())
            .unwrap_or_default(),
    })))
}

/// Server-sent events: `message` with a summary when one is stored,
/// `deleted` with `{"id"}` or `{"all": true}`, and `resync` when this
/// stream fell behind and missed some (the page then reloads its list).
async fn events<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, Response> {
    let Some(open) = StreamSlot::take(&web) else {
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "too many live event streams are open: reload the page later"})),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return Err(r);
    };
    let changes = web.store.subscribe();
    let stop = web.stop.clone();
    let stream = futures_util::stream::unfold(
        (changes, stop, open),
        |(mut rx, mut stop, open)| async move {
            let change = tokio::select! {
                c = rx.recv() => c,
                // Shutdown ends the stream, so the server can stop.
                _ = stop.wait_for(|s| *s) => return None,
            };
            let event = match change {
                Ok(Change::Stored(s)) => Event::default()
                    .event("message")
                    .data(json::summary(&s).to_string()),
                Ok(Change::Deleted(id)) => Event::default()
                    .event("deleted")
                    .data(json!({ "id": id }).to_string()),
                Ok(Change::DeletedAll) => Event::default()
                    .event("deleted")
                    .data(json!({ "all": true }).to_string()),
                Err(RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(event), (rx, stop, open)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A live event stream's place under [`crate::WebLimits::max_streams`];
/// given back when the stream ends or its client goes.
struct StreamSlot(Arc<std::sync::atomic::AtomicUsize>);

impl StreamSlot {
    fn take<S>(web: &Web<S>) -> Option<StreamSlot> {
        use std::sync::atomic::Ordering;
        let max = web.limits.max_streams;
        web.streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(web.streams.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

async fn metrics<S: Store + Clone>(State(web): State<Arc<Web<S>>>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &web.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    (headers, text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_escapes_names() {
        assert_eq!(
            disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            disposition("a\"b\r\nc é.txt"),
            "attachment; filename=\"a_b__c _.txt\"; filename*=UTF-8''a%22b%0D%0Ac%20%C3%A9.txt"
        );
    }
}
