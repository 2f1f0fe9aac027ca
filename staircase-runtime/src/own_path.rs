//! Telling a write to the reconciled object itself from a write to anything else, by its path.
//!
//! After every run that wrote, the runner looks for the newest write to the object (or its status)
//! among the steps' writes, for read-your-own-writes. Building the object's path with
//! `Resource::url_path` costs five allocations per run; comparing the write's path against the
//! pieces kube's default `url_path` is made of costs none. A resource type whose `url_path` is not
//! kube's default (a hand-written `Resource` impl may override it) is detected once per operator
//! and compared against the built path instead.

use kube::Resource;

/// How the runner recognises the reconciled object's own path for resource `K`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OwnPath {
    /// `K::url_path` is kube's default: compare piece by piece, nothing built.
    Pieces,
    /// `K::url_path` is overridden: build it and compare.
    Built,
}

impl OwnPath {
    /// Checks once whether `K`'s paths are kube's default shape, cluster-scoped and namespaced.
    pub(crate) fn detect<K: Resource<DynamicType = ()>>() -> Self {
        let default = |ns: Option<&str>| {
            let built = K::url_path(&(), ns) + "/n";
            matches_pieces::<K>(&built, ns, "n")
        };
        if default(None) && default(Some("ns")) {
            OwnPath::Pieces
        } else {
            OwnPath::Built
        }
    }

    /// Whether `path` is the object `namespace`/`name` of kind `K`, or its `/status`.
    pub(crate) fn is_own<K: Resource<DynamicType = ()>>(
        self,
        path: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        match self {
            OwnPath::Pieces => matches_pieces::<K>(path, namespace, name),
            OwnPath::Built => {
                let base = K::url_path(&(), namespace);
                path.strip_prefix(base.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|rest| is_name_or_status(rest, name))
            }
        }
    }
}

/// `/api[s]/{apiVersion}/[namespaces/{ns}/]{plural}/{name}[/status]`, the shape kube's default
/// `Resource::url_path` builds, matched without building it.
fn matches_pieces<K: Resource<DynamicType = ()>>(
    path: &str,
    namespace: Option<&str>,
    name: &str,
) -> bool {
    let root = if K::group(&()).is_empty() {
        "/api/"
    } else {
        "/apis/"
    };
    let rest = (|| {
        let rest = path.strip_prefix(root)?;
        let rest = rest
            .strip_prefix(&*K::api_version(&()))?
            .strip_prefix('/')?;
        let rest = match namespace {
            Some(ns) => rest
                .strip_prefix("namespaces/")?
                .strip_prefix(ns)?
                .strip_prefix('/')?,
            None => rest,
        };
        rest.strip_prefix(&*K::plural(&()))?.strip_prefix('/')
    })();
    rest.is_some_and(|rest| is_name_or_status(rest, name))
}

/// `name` itself or `name/status` (an object may be called `status`: compare the name first).
fn is_name_or_status(rest: &str, name: &str) -> bool {
    rest == name || rest.strip_prefix(name) == Some("/status")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};

    use super::*;

    fn own<K: Resource<DynamicType = ()>>(path: &str, ns: Option<&str>, name: &str) -> bool {
        let pieces = OwnPath::Pieces.is_own::<K>(path, ns, name);
        let built = OwnPath::Built.is_own::<K>(path, ns, name);
        assert_eq!(pieces, built, "both ways agree on {path}");
        pieces
    }

    #[test]
    fn kube_default_paths_are_compared_piece_by_piece() {
        assert!(matches!(OwnPath::detect::<ConfigMap>(), OwnPath::Pieces));
        assert!(matches!(OwnPath::detect::<Namespace>(), OwnPath::Pieces));
        assert!(matches!(OwnPath::detect::<Deployment>(), OwnPath::Pieces));
    }

    #[test]
    fn the_object_and_its_status_are_its_own() {
        let cm = "/api/v1/namespaces/default/configmaps/a";
        assert!(own::<ConfigMap>(cm, Some("default"), "a"));
        assert!(own::<ConfigMap>(
            &format!("{cm}/status"),
            Some("default"),
            "a"
        ));
        let d = "/apis/apps/v1/namespaces/x/deployments/web";
        assert!(own::<Deployment>(d, Some("x"), "web"));
        assert!(own::<Deployment>(&format!("{d}/status"), Some("x"), "web"));
        assert!(own::<Namespace>("/api/v1/namespaces/team", None, "team"));
    }

    #[test]
    fn other_objects_are_not() {
        let cm = "/api/v1/namespaces/default/configmaps/ab";
        assert!(!own::<ConfigMap>(cm, Some("default"), "a"), "a longer name");
        assert!(
            !own::<ConfigMap>(cm, Some("other"), "ab"),
            "another namespace"
        );
        assert!(!own::<ConfigMap>(
            "/api/v1/namespaces/default/secrets/ab",
            Some("default"),
            "ab"
        ));
        assert!(!own::<ConfigMap>(
            &format!("{cm}/scale"),
            Some("default"),
            "ab"
        ));
        assert!(!own::<Deployment>(
            "/apis/apps/v2/namespaces/x/deployments/web",
            Some("x"),
            "web"
        ));
        assert!(!own::<Deployment>(
            "/api/v1/namespaces/x/deployments/web",
            Some("x"),
            "web"
        ));
        // A child named `status` of an object's collection is not that object's status.
        assert!(!own::<ConfigMap>(
            "/api/v1/namespaces/d/configmaps/status",
            Some("d"),
            "x"
        ));
        assert!(own::<ConfigMap>(
            "/api/v1/namespaces/d/configmaps/status",
            Some("d"),
            "status"
        ));
        assert!(!own::<Namespace>(
            "/api/v1/namespaces/team/configmaps/a",
            None,
            "team"
        ));
    }

    /// A resource served under a path of its own (a hand-written impl overriding `url_path`).
    struct Elsewhere(kube::api::ObjectMeta);

    impl Resource for Elsewhere {
        type DynamicType = ();
        type Scope = k8s_openapi::NamespaceResourceScope;

        fn kind(_: &()) -> std::borrow::Cow<'_, str> {
            "Elsewhere".into()
        }
        fn group(_: &()) -> std::borrow::Cow<'_, str> {
            "example.com".into()
        }
        fn version(_: &()) -> std::borrow::Cow<'_, str> {
            "v1".into()
        }
        fn plural(_: &()) -> std::borrow::Cow<'_, str> {
            "elsewheres".into()
        }
        fn url_path(_: &(), ns: Option<&str>) -> String {
            format!("/proxy/{}/elsewheres", ns.unwrap_or("-"))
        }
        fn meta(&self) -> &kube::api::ObjectMeta {
            &self.0
        }
        fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
            &mut self.0
        }
    }

    #[test]
    fn an_overridden_url_path_is_built_and_compared() {
        let how = OwnPath::detect::<Elsewhere>();
        assert!(matches!(how, OwnPath::Built));
        assert!(how.is_own::<Elsewhere>("/proxy/a/elsewheres/x", Some("a"), "x"));
        assert!(how.is_own::<Elsewhere>("/proxy/a/elsewheres/x/status", Some("a"), "x"));
        assert!(!how.is_own::<Elsewhere>("/proxy/b/elsewheres/x", Some("a"), "x"));
        let default_shape = "/apis/example.com/v1/namespaces/a/elsewheres/x";
        assert!(!how.is_own::<Elsewhere>(default_shape, Some("a"), "x"));
    }
}
