//! `[store]`: where messages, users and the queue are kept. Absent, SQLite
//! in the data folder; with `url`, PostgreSQL, which several nodes share.

use serde::{Deserialize, Serialize};

/// `[store]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreSection {
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`: keep everything in
    /// PostgreSQL. Absent: SQLite in the data folder.
    pub(crate) url: Option<String>,
    /// This node's name, unique among the nodes that share the database.
    /// Default: the hostname.
    pub(crate) node: Option<String>,
    /// Seconds a delivery claim lasts unless renewed: how long the mail a
    /// dead node was sending waits before another node takes it. Default 60.
    pub(crate) lease: Option<u64>,
    /// Connections to the database. Default 16.
    pub(crate) connections: Option<usize>,
}

/// A PostgreSQL store, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgSettings {
    pub(crate) url: String,
    pub(crate) node: String,
    pub(crate) lease: u64,
    pub(crate) connections: usize,
}

/// The `[store]` section's settings: None for SQLite.
pub(crate) fn validate(
    s: &StoreSection,
    hostname: &str,
    problems: &mut Vec<String>,
) -> Option<PgSettings> {
    let url = s.url.as_ref()?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        problems.push(format!(
            "store.url: {:?} is not a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)",
            masked(url)
        ));
        return None;
    }
    let node = s.node.clone().unwrap_or_else(|| hostname.to_owned());
    if node.is_empty() || node.len() > 255 || node.chars().any(char::is_control) {
        problems.push("store.node: a name of 1 to 255 printable characters".to_owned());
    }
    if let Err(e) = postel_store::pg_config(url, &node) {
        problems.push(format!("store.url: {e}"));
    }
    let lease = s.lease.unwrap_or(60);
    if !(10..=86_400).contains(&lease) {
        problems.push("store.lease: from 10 to 86400 seconds".to_owned());
    }
    let connections = s.connections.unwrap_or(16);
    if !(2..=1000).contains(&connections) {
        problems.push("store.connections: from 2 to 1000".to_owned());
    }
    Some(PgSettings {
        url: url.clone(),
        node,
        lease,
        connections,
    })
}

/// The URL with its password hidden (in the user part, and a `password=`
/// parameter), for printing.
pub(crate) fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let main = match main.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}:(set)@{host}")
        }
        _ => main.to_owned(),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=(set)"),
                _ => kv.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{main}?{q}"),
        None => format!("{scheme}://{main}"),
    }
}

/// The effective `[store]`, as `config check` prints it.
pub(crate) fn effective(pg: Option<&PgSettings>) -> StoreSection {
    match pg {
        None => StoreSection::default(),
        Some(p) => StoreSection {
            url: Some(masked(&p.url)),
            node: Some(p.node.clone()),
            lease: Some(p.lease),
            connections: Some(p.connections),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_checked_and_its_password_never_printed() {
        let mut problems = Vec::new();
        let s = StoreSection {
            url: Some("postgres://postel:s3cret@db.example:5432/mail".into()),
            ..StoreSection::default()
        };
        let pg = validate(&s, "mx1.example", &mut problems).expect("pg");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((pg.node.as_str(), pg.lease), ("mx1.example", 60));
        let shown = effective(Some(&pg)).url.expect("url");
        assert_eq!(shown, "postgres://postel:(set)@db.example:5432/mail");
        assert_eq!(
            masked("postgres://postel@db/mail?sslmode=disable&password=x1"),
            "postgres://postel@db/mail?sslmode=disable&password=(set)"
        );
        assert!(validate(&StoreSection::default(), "h", &mut problems).is_none());
        let bad = StoreSection {
            url: Some("mysql://x".into()),
            lease: Some(1),
            ..StoreSection::default()
        };
        validate(&bad, "h", &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let short = StoreSection {
            url: Some("postgres://h/db".into()),
            lease: Some(1),
            connections: Some(1),
            ..StoreSection::default()
        };
        validate(&short, "h", &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
