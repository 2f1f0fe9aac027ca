//! One pass of the children step: read every owned child, find the first difference in
//! (kind, name) order, fix it with one write, or check readiness when there is none.

use std::collections::BTreeMap;

use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Children;
use super::desired::{APPLIED_HASH_ANNOTATION, ChildKind, DesiredChild, OWNER_LABEL, ParentRef};
use super::diff::{first_difference, first_field_difference};
use super::strategy::{Readiness, Strategy};
use crate::cache::{Live, label_of};
use crate::replay::tape;
use crate::{Context, Error, Outcome, Result};

/// The live children of a parent as the children step saw them in a run that found nothing to
/// change: hand it to a later step (for example one that reports children in the parent's status)
/// with [`Children::sync_observed`].
#[derive(Debug, Clone, Default)]
pub struct Observed {
    children: Vec<(ChildKind, DynamicObject)>,
}

impl Observed {
    /// The live child of type `T` named `name`.
    pub fn get<T>(&self, name: &str) -> Option<T>
    where
        T: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let ar = kube::api::ApiResource::erase::<T>(&());
        self.children
            .iter()
            .find(|(k, o)| k.resource == ar && o.name_any() == name)
            .and_then(|(_, o)| {
                serde_json::to_value(o)
                    .and_then(serde_json::from_value)
                    .ok()
            })
    }

    /// Every live child, with its kind, in (kind, name) order.
    pub fn iter(&self) -> impl Iterator<Item = (&ChildKind, &DynamicObject)> {
        self.children.iter().map(|(k, o)| (k, o))
    }

    /// How many children exist.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

/// Where a child lives: (kind index in sorted kinds, name, namespace).
type Slot = (usize, String, Option<String>);

/// What one child needs.
enum Need {
    Create,
    Update(String),
    Recreate(String),
    Prune,
    WaitDeleted,
}

impl Children {
    /// Compares the desired children with the live ones and makes at most one change.
    ///
    /// Returns `modified` after the change, `wait` while a child is being deleted (for a
    /// recreate) or a checked child is not ready, and `unchanged` when all is in place.
    pub async fn sync<S>(self, ctx: &Context<S>) -> Result<Outcome> {
        Ok(self.sync_observed(ctx).await?.map(|_| ()))
    }

    /// [`Children::sync`], handing the live children to later steps when nothing changed.
    pub async fn sync_observed<S>(mut self, ctx: &Context<S>) -> Result<Outcome<Observed>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let parent = self
            .parent
            .clone()
            .map_err(|e| Error::permanent(anyhow::anyhow!(e)))?;
        for d in &mut self.desired {
            d.stamp(&parent);
        }
        let kinds = self.kinds();
        let desired = self.index_desired(&kinds)?;
        let live = list_owned(ctx, &kinds, &parent).await?;

        let mut slots: Vec<&Slot> = desired.keys().chain(live.keys()).collect();
        slots.sort();
        slots.dedup();
        let mut first_wait: Option<String> = None;
        for slot in slots {
            let kind = &kinds[slot.0];
            let what = format!("{kind} {}", slot.1);
            let need = match (desired.get(slot), live.get(slot)) {
                (Some(_), None) => Some(Need::Create),
                (Some(_), Some(l)) if l.metadata.deletion_timestamp.is_some() => {
                    Some(Need::WaitDeleted)
                }
                (Some(d), Some(l)) => match (drift(d, l), self.strategy_of(kind)) {
                    (None, _) | (Some(_), Strategy::OnDelete) => None,
                    (Some(why), Strategy::InPlace) => Some(Need::Update(why)),
                    (Some(why), Strategy::Recreate) => Some(Need::Recreate(why)),
                },
                (None, Some(l)) if l.metadata.deletion_timestamp.is_none() => Some(Need::Prune),
                (None, _) => None,
            };
            match need {
                None => {}
                Some(Need::WaitDeleted) => {
                    first_wait.get_or_insert(format!(
                        "{what} is being deleted before it is created again"
                    ));
                }
                Some(Need::Create) => {
                    let d = &desired[slot];
                    return self
                        .create(ctx, &parent, d, &what)
                        .await
                        .map(|o| o.map(|_| Observed::default()));
                }
                Some(Need::Update(why)) => {
                    let d = &desired[slot];
                    apply(ctx.client(), d, &self.field_manager).await?;
                    return Ok(Outcome::modified(format!("updated {what} ({why})")));
                }
                Some(Need::Recreate(why)) => {
                    // In place when the server takes it (a change to `replicas` by an HPA or
                    // `kubectl scale`, say, keeps the object and other managers' fields); a
                    // delete only when it refuses the change as immutable. The refused apply
                    // wrote nothing, so the delete stays the run's one modification.
                    let refusal = match apply(ctx.client(), desired[slot], &self.field_manager)
                        .await
                    {
                        Ok(()) => return Ok(Outcome::modified(format!("updated {what} ({why})"))),
                        Err(e) => match refused_as_immutable(&e) {
                            Some(refusal) => refusal,
                            None => return Err(e),
                        },
                    };
                    delete(
                        ctx.client(),
                        kind,
                        &live[slot],
                        PropagationPolicy::Foreground,
                    )
                    .await?;
                    return Ok(Outcome::modified(format!(
                        "deleted {what} to recreate it (the server refuses to change it in place: {refusal})"
                    )));
                }
                Some(Need::Prune) => {
                    delete(
                        ctx.client(),
                        kind,
                        &live[slot],
                        PropagationPolicy::Background,
                    )
                    .await?;
                    return Ok(Outcome::modified(format!(
                        "pruned {what}, no longer desired"
                    )));
                }
            }
        }
        if let Some(reason) = first_wait {
            return Ok(Outcome::wait(reason));
        }

