//! The declarative children step against the embedded API server, one run at a time
//! (`Operator::run_once` on a freshly read parent), so every assertion is about a known run.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use staircase::children::{ChildKind, OWNER_LABEL, deployment_available, parent_triggers};
use staircase::prelude::*;
use staircase::{RunEnd, Start};
use staircase_examples::echo::{EchoServer, EchoServerSpec, desired_deployment};
use staircase_tests::{Env, GUARD};

/// A parent whose spec says which children it wants.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.staircase.rs",
    version = "v1",
    kind = "Parent",
    namespaced
)]
pub struct ParentSpec {
    /// Written into the ConfigMaps; the Deployment's replicas.
    pub message: String,
    /// Replicas of the Deployment.
    pub replicas: i32,
    /// Whether the ConfigMap `<name>-extra` is wanted.
    pub extra: bool,
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn deployment(p: &Parent) -> Deployment {
    let echo = EchoServer::new(
        &p.name_any(),
        EchoServerSpec {
            replicas: p.spec.replicas,
            port: 80,
        },
    );
    desired_deployment(&echo)
}

/// ConfigMaps `b` and `a` (given out of order on purpose), optionally `extra`, and a Deployment.
fn desired(p: &Parent) -> Children {
    let n = p.name_any();
    let extra = p
        .spec
        .extra
        .then(|| cm(&format!("{n}-extra"), &[("x", "1")]));
    Children::new(p)
        .apply(cm(&format!("{n}-b"), &[("message", &p.spec.message)]))
        .apply(cm(&format!("{n}-a"), &[("message", &p.spec.message)]))
        .apply_opt(extra)
        .apply(deployment(p))
}

fn recreate(p: &Parent) -> Children {
    desired(p).strategy::<Deployment>(Strategy::Recreate)
}

fn on_delete(p: &Parent) -> Children {
    desired(p).strategy::<Deployment>(Strategy::OnDelete)
}

fn ready(p: &Parent) -> Children {
    desired(p).ready_when(deployment_available)
}

struct T {
    env: Env,
    parents: Api<Parent>,
    cms: Api<ConfigMap>,
    deps: Api<Deployment>,
}

async fn setup() -> T {
    let env = Env::start().await;
    env.install::<Parent>().await;
    let parents = Api::namespaced(env.client.clone(), "default");
    let mut p = Parent::new(
        "p",
        ParentSpec {
            message: "hi".into(),
            replicas: 2,
            extra: false,
        },
    );
    p.metadata.namespace = Some("default".into());
    parents.create(&PostParams::default(), &p).await.unwrap();
    T {
        cms: Api::namespaced(env.client.clone(), "default"),
        deps: Api::namespaced(env.client.clone(), "default"),
        parents,
        env,
    }
}

type Op = Operator<
    Parent,
    (),
    staircase::Then<
        Parent,
        (),
        Start<Parent, ()>,
        staircase::children::ChildrenStep<Parent, fn(&Parent) -> Children>,
    >,
>;

/// The operator under test: one children step, given to `staircase!` as a value.
fn operator(t: &T, f: fn(&Parent) -> Children) -> Op {
    let stairs = staircase!(Parent => [children(f).named("children")]);
    Operator::new(t.env.client.clone(), stairs)
}

impl T {
    /// One run on the parent as it is now; returns how it ended and the writes the server saw.
    async fn run(&self, op: &Op) -> (RunEnd, u64) {
        let before = self.env.server.stats().writes();
        let report = op
            .run_once(self.parents.get("p").await.unwrap())
            .await
            .expect("a run");
        assert!(
            report.step_writes() <= 1,
            "one modification per run: {report}"
        );
        (report.end, self.env.server.stats().writes() - before)
    }

    /// Runs until converged; returns the description of each modification, in order.
    async fn converge(&self, op: &Op) -> Vec<String> {
        let mut changes = Vec::new();
        for _ in 0..10 {
            match self.run(op).await {
                (RunEnd::Converged, 0) => return changes,
                (RunEnd::Modified { description, .. }, 1) => changes.push(description.into_owned()),
                other => panic!("unexpected run: {other:?}"),
            }
        }
        panic!("no convergence after 10 runs: {changes:?}");
    }

