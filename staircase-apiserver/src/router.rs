//! Turns a request line into what it addresses: a discovery document, an OpenAPI document, or
//! a resource (collection, object, subresource) plus the Kubernetes verb.

use std::collections::HashMap;

/// The Kubernetes verb of a resource request (as used by RBAC and audit logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST to a collection.
    Create,
    /// PUT of one object.
    Update,
    /// PATCH of one object.
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
}

impl Verb {
    /// The lower-case spelling used by kube-apiserver.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    /// Whether this verb changes state.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection
        )
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource URL, e.g. `/apis/apps/v1/namespaces/ns/deployments/web/status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourcePath {
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource plural.
    pub plural: String,
    /// Namespace segment, when present.
    pub namespace: Option<String>,
    /// Object name, when present.
    pub name: Option<String>,
    /// Subresource such as `status`.
    pub subresource: Option<String>,
}

/// What a URL path addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/staircase/stats`: the request statistics as JSON ([`Stats::to_json`](crate::Stats::to_json)).
    Stats,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    ResourceList(String, String),
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiV3Index,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
    OpenApiV3(String, String),
    /// A resource collection or object.
    Resource(ResourcePath),
    /// Nothing here.
    NotFound,
}

/// Decodes `%XX` escapes and `+` (query strings only).
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_as_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string into a map (the last value of a repeated key wins).
pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(percent_decode(k, true), percent_decode(v, true));
    }
    m
}

/// Routes a path.
pub fn route(path: &str) -> Route {
    let segs: Vec<String> = path
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Route::Version,
        ["staircase", "stats"] => Route::Stats,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group(g.to_string()),
        ["api", v] => Route::ResourceList(String::new(), v.to_string()),
        ["apis", g, v] => Route::ResourceList(g.to_string(), v.to_string()),
        ["openapi", "v2"] | ["swagger.json"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", v] => Route::OpenApiV3(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => resource(String::new(), v, rest),
        ["apis", g, v, rest @ ..] => resource(g.to_string(), v, rest),
        _ => Route::NotFound,
    }
}

fn resource(group: String, version: &str, rest: &[&str]) -> Route {
    let mut p = ResourcePath {
        group,
        version: version.to_string(),
        ..Default::default()
    };
    let own = |x: &&str| Some(x.to_string());
    match rest {
        ["namespaces"] => p.plural = "namespaces".into(),
        ["namespaces", ns] => {
            p.plural = "namespaces".into();
            p.name = own(ns);
        }
        ["namespaces", ns, sub @ ("status" | "finalize")] => {
            p.plural = "namespaces".into();
            p.name = own(ns);
            p.subresource = own(sub);
        }
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => {
            p.namespace = own(ns);
            p.plural = plural.to_string();
            p.name = tail.first().map(|s| s.to_string());
            p.subresource = tail.get(1).map(|s| s.to_string());
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            p.plural = plural.to_string();
            p.name = tail.first().map(|s| s.to_string());
            p.subresource = tail.get(1).map(|s| s.to_string());
        }
        _ => return Route::NotFound,
    }
    Route::Resource(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/api"), Route::CoreVersions);
        assert_eq!(
            route("/apis/apps/v1"),
            Route::ResourceList("apps".into(), "v1".into())
        );
        let Route::Resource(p) = route("/apis/apps/v1/namespaces/n/deployments/d/status") else {
            panic!()
        };
        assert_eq!(
            (
                p.group.as_str(),
                p.namespace.as_deref(),
                p.plural.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            ("apps", Some("n"), "deployments", Some("d"), Some("status"))
        );
        let Route::Resource(p) = route("/api/v1/namespaces/n") else {
            panic!()
        };
        assert_eq!(
            (p.plural.as_str(), p.name.as_deref(), p.namespace),
            ("namespaces", Some("n"), None)
        );
        let Route::Resource(p) = route("/api/v1/configmaps") else {
            panic!()
        };
        assert_eq!((p.plural.as_str(), p.name), ("configmaps", None));
        let q = parse_query(Some("labelSelector=a%3Db%2Cc+in+(x)&watch=1"));
        assert_eq!(q["labelSelector"], "a=b,c in (x)");
        assert_eq!(percent_decode("100%", false), "100%");
    }
}