        let mut observed: Vec<(ChildKind, DynamicObject)> = Vec::new();
        let mut live: Vec<(Slot, DynamicObject)> = live.into_iter().collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        for ((k, name, _), obj) in live {
            let kind = &kinds[k];
            for (_, check) in self.ready.iter().filter(|(rk, _)| rk == kind) {
                if let Readiness::NotReady(why) = check(&obj) {
                    let reason = format!("{kind} {name} is not ready: {why}");
                    return Ok(match self.ready_recheck {
                        Some(after) => Outcome::wait_for(reason, after),
                        None => Outcome::wait(reason),
                    });
                }
            }
            observed.push((kind.clone(), obj));
        }
        Ok(Outcome::Unchanged(Observed { children: observed }))
    }

    fn index_desired(&self, kinds: &[ChildKind]) -> Result<BTreeMap<Slot, &DesiredChild>> {
        let mut out = BTreeMap::new();
        for d in &self.desired {
            let k = kinds
                .iter()
                .position(|k| *k == d.kind)
                .expect("kinds() includes desired kinds");
            let slot = (k, d.name.clone(), d.namespace.clone());
            if out.insert(slot, d).is_some() {
                return Err(Error::permanent(anyhow::anyhow!(
                    "{} {} is desired twice; each child must appear once",
                    d.kind,
                    d.name
                )));
            }
        }
        Ok(out)
    }

    /// A desired child not among the owned ones: create it, unless an object of that name
    /// exists. Then it is adopted when nobody controls it, and an error when someone else does
    /// (overwriting another controller's object would start a tug of war).
    async fn create<S>(
        &self,
        ctx: &Context<S>,
        parent: &ParentRef,
        d: &DesiredChild,
        what: &str,
    ) -> Result<Outcome> {
        let verb = match get_child(ctx, &d.kind, d.namespace.as_deref(), &d.name).await? {
            None => "created",
            Some(existing) => {
                if existing.metadata.deletion_timestamp.is_some() {
                    return Ok(Outcome::wait(format!(
                        "{what} is being deleted before it is created again"
                    )));
                }
                if let Some(other) = existing
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true))
                    && other.uid != parent.owner.uid
                {
                    return Err(Error::permanent(anyhow::anyhow!(
                        "{what} exists and is controlled by {} {}, not by {}",
                        other.kind,
                        other.name,
                        parent.description
                    )));
                }
                "adopted"
            }
        };
        apply(ctx.client(), d, &self.field_manager).await?;
        Ok(Outcome::modified(format!("{verb} {what}")))
    }
}

/// The API server's message when `e` is its refusal to change an immutable field
/// (`422 Invalid`, "field is immutable", or, from older servers, a StatefulSet's "updates
/// to statefulset spec for fields other than ... are forbidden").
fn refused_as_immutable(e: &Error) -> Option<String> {
    match e.source_error().downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(s))
            if s.code == 422
                && (s.message.contains("immutable") || s.message.contains("forbidden")) =>
        {
            Some(s.message.clone())
        }
        _ => None,
    }
}

/// Why a live child differs from the desired one, or `None` when it does not.
fn drift(desired: &DesiredChild, live: &DynamicObject) -> Option<String> {
    let live_hash = live
        .annotations()
        .get(APPLIED_HASH_ANNOTATION)
        .map(String::as_str);
    if live_hash != desired.applied_hash() {
        return Some("the desired configuration changed".into());
    }
    // Items of a real API server's list carry no apiVersion/kind (the list does); the child's
    // type is already fixed by the kind it was listed as, so only the rest is compared. This
    // runs for every child on every run: the live object is compared field by field, its
    // metadata the only part turned into JSON.
    let wanted = desired.object.as_object()?;
    let metadata = serde_json::to_value(&live.metadata).unwrap_or(Value::Null);
    let fields = wanted
        .iter()
        .filter(|(k, _)| k.as_str() != "apiVersion" && k.as_str() != "kind");
    first_field_difference(fields, |k| match k {
        "metadata" => Some(&metadata),
        k => live.data.get(k),
    })
    .map(|path| format!("{path} differs"))
}

fn api_for(client: &kube::Client, kind: &ChildKind, namespace: Option<&str>) -> Api<DynamicObject> {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &kind.resource),
        (true, None) => Api::default_namespaced_with(client.clone(), &kind.resource),
        (false, _) => Api::all_with(client.clone(), &kind.resource),
    }
}