    async fn patch_parent(&self, spec: serde_json::Value) {
        let patch = serde_json::json!({ "spec": spec });
        self.parents
            .patch("p", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

fn modified(d: &str) -> String {
    d.to_string()
}

#[tokio::test]
async fn creates_each_child_in_its_own_run_by_kind_then_name_and_a_converged_pass_writes_nothing() {
    let t = setup().await;
    let op = operator(&t, desired);
    let changes = t.converge(&op).await;
    assert_eq!(
        changes,
        [
            "created ConfigMap p-a",
            "created ConfigMap p-b",
            "created Deployment.apps p"
        ]
        .map(modified)
    );

    // Owned for garbage collection and pruning, applied by the stable field manager.
    let parent = t.parents.get("p").await.unwrap();
    let a = t.cms.get("p-a").await.unwrap();
    let owner = &a.owner_references()[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller),
        (parent.uid().unwrap().as_str(), Some(true))
    );
    assert_eq!(a.labels()[OWNER_LABEL], parent.uid().unwrap());
    let managers: Vec<_> = a
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone(), m.operation.clone()))
        .collect();
    assert_eq!(
        managers,
        [(Some("staircase".to_string()), Some("Apply".to_string()))]
    );

    // A converged pass issues no write at all.
    let before = t.env.server.stats().writes();
    for _ in 0..3 {
        assert_eq!(t.run(&op).await, (RunEnd::Converged, 0));
    }
    assert_eq!(t.env.server.stats().writes(), before);
}

#[tokio::test]
async fn drift_made_by_someone_else_is_repaired_in_place_and_their_own_fields_are_kept() {
    let t = setup().await;
    let op = operator(&t, desired);
    t.converge(&op).await;
    let uid = t.deps.get("p").await.unwrap().uid();

    // Another manager (a person with kubectl) scales it and adds a label of its own.
    t.deps.patch("p", &PatchParams::apply("kubectl").force(), &Patch::Apply(&serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "p", "labels": { "team": "blue" } }, "spec": { "replicas": 5 }
    }))).await.unwrap();
    assert_eq!(
        t.converge(&op).await,
        ["updated Deployment.apps p (.spec.replicas differs)"].map(modified)
    );
    let d = t.deps.get("p").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2), "the parent's value wins");
    assert_eq!(
        d.metadata.labels.unwrap()["team"],
        "blue",
        "a field the parent does not set stays"
    );
    assert_eq!(d.metadata.uid, uid, "in place: the same object");
}

#[tokio::test]
async fn a_changed_parent_updates_in_place_and_a_field_no_longer_set_is_removed() {
    let t = setup().await;
    let op = operator(&t, desired);
    t.converge(&op).await;
    t.patch_parent(serde_json::json!({ "message": "bye" }))
        .await;
    assert_eq!(
        t.converge(&op).await,
        [
            "updated ConfigMap p-a (the desired configuration changed)",
            "updated ConfigMap p-b (the desired configuration changed)"
        ]
        .map(modified)
    );
    assert_eq!(
        t.cms.get("p-a").await.unwrap().data.unwrap()["message"],
        "bye"
    );

    // A key the parent stops setting disappears, although the live object still "contains" what
    // is desired: only the applied-configuration hash shows this drift.
    fn fewer_keys(p: &Parent) -> Children {
        Children::new(p)
            .apply(cm("p-a", &[]))
            .owns::<Deployment>()
            .apply(cm("p-b", &[("message", "bye")]))
            .apply(deployment(p))
    }
    let op = operator(&t, fewer_keys);
    assert_eq!(
        t.converge(&op).await,
        ["updated ConfigMap p-a (the desired configuration changed)"].map(modified)
    );
    assert_eq!(
        t.cms.get("p-a").await.unwrap().data.unwrap_or_default(),
        BTreeMap::new()
    );
}

