//! What every request goes through first: the loopback `Host` check (no
//! DNS rebinding), the login (lockout first; a refusal closes its
//! connection), and the headers every response carries.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use postel_store::Store;
use serde_json::json;

use crate::Web;

/// Login (where one is needed) and the headers every response carries.
pub(crate) async fn guard<S: Store + Clone>(
    State(web): State<Arc<Web<S>>>,
    req: Request,
    next: Next,
) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    if !web.login_required() {
        // Open on loopback: only for pages of this machine, not for a
        // remote page whose name was rebound to 127.0.0.1.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            return with_security_headers(
                (
                    StatusCode::FORBIDDEN,
                    Json(json!({"error": "use a loopback name (127.0.0.1, localhost) to reach this server, or set a web token"})),
                )
                    .into_response(),
            );
        }
    }
    let access = web.access(authorization, ip).await;
    if access == crate::Access::LockedOut {
        return with_security_headers(
            (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": "too many failed logins from this address: try again later"})),
            )
                .into_response(),
        );
    }
    if access == crate::Access::Busy {
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "every password check is busy: try again in a few seconds"})),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return with_security_headers(r);
    }
    if access != crate::Access::Allowed {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "log in with a Postel user (HTTP Basic) or the web token (Bearer)"})),
        )
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Postel\", charset=\"UTF-8\""),
        );
        return with_security_headers(r);
    }
    with_security_headers(next.run(req).await)
}

/// True if and only if a `Host` header names this machine: `localhost`
/// (or a name under it), or a loopback address, with any port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn with_security_headers(mut r: Response) -> Response {
    // A refused request ends its connection, so refusals cannot keep
    // connections (and the cap on them) for ever.
    if matches!(
        r.status(),
        StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1:8025",
            "localhost",
            "LOCALHOST:80",
            "app.localhost:8025",
            "[::1]:8025",
            "127.1.2.3",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8025",
            "10.0.0.1:8025",
            "",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
