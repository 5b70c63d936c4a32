//! `[web]`: the web inbox's address, token and limits.

use std::net::SocketAddr;
use std::time::Duration;

use super::{DEFAULT_WEB, MIN_TOKEN_LEN, WebSection, WebSettings};

/// Checks `[web]` with the command line's `--web` and `--no-web`; None:
/// no web side.
pub(super) fn validate(
    w: &WebSection,
    over_web: Option<String>,
    no_web: bool,
    zero_config: bool,
    problems: &mut Vec<String>,
) -> Option<WebSettings> {
    let web_listen = if no_web {
        None
    } else if let Some(w) = over_web {
        Some(w)
    } else if let Some(w) = w.listen.clone() {
        Some(w)
    } else if zero_config {
        Some(DEFAULT_WEB.to_owned())
    } else {
        None
    };
    let token = w.token.clone();
    if let Some(t) = &token
        && (t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        problems.push(format!(
            "web.token: use at least {MIN_TOKEN_LEN} printable ASCII characters, no spaces (for example the output of `openssl rand -hex 24`)"
        ));
    }
    let web_defaults = postel_web::WebLimits::default();
    let web_limits = postel_web::WebLimits {
        max_connections: w.max_connections.unwrap_or(web_defaults.max_connections),
        header_timeout: w
            .header_timeout
            .map_or(web_defaults.header_timeout, Duration::from_secs),
        max_streams: w.max_streams.unwrap_or(web_defaults.max_streams),
        max_connections_per_ip: w
            .max_connections_per_ip
            .unwrap_or(web_defaults.max_connections_per_ip),
        ..web_defaults
    };
    if web_limits.max_connections == 0
        || web_limits.max_connections_per_ip == 0
        || web_limits.header_timeout.is_zero()
    {
        problems.push(
            "web.max_connections, web.max_connections_per_ip and web.header_timeout: each must be at least 1".to_owned(),
        );
    }
    let mut release_targets = std::collections::BTreeMap::new();
    for (name, target) in w.release_targets.iter().flatten() {
        let ok = target
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if ok && !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
            release_targets.insert(name.clone(), target.clone());
        } else {
            problems.push(format!(
                "web.release_targets.{name}: {target:?} is not HOST:PORT (for example \"smtp.staging.example:25\")"
            ));
        }
    }
    match web_listen.map(|w| (w.parse::<SocketAddr>(), w)) {
        None => None,
        Some((Ok(addr), _)) => Some(WebSettings {
            addr,
            token,
            limits: web_limits,
            release_targets,
            tls: w.tls.unwrap_or(false),
        }),
        Some((Err(_), w)) => {
            problems.push(format!(
                "web.listen: {w:?} is not IP:PORT (for example 127.0.0.1:8025)"
            ));
            None
        }
    }
}