#[tokio::test]
async fn unwanted_children_are_pruned_but_objects_it_does_not_own_are_left_alone() {
    let t = setup().await;
    t.patch_parent(serde_json::json!({ "extra": true })).await;
    let op = operator(&t, desired);
    assert!(
        t.converge(&op)
            .await
            .contains(&"created ConfigMap p-extra".to_string())
    );

    // Carries the tracking label but no owner reference: not ours, never pruned.
    let uid = t.parents.get("p").await.unwrap().uid().unwrap();
    let mut impostor = cm("impostor", &[]);
    impostor.metadata.labels = Some(BTreeMap::from([(OWNER_LABEL.to_string(), uid)]));
    t.cms
        .create(&PostParams::default(), &impostor)
        .await
        .unwrap();

    t.patch_parent(serde_json::json!({ "extra": false })).await;
    assert_eq!(
        t.converge(&op).await,
        ["pruned ConfigMap p-extra, no longer desired"].map(modified)
    );
    assert!(t.cms.get_opt("p-extra").await.unwrap().is_none());
    assert!(t.cms.get_opt("impostor").await.unwrap().is_some());
}

#[tokio::test]
async fn recreate_updates_in_place_what_the_server_accepts() {
    let t = setup().await;
    let op = operator(&t, recreate);
    t.converge(&op).await;
    let old = t.deps.get("p").await.unwrap().uid();
    // What an HPA or `kubectl scale` changes is not immutable: no delete, other managers'
    // fields kept.
    t.patch_parent(serde_json::json!({ "replicas": 3 })).await;
    assert_eq!(
        t.converge(&op).await,
        ["updated Deployment.apps p (the desired configuration changed)"].map(modified)
    );
    let new = t.deps.get("p").await.unwrap();
    assert_eq!(new.uid(), old, "the same object");
    assert_eq!(new.spec.unwrap().replicas, Some(3));
}

/// A ConfigMap marked `immutable` whose data follows the parent's message.
fn immutable_config(p: &Parent) -> Children {
    let mut config = cm(
        &format!("{}-frozen", p.name_any()),
        &[("message", &p.spec.message)],
    );
    config.immutable = Some(true);
    Children::new(p)
        .apply(config)
        .strategy::<ConfigMap>(Strategy::Recreate)
}

#[tokio::test]
async fn recreate_deletes_in_one_run_and_creates_in_the_next_when_the_server_refuses_the_change() {
    let t = setup().await;
    let op = operator(&t, immutable_config);
    t.converge(&op).await;
    let old = t.cms.get("p-frozen").await.unwrap().uid();
    t.patch_parent(serde_json::json!({ "message": "changed" }))
        .await;
    let changes = t.converge(&op).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes[0].starts_with(
            "deleted ConfigMap p-frozen to recreate it (the server refuses to change it in place: "
        ) && changes[0].contains("immutable"),
        "{changes:?}"
    );
    assert_eq!(changes[1], "created ConfigMap p-frozen");
    let new = t.cms.get("p-frozen").await.unwrap();
    assert_ne!(new.uid(), old, "a new object");
    assert_eq!(new.data.unwrap()["message"], "changed");
}