/// Every child of each kind that this parent owns: labelled with its uid *and* carrying its owner
/// reference. Children of a namespaced parent live in its namespace (owner references cannot
/// cross namespaces); those of a cluster-scoped parent may live anywhere. Read from the
/// operator's cache of each kind when it has one (never older than its own writes), else listed.
async fn list_owned<S>(
    ctx: &Context<S>,
    kinds: &[ChildKind],
    parent: &ParentRef,
) -> Result<BTreeMap<Slot, DynamicObject>> {
    let selector = format!("{OWNER_LABEL}={}", parent.owner.uid);
    let mut out = BTreeMap::new();
    for (k, kind) in kinds.iter().enumerate() {
        let namespace = match (&parent.namespace, kind.namespaced) {
            (Some(ns), true) => Some(ns.as_str()),
            _ => None,
        };
        let cached = match ctx.cache() {
            Some(cache) => {
                let read = cache
                    .list_owned_dynamic(&kind.resource, namespace, &parent.owner.uid)
                    .await;
                if let Err(why @ (Live::Behind | Live::NotSynced)) = read {
                    cache.live(&label_of(&kind.resource.plural, &kind.resource.group), why);
                }
                read.ok()
            }
            None => None,
        };
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(ctx.client().clone(), ns, &kind.resource),
            None => Api::all_with(ctx.client().clone(), &kind.resource),
        };
        let params = ListParams::default().labels(&selector);
        let objects = match cached {
            Some(objects) => {
                if tape::active() {
                    let items = objects.iter().filter_map(|o| serde_json::to_value(o).ok());
                    let r = &kind.resource;
                    let list_of = (r.api_version.as_str(), r.kind.as_str());
                    tape::cached_list(api.resource_url(), &params, list_of, items.collect());
                }
                objects
            }
            None => {
                let r = api.list(&params).await;
                doing(r, || format!("listing {kind} {}", where_(namespace)))?.items
            }
        };
        for obj in objects {
            if obj
                .owner_references()
                .iter()
                .any(|o| o.uid == parent.owner.uid)
            {
                let slot = (k, obj.name_any(), obj.namespace());
                out.insert(slot, obj);
            }
        }
    }
    Ok(out)
}

/// The object `name` of `kind`, from the operator's cache of the kind when it has one.
async fn get_child<S>(
    ctx: &Context<S>,
    kind: &ChildKind,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<DynamicObject>> {
    if let Some(cache) = ctx.cache() {
        match cache.get_dynamic(&kind.resource, namespace, name).await {
            Ok(found) => {
                if tape::active() {
                    let url = api_for(ctx.client(), kind, namespace)
                        .resource_url()
                        .to_string();
                    let json = found.as_ref().and_then(|o| serde_json::to_value(o).ok());
                    tape::cached_get(&url, name, &kind.resource.plural, json);
                }
                return Ok(found);
            }
            Err(Live::NoStore) => {}
            Err(why) => cache.live(&label_of(&kind.resource.plural, &kind.resource.group), why),
        }
    }
    let r = api_for(ctx.client(), kind, namespace).get_opt(name).await;
    doing(r, || format!("reading {kind} {name} {}", where_(namespace)))
}

/// A request's failure, saying what the step was doing (which kind, which object): the API
/// server's answer alone ("the server could not find the requested resource") names neither.
/// The answer stays the cause, so its code still classifies the error.
fn doing<T>(r: kube::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| Error::from(anyhow::Error::new(e).context(what())))
}

fn where_(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "(cluster-wide)".into(),
    }
}

async fn apply(client: &kube::Client, d: &DesiredChild, manager: &str) -> Result<()> {
    let api = api_for(client, &d.kind, d.namespace.as_deref());
    let params = PatchParams::apply(manager).force();
    let r = api.patch(&d.name, &params, &Patch::Apply(&d.object)).await;
    let ns = d.namespace.as_deref();
    let written = doing(r, || {
        format!("applying {} {} {}", d.kind, d.name, where_(ns))
    })?;
    // The write happened; if the server still disagrees, a later run would rewrite the child
    // forever. Say so once, permanently, naming the field.
    let written = serde_json::to_value(&written)?;
    if let Some(path) = first_difference(&d.object, &written) {
        return Err(Error::permanent(anyhow::anyhow!(
            "applied {} {} but the server keeps {path} different from the desired value \
             (normalised or reverted); set it as the server stores it",
            d.kind,
            d.name
        )));
    }
    Ok(())
}

async fn delete(
    client: &kube::Client,
    kind: &ChildKind,
    live: &DynamicObject,
    policy: PropagationPolicy,
) -> Result<()> {
    let api = api_for(client, kind, live.metadata.namespace.as_deref());
    // The uid precondition makes sure the object we judged is the one deleted, not a successor
    // someone created under the same name in between.
    let params = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: live.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let r = api.delete(&live.name_any(), &params).await;
    let ns = live.metadata.namespace.as_deref();
    doing(r, || {
        format!("deleting {kind} {} {}", live.name_any(), where_(ns))
    })?;
    Ok(())
}