#[tokio::test]
async fn on_delete_never_touches_an_existing_child_but_recreates_a_deleted_one() {
    let t = setup().await;
    let op = operator(&t, on_delete);
    t.converge(&op).await;
    t.patch_parent(serde_json::json!({ "replicas": 3, "message": "m2" }))
        .await;
    // The ConfigMaps (in place) follow; the Deployment does not.
    assert_eq!(t.converge(&op).await.len(), 2);
    assert_eq!(
        t.deps.get("p").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );
    assert_eq!(t.run(&op).await, (RunEnd::Converged, 0));

    t.deps.delete("p", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        t.converge(&op).await,
        ["created Deployment.apps p"].map(modified)
    );
    assert_eq!(
        t.deps.get("p").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
}

#[tokio::test]
async fn readiness_waits_until_the_deployment_reports_its_replicas_available() {
    let t = setup().await;
    let op = operator(&t, ready);
    for _ in 0..3 {
        assert!(matches!(t.run(&op).await, (RunEnd::Modified { .. }, 1)));
    }
    let (end, writes) = t.run(&op).await;
    assert_eq!(
        (end, writes),
        (
            RunEnd::Waiting {
                step: "children",
                reason: "Deployment.apps p is not ready: 0/2 replicas available, generation 1 not yet seen by its controller"
                    .into()
            },
            0
        )
    );
    // The embedded server runs no Deployment controller: play it.
    let d = t.deps.get("p").await.unwrap();
    let status = serde_json::json!({ "status": {
        "observedGeneration": d.metadata.generation, "updatedReplicas": 2, "availableReplicas": 2 } });
    t.deps
        .patch_status("p", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(t.run(&op).await, (RunEnd::Converged, 0));
}

#[tokio::test]
async fn an_object_controlled_by_another_owner_is_not_taken_over() {
    let t = setup().await;
    // The owner must exist, or the garbage collector removes the object at once.
    let someone = t
        .cms
        .create(&PostParams::default(), &cm("someone", &[]))
        .await
        .unwrap();
    let mut taken = cm("p-a", &[("message", "theirs")]);
    taken.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "someone".into(),
            uid: someone.metadata.uid.clone().unwrap(),
            controller: Some(true),
            ..Default::default()
        },
    ]);
    t.cms.create(&PostParams::default(), &taken).await.unwrap();
    let op = operator(&t, desired);
    match t.run(&op).await {
        (RunEnd::Failed { error, .. }, 0) => {
            assert!(
                error.contains("ConfigMap p-a exists and is controlled by ConfigMap someone"),
                "{error}"
            )
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        t.cms.get("p-a").await.unwrap().data.unwrap()["message"],
        "theirs"
    );
}

#[tokio::test]
async fn a_change_to_a_child_names_its_parent_on_the_owned_watch_stream() {
    let t = setup().await;
    let kinds = [ChildKind::of::<ConfigMap>(), ChildKind::of::<Deployment>()];
    let mut triggers = Box::pin(parent_triggers::<Parent>(
        t.env.client.clone(),
        &kinds,
        Some("default"),
    ));
    let op = operator(&t, desired);
    // The first child created by a run is a change the parent must hear about.
    assert!(matches!(t.run(&op).await, (RunEnd::Modified { .. }, 1)));
    let parent = tokio::time::timeout(GUARD, triggers.next())
        .await
        .expect("a trigger in time");
    assert_eq!(
        parent,
        Some(ObjectRef::<Parent>::new("p").within("default"))
    );
    assert_eq!(
        children(desired).kinds(&t.parents.get("p").await.unwrap()),
        kinds
    );
}

/// A child of a kind the server does not serve (its CRD is not installed).
fn unserved(p: &Parent) -> Children {
    let resource = kube::core::ApiResource {
        group: "nothere.example.com".into(),
        version: "v1".into(),
        api_version: "nothere.example.com/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let mut gadget = kube::core::DynamicObject::new("g", &resource).within("default");
    gadget.data = serde_json::json!({ "spec": {} });
    Children::new(p).apply_dynamic(gadget, ChildKind::dynamic(resource, true))
}

#[tokio::test]
async fn a_failed_request_names_the_kind_and_object_it_was_for() {
    let t = setup().await;
    let op = operator(&t, unserved);
    let (end, writes) = t.run(&op).await;
    assert_eq!(writes, 0);
    let RunEnd::Failed { error, .. } = end else {
        panic!("{end:?}")
    };
    assert!(
        error.contains("listing Gadget.nothere.example.com in namespace default: ")
            && error.contains("404"),
        "{error}"
    );
}

/// A tenant's usual children: a quota and a limit range.
fn tenancy(p: &Parent) -> Children {
    use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec};
    use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    Children::new(p)
        .apply(ResourceQuota {
            metadata: meta("quota"),
            spec: Some(ResourceQuotaSpec {
                hard: Some([("cpu".to_string(), Quantity(p.spec.message.clone()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .apply(LimitRange {
            metadata: meta("limits"),
            spec: Some(LimitRangeSpec {
                limits: vec![LimitRangeItem {
                    type_: "Container".into(),
                    ..Default::default()
                }],
            }),
        })
}

#[tokio::test]
async fn quotas_and_limit_ranges_are_kept_like_any_child() {
    let t = setup().await;
    t.patch_parent(serde_json::json!({ "message": "2" })).await;
    let op = operator(&t, tenancy);
    assert_eq!(
        t.converge(&op).await,
        ["created LimitRange limits", "created ResourceQuota quota"]
    );
    t.patch_parent(serde_json::json!({ "message": "4" })).await;
    let changes = t.converge(&op).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].starts_with("updated ResourceQuota quota"),
        "{changes:?}"
    );
}

mod apply_if_different {
    use super::*;
    use staircase::apply::{Compare, apply_if_different};

    fn settings(p: &Parent) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("{}-settings", p.name_any())),
                ..Default::default()
            },
            data: Some([("message".to_string(), p.spec.message.clone())].into()),
            ..Default::default()
        }
    }

    #[step]
    async fn local(p: &Parent, ctx: &Context) -> Result<Outcome> {
        apply_if_different(ctx, &settings(p), "parent-operator", Compare::Local).await
    }

    #[step]
    async fn dry_run(p: &Parent, ctx: &Context) -> Result<Outcome> {
        apply_if_different(ctx, &settings(p), "parent-operator", Compare::DryRun).await
    }

    /// Runs once; how the run ended and the writes the server saw.
    async fn once<M: staircase::Stairs<Parent, ()>>(
        t: &T,
        op: &Operator<Parent, (), M>,
    ) -> (String, u64) {
        let before = t.env.server.stats().writes();
        let r = op
            .run_once(t.parents.get("p").await.unwrap())
            .await
            .unwrap();
        let end = match r.end {
            RunEnd::Modified { description, .. } => description.into_owned(),
            RunEnd::Converged => "converged".into(),
            other => panic!("{other:?}"),
        };
        (end, t.env.server.stats().writes() - before)
    }

    async fn check<M: staircase::Stairs<Parent, ()>>(t: &T, op: &Operator<Parent, (), M>) {
        assert_eq!(
            once(t, op).await,
            ("created ConfigMap p-settings".into(), 1)
        );
        assert_eq!(once(t, op).await, ("converged".into(), 0));
        // Someone else's key is theirs: not a difference.
        let other = serde_json::json!({ "data": { "theirs": "x" } });
        t.cms
            .patch(
                "p-settings",
                &PatchParams::apply("someone").force(),
                &Patch::Apply(&serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "p-settings" },
                    "data": other["data"],
                })),
            )
            .await
            .unwrap();
        assert_eq!(once(t, op).await, ("converged".into(), 0));
        t.patch_parent(serde_json::json!({ "message": "changed" }))
            .await;
        assert_eq!(
            once(t, op).await,
            (
                "applied ConfigMap p-settings (.data.message differed)".into(),
                1
            )
        );
        assert_eq!(once(t, op).await, ("converged".into(), 0));
        let data = t.cms.get("p-settings").await.unwrap().data.unwrap();
        assert_eq!(data["message"], "changed");
        assert_eq!(data["theirs"], "x");
    }

    #[tokio::test]
    async fn a_local_comparison_applies_only_what_differs() {
        let t = setup().await;
        check(
            &t,
            &Operator::new(t.env.client.clone(), staircase!(Parent => [local])),
        )
        .await;
    }

    #[tokio::test]
    async fn a_dry_run_comparison_applies_only_what_differs() {
        let t = setup().await;
        check(
            &t,
            &Operator::new(t.env.client.clone(), staircase!(Parent => [dry_run])),
        )
        .await;
    }
}
