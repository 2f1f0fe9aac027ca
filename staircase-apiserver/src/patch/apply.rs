//! Server-side apply and field ownership (`metadata.managedFields`), following kube-apiserver's
//! structured-merge-diff: the applied configuration is merged into the live object, fields the
//! manager applied before but dropped are pruned unless someone else owns them, and changing a
//! field another manager owns is a conflict unless forced.

use serde_json::{Map, Value};

use super::fields::{KeyField, ListType, MapType, Schema};
use super::managed::{self, Entry, FieldSet, Path, field, key_item, set_item};
use super::{ApplyConflict, PatchError};

/// The manager kube-apiserver credits with every field of an object applied to for the first
/// time while carrying no `managedFields`, so that apply cannot silently take over.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Server-side apply (`application/apply-patch+yaml`) of `applied` by `manager` onto `live`
/// (`None` when the apply creates the object). `kind` is `group/version/Kind` (empty group for
/// core) and picks the merge keys of built-in kinds; custom resources get atomic lists. `now` is
/// the RFC 3339 timestamp recorded in the manager's entry.
///
/// Returns the new object with `metadata.managedFields` updated, or
/// [`PatchError::Conflict`] listing fields other managers own with a different value (unless
/// `force`, which moves their ownership to `manager`), or [`PatchError::BadRequest`] for a
/// configuration that is not an object, sets `metadata.managedFields`, or has list items without
/// (or with duplicate) merge keys.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    kind: &str,
    now: &str,
) -> Result<Value, PatchError> {
    apply_with_schema(live, applied, manager, force, kind, now, None)
}

/// [`apply`] for a custom resource whose OpenAPI v3 schema is known: lists marked
/// `x-kubernetes-list-type: map` merge by their `x-kubernetes-list-map-keys`, `set` lists merge as
/// sets, and `x-kubernetes-map-type: atomic` objects are replaced whole. `schema` is the version's
/// schema (the `openAPIV3Schema` value, or an object holding it); built-in kinds ignore it.
pub fn apply_with_schema(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    kind: &str,
    now: &str,
    schema: Option<&Value>,
) -> Result<Value, PatchError> {
    apply_on(live, applied, manager, force, kind, now, schema, false)
}

/// [`apply_with_schema`] through the `status` subresource: the manager owns the `status` fields
/// it applies (and nothing else) in an entry of its own with `subresource: status`, as
/// kube-apiserver records it; a main-resource apply owns everything but `status`.
pub fn apply_to_status(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    kind: &str,
    now: &str,
    schema: Option<&Value>,
) -> Result<Value, PatchError> {
    apply_on(live, applied, manager, force, kind, now, schema, true)
}

#[allow(clippy::too_many_arguments)]
fn apply_on(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    kind: &str,
    now: &str,
    schema: Option<&Value>,
    status: bool,
) -> Result<Value, PatchError> {
    let w = Walker {
        schema: Schema::for_kind(kind, schema),
        status,
    };
    let subresource = status.then(|| "status".to_string());
    if !applied.is_object() {
        return Err(PatchError::BadRequest(
            "apply configuration must be a JSON object".into(),
        ));
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(PatchError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    // An explicit null in an apply configuration means "not specified", so the manager drops it.
    let config = strip_nulls(applied);
    w.validate_keys(&config, &mut Vec::new(), &mut Vec::new())?;
    let api_version = config
        .get("apiVersion")
        .or_else(|| live.and_then(|l| l.get("apiVersion")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();

    let mut entries = live.map(managed::read_entries).unwrap_or_default();
    if let Some(live) = live.filter(|_| entries.is_empty()) {
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: "Update".into(),
            api_version: live
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            time: Some(now.into()),
            subresource: None,
            set: w.set_of(live),
        });
    }
    let last_set = entries
        .iter()
        .position(|e| e.is(manager, "Apply", &api_version) && e.subresource == subresource)
        .map(|i| entries.remove(i).set);
    let new_set = w.set_of(&config);

    let mut merged = w.merge(live, &config);
    if let Some(last_set) = &last_set {
        let mut owned = new_set.clone();
        owned.extend(entries.iter().flat_map(|e| e.set.iter().cloned()));
        w.prune(&mut merged, last_set, &owned);
    }

    let diff = w.compare(live, Some(&merged));
    let changed: FieldSet = diff.added.union(&diff.modified).cloned().collect();
    let mut conflicts = Vec::new();
    for entry in &mut entries {
        let taken: Vec<Path> = entry.set.intersection(&changed).cloned().collect();
        if !force {
            conflicts.extend(taken.iter().map(|p| ApplyConflict {
                manager: entry.manager.clone(),
                field: managed::display(p),
            }));
        }
        for path in taken.iter().chain(&diff.removed) {
            entry.set.remove(path);
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        return Err(PatchError::Conflict(conflicts));
    }
    entries.push(Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version,
        time: Some(now.into()),
        subresource,
        set: new_set,
    });
    managed::write_entries(&mut merged, entries);
    Ok(merged)
}

/// Records field ownership for a non-apply write (create, update, any patch) by `manager`: fields
/// this write added or changed between `old` (`None` on create) and `new` become owned by the
/// manager's `Update` entry and are taken from everyone else; removed fields leave every set.
/// Writes the result to `new`'s `metadata.managedFields`.
///
/// As in kube-apiserver: if `new` carries `managedFields` different from `old`'s, those are the
/// starting point (so clients can rewrite them, and `[{}]` clears them); and an existing object
/// that has no `managedFields` at all stays untracked until it is applied to.
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    kind: &str,
    now: &str,
) {
    update_managed_fields_with_schema(old, new, manager, kind, now, None);
}

/// [`update_managed_fields`] for a custom resource whose OpenAPI v3 schema is known (see
/// [`apply_with_schema`]).
pub fn update_managed_fields_with_schema(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    kind: &str,
    now: &str,
    schema: Option<&Value>,
) {
    let w = Walker {
        schema: Schema::for_kind(kind, schema),
        status: false,
    };
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let given = new
        .pointer("/metadata/managedFields")
        .filter(|m| m.as_array().is_some_and(|a| !a.is_empty()));
    let old_fields = old.and_then(|o| o.pointer("/metadata/managedFields"));
    let mut entries = match given {
        Some(g) if Some(g) != old_fields => {
            let entries = managed::read_entries(new);
            if entries.iter().all(|e| e.set.is_empty()) {
                managed::write_entries(new, Vec::new());
                return;
            }
            entries
        }
        _ => old.map(managed::read_entries).unwrap_or_default(),
    };
    if old.is_some() && entries.is_empty() {
        managed::write_entries(new, Vec::new());
        return;
    }

    let diff = w.compare(old, Some(new));
    let changed: FieldSet = diff.added.union(&diff.modified).cloned().collect();
    for entry in &mut entries {
        for path in changed.iter().chain(&diff.removed) {
            entry.set.remove(path);
        }
    }
    if !changed.is_empty() {
        let mut own = match entries
            .iter()
            .position(|e| e.is(manager, "Update", &api_version))
        {
            Some(i) => entries.remove(i),
            None => Entry {
                manager: manager.into(),
                operation: "Update".into(),
                api_version,
                time: None,
                subresource: None,
                set: FieldSet::new(),
            },
        };
        own.set.extend(changed);
        own.time = Some(now.into());
        entries.push(own);
    }
    managed::write_entries(new, entries);
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Fields nobody owns: identity and server-maintained metadata, and `status`, which writes to the
/// main resource do not set. `names` only counts as such a field when no list item is on the
/// way, which callers check by comparing it with the FieldsV1 path length.
fn excluded(names: &[String]) -> bool {
    match names {
        [n] => matches!(n.as_str(), "apiVersion" | "kind" | "status"),
        [m, n] if m == "metadata" => matches!(
            n.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "selfLink"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
        ),
        _ => false,
    }
}

#[derive(Default, Debug)]
struct Diff {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

/// The structural walks of apply, all driven by the kind's field strategies. `names` tracks the
/// field names from the root (list items add none), `path` the FieldsV1 path.
struct Walker<'s> {
    schema: Schema<'s>,
    /// Walking for the `status` subresource: only `status` is owned.
    status: bool,
}

impl Walker<'_> {
    /// Fields nobody owns here: [`excluded`], or for the status subresource everything at the
    /// root but `status`.
    fn excluded(&self, names: &[String]) -> bool {
        match names {
            [n] if self.status => n != "status",
            _ if self.status => false,
            _ => excluded(names),
        }
    }

    fn list_type(&self, names: &[String]) -> ListType {
        self.schema
            .list_type(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn map_type(&self, names: &[String]) -> MapType {
        if names.is_empty() {
            return MapType::Struct;
        }
        self.schema
            .map_type(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The `k:` elements of a keyed list, or `None` when an item lacks a key or keys repeat; such
    /// a list (only possible in stored data, apply configurations are validated) is then handled
    /// as atomic rather than failing a write.
    fn item_ids(items: &[Value], keys: &[KeyField]) -> Option<Vec<String>> {
        let ids = items
            .iter()
            .map(|i| key_item(i, keys))
            .collect::<Option<Vec<_>>>()?;
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        (unique.len() == ids.len()).then_some(ids)
    }

    fn set_of(&self, object: &Value) -> FieldSet {
        let mut out = FieldSet::new();
        self.collect(object, &mut Vec::new(), &mut Vec::new(), &mut out);
        out
    }

    /// Adds the paths `value` (found at `path`) consists of: leaves, list items, granular maps.
    fn collect(&self, value: &Value, names: &mut Vec<String>, path: &mut Path, out: &mut FieldSet) {
        match value {
            Value::Object(m) if path.is_empty() => self.collect_children(m, names, path, out),
            Value::Object(m) => match self.map_type(names) {
                MapType::Atomic => {
                    out.insert(path.clone());
                }
                _ if m.is_empty() => {
                    out.insert(path.clone());
                }
                map_type => {
                    if map_type == MapType::Granular {
                        out.insert(path.clone());
                    }
                    self.collect_children(m, names, path, out);
                }
            },
            Value::Array(items) if !items.is_empty() => match self.list_type(names) {
                ListType::Atomic => {
                    out.insert(path.clone());
                }
                ListType::Set => {
                    for item in items {
                        path.push(set_item(item));
                        out.insert(path.clone());
                        path.pop();
                    }
                }
                ListType::Map(keys) => match Self::item_ids(items, &keys) {
                    None => {
                        out.insert(path.clone());
                    }
                    Some(ids) => {
                        for (item, id) in items.iter().zip(ids) {
                            path.push(id);
                            out.insert(path.clone());
                            if let Value::Object(m) = item {
                                self.collect_children(m, names, path, out);
                            }
                            path.pop();
                        }
                    }
                },
            },
            _ => {
                out.insert(path.clone());
            }
        }
    }

    fn collect_children(
        &self,
        m: &Map<String, Value>,
        names: &mut Vec<String>,
        path: &mut Path,
        out: &mut FieldSet,
    ) {
        for (k, v) in m {
            names.push(k.clone());
            if !(path.len() + 1 == names.len() && self.excluded(names)) {
                path.push(field(k));
                self.collect(v, names, path, out);
                path.pop();
            }
            names.pop();
        }
    }

    fn compare(&self, old: Option<&Value>, new: Option<&Value>) -> Diff {
        let mut diff = Diff::default();
        self.compare_at(old, new, &mut Vec::new(), &mut Vec::new(), &mut diff);
        diff
    }

    fn compare_at(
        &self,
        old: Option<&Value>,
        new: Option<&Value>,
        names: &mut Vec<String>,
        path: &mut Path,
        diff: &mut Diff,
    ) {
        let (o, n) = match (old, new) {
            (None, None) => return,
            (None, Some(n)) => return self.collect(n, names, path, &mut diff.added),
            (Some(o), None) => return self.collect(o, names, path, &mut diff.removed),
            (Some(o), Some(n)) => (o, n),
        };
        match (o, n) {
            (Value::Object(om), Value::Object(nm))
                if self.map_type(names) != MapType::Atomic || path.is_empty() =>
            {
                self.compare_children(om, nm, names, path, diff);
            }
            (Value::Array(oi), Value::Array(ni)) => match self.list_type(names) {
                ListType::Set => {
                    for item in ni.iter().filter(|i| !oi.contains(i)) {
                        path.push(set_item(item));
                        diff.added.insert(path.clone());
                        path.pop();
                    }
                    for item in oi.iter().filter(|i| !ni.contains(i)) {
                        path.push(set_item(item));
                        diff.removed.insert(path.clone());
                        path.pop();
                    }
                }
                ListType::Map(keys) => match (Self::item_ids(oi, &keys), Self::item_ids(ni, &keys))
                {
                    (Some(o_ids), Some(n_ids)) => {
                        let find = |ids: &[String], items: &'_ [Value], id: &String| {
                            ids.iter().position(|i| i == id).map(|p| items[p].clone())
                        };
                        let mut all: Vec<&String> = o_ids.iter().collect();
                        all.extend(n_ids.iter().filter(|i| !o_ids.contains(i)));
                        for id in all {
                            path.push(id.clone());
                            match (find(&o_ids, oi, id), find(&n_ids, ni, id)) {
                                (Some(Value::Object(a)), Some(Value::Object(b))) => {
                                    self.compare_children(&a, &b, names, path, diff)
                                }
                                (None, Some(b)) => {
                                    self.collect_item(&b, names, path, &mut diff.added)
                                }
                                (Some(a), None) => {
                                    self.collect_item(&a, names, path, &mut diff.removed)
                                }
                                _ => {}
                            }
                            path.pop();
                        }
                    }
                    _ if oi != ni => {
                        diff.modified.insert(path.clone());
                    }
                    _ => {}
                },
                ListType::Atomic if oi != ni => {
                    diff.modified.insert(path.clone());
                }
                ListType::Atomic => {}
            },
            _ if o != n => {
                // A type change (or an atomic value change) replaces the whole subtree.
                diff.modified.insert(path.clone());
                let (mut gone, mut came) = (FieldSet::new(), FieldSet::new());
                self.collect(o, names, path, &mut gone);
                self.collect(n, names, path, &mut came);
                gone.remove(path);
                came.remove(path);
                diff.removed.extend(gone);
                diff.added.extend(came);
            }
            _ => {}
        }
    }

    fn collect_item(
        &self,
        item: &Value,
        names: &mut Vec<String>,
        path: &mut Path,
        out: &mut FieldSet,
    ) {
        out.insert(path.clone());
        if let Value::Object(m) = item {
            self.collect_children(m, names, path, out);
        }
    }

    fn compare_children(
        &self,
        om: &Map<String, Value>,
        nm: &Map<String, Value>,
        names: &mut Vec<String>,
        path: &mut Path,
        diff: &mut Diff,
    ) {
        let keys: std::collections::BTreeSet<&String> = om.keys().chain(nm.keys()).collect();
        for k in keys {
            names.push(k.clone());
            if !(path.len() + 1 == names.len() && self.excluded(names)) {
                path.push(field(k));
                self.compare_at(om.get(k), nm.get(k), names, path, diff);
                path.pop();
            }
            names.pop();
        }
    }

    /// Merges the configuration into the live object: objects recursively, keyed lists item by
    /// item, sets as unions, anything else replaced by the configuration's value.
    fn merge(&self, live: Option<&Value>, config: &Value) -> Value {
        self.merge_at(live, config, &mut Vec::new())
    }

    fn merge_at(&self, live: Option<&Value>, config: &Value, names: &mut Vec<String>) -> Value {
        match (live, config) {
            (Some(Value::Object(l)), Value::Object(c))
                if names.is_empty() || self.map_type(names) != MapType::Atomic =>
            {
                Value::Object(self.merge_objects(l, c, names))
            }
            (Some(Value::Array(l)), Value::Array(c)) => match self.list_type(names) {
                ListType::Atomic => config.clone(),
                ListType::Set => {
                    let mut out = l.clone();
                    out.extend(c.iter().filter(|i| !l.contains(i)).cloned());
                    Value::Array(out)
                }
                ListType::Map(keys) => match (Self::item_ids(l, &keys), Self::item_ids(c, &keys)) {
                    (Some(l_ids), Some(c_ids)) => {
                        Value::Array(merge_keyed(l, &l_ids, c, &c_ids, |li, ci| match (li, ci) {
                            (Some(Value::Object(lm)), Value::Object(cm)) => {
                                Value::Object(self.merge_objects(lm, cm, names))
                            }
                            _ => ci.clone(),
                        }))
                    }
                    _ => config.clone(),
                },
            },
            _ => config.clone(),
        }
    }

    fn merge_objects(
        &self,
        live: &Map<String, Value>,
        config: &Map<String, Value>,
        names: &mut Vec<String>,
    ) -> Map<String, Value> {
        let mut out = live.clone();
        for (k, c) in config {
            names.push(k.clone());
            let merged = self.merge_at(live.get(k), c, names);
            names.pop();
            out.insert(k.clone(), merged);
        }
        out
    }

    /// Removes the fields of `last` (the manager's previous apply) that nobody owns any more.
    /// Struct fields on the way count too, as kube's `EnsureNamedFieldsAreMembers` does, so that
    /// dropping the last owned field of `spec.strategy` drops `strategy`; a field is kept while
    /// anyone owns it or something below it. The top-level `metadata` is never removed.
    fn prune(&self, object: &mut Value, last: &FieldSet, owned: &FieldSet) {
        let mut candidates = FieldSet::new();
        for path in last {
            for len in 1..path.len() {
                if path[len - 1].starts_with("f:") && !(len == 1 && path[0] == "f:metadata") {
                    candidates.insert(path[..len].to_vec());
                }
            }
            candidates.insert(path.clone());
        }
        let mut removed: Vec<Path> = Vec::new();
        // BTreeSet order visits a path before any path it prefixes.
        for candidate in candidates {
            if removed.iter().any(|r| candidate.starts_with(r)) {
                continue;
            }
            let still_owned = owned
                .range(candidate.clone()..)
                .next()
                .is_some_and(|q| q.starts_with(&candidate));
            if !still_owned {
                self.remove_path(object, &candidate);
                removed.push(candidate);
            }
        }
    }

    fn remove_path(&self, root: &mut Value, path: &Path) {
        let mut names: Vec<String> = Vec::new();
        let mut cur = root;
        for (i, element) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            if let Some(name) = element.strip_prefix("f:") {
                names.push(name.to_string());
                let Some(obj) = cur.as_object_mut() else {
                    return;
                };
                if last {
                    obj.remove(name);
                    return;
                }
                let Some(next) = obj.get_mut(name) else {
                    return;
                };
                cur = next;
            } else {
                let list_type = self.list_type(&names);
                let Some(items) = cur.as_array_mut() else {
                    return;
                };
                let matches = |item: &Value| match &list_type {
                    ListType::Set => set_item(item) == *element,
                    ListType::Map(keys) => key_item(item, keys).as_ref() == Some(element),
                    ListType::Atomic => false,
                };
                let Some(index) = items.iter().position(matches) else {
                    return;
                };
                if last {
                    items.remove(index);
                    return;
                }
                cur = &mut items[index];
            }
        }
    }

    /// Rejects keyed-list items of an apply configuration that lack a key or repeat one, as the
    /// API server does before merging.
    fn validate_keys(
        &self,
        value: &Value,
        names: &mut Vec<String>,
        shown: &mut Vec<String>,
    ) -> Result<(), PatchError> {
        match value {
            Value::Object(m) => {
                for (k, v) in m {
                    names.push(k.clone());
                    shown.push(field(k));
                    let result = self.validate_keys(v, names, shown);
                    names.pop();
                    shown.pop();
                    result?;
                }
            }
            Value::Array(items) => {
                if let ListType::Map(keys) = self.list_type(names) {
                    let key_names = keys
                        .iter()
                        .map(|k| k.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ");
                    let at = managed::display(shown);
                    let ids = items
                        .iter()
                        .map(|i| key_item(i, &keys))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            PatchError::BadRequest(format!(
                                "{at}: every item must be an object with key fields {key_names}"
                            ))
                        })?;
                    if Self::item_ids(items, &keys).is_none() {
                        return Err(PatchError::BadRequest(format!(
                            "{at}: duplicate entries for key fields {key_names}"
                        )));
                    }
                    for (item, id) in items.iter().zip(ids) {
                        shown.push(id);
                        let result = self.validate_keys(item, names, shown);
                        shown.pop();
                        result?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Merges keyed lists keeping live order for live-only items and configuration order for the
/// rest, interleaved the way structured-merge-diff does it.
fn merge_keyed(
    live: &[Value],
    live_ids: &[String],
    config: &[Value],
    config_ids: &[String],
    mut merge: impl FnMut(Option<&Value>, &Value) -> Value,
) -> Vec<Value> {
    let live_of = |id: &String| live_ids.iter().position(|l| l == id).map(|p| &live[p]);
    let mut out = Vec::with_capacity(live.len() + config.len());
    let mut emitted: Vec<&String> = Vec::new();
    let (mut l, mut r) = (0, 0);
    while l < live.len() || r < config.len() {
        if l < live.len() {
            let id = &live_ids[l];
            if !config_ids.contains(id) {
                out.push(live[l].clone());
                l += 1;
                continue;
            }
            if emitted.contains(&id) {
                l += 1;
                continue;
            }
            if r >= config.len() {
                l += 1;
                continue;
            }
        }
        let id = &config_ids[r];
        out.push(merge(live_of(id), &config[r]));
        emitted.push(id);
        r += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOY: &str = "apps/v1/Deployment";
    const T1: &str = "2026-11-22T10:00:00Z";
    const T2: &str = "2026-11-22T10:01:00Z";
    const T3: &str = "2026-11-22T10:02:00Z";

    fn deployment(replicas: i64, image: &str, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": image}]}}}})
    }

    fn entry<'v>(object: &'v Value, manager: &str, operation: &str) -> Option<&'v Value> {
        object["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
    }

    fn conflicts(result: Result<Value, PatchError>) -> Vec<(String, String)> {
        match result {
            Err(PatchError::Conflict(c)) => c.into_iter().map(|c| (c.manager, c.field)).collect(),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    /// A deployment created by an apply of `mgr`, as stored (server fields added).
    fn created() -> Value {
        let mut live = apply(
            None,
            &deployment(2, "nginx:1", json!({"app": "web", "tier": "fe"})),
            "mgr",
            false,
            DEPLOY,
            T1,
        )
        .unwrap();
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["resourceVersion"] = json!("1");
        live
    }

    #[test]
    fn create_records_fields_v1_like_kube() {
        let live = created();
        let e = entry(&live, "mgr", "Apply").expect("apply entry");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["time"], T1);
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(
            e["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:tier": {}}},
                "f:spec": {"f:replicas": {}, "f:selector": {},
                    "f:template": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {"f:containers": {r#"k:{"name":"nginx"}"#: {".": {}, "f:image": {}, "f:name": {}}}}}}
            })
        );
        assert_eq!(
            live["metadata"]["managedFields"].as_array().unwrap().len(),
            1
        );
        assert_eq!(live["spec"]["replicas"], 2);
    }

    #[test]
    fn reapply_updates_values_without_conflict() {
        let live = created();
        let next = apply(
            Some(&live),
            &deployment(3, "nginx:2", json!({"app": "web", "tier": "fe"})),
            "mgr",
            false,
            DEPLOY,
            T2,
        )
        .unwrap();
        assert_eq!(next["spec"]["replicas"], 3);
        assert_eq!(
            next["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        assert_eq!(next["metadata"]["uid"], "u-1");
        assert_eq!(entry(&next, "mgr", "Apply").unwrap()["time"], T2);
    }

    #[test]
    fn dropped_fields_are_pruned() {
        let live = created();
        let mut config = deployment(2, "nginx:1", json!({"app": "web"}));
        config["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "envoy", "image": "envoy:1"}]);
        config["spec"].as_object_mut().unwrap().remove("replicas");
        let next = apply(Some(&live), &config, "mgr", false, DEPLOY, T2).unwrap();
        assert_eq!(next["metadata"]["labels"], json!({"app": "web"}));
        assert!(next["spec"].get("replicas").is_none(), "{next}");
        assert_eq!(
            next["spec"]["template"]["spec"]["containers"],
            json!([{"name": "envoy", "image": "envoy:1"}])
        );
        assert_eq!(next["metadata"]["name"], "web");
        let fields = &entry(&next, "mgr", "Apply").unwrap()["fieldsV1"];
        assert!(fields["f:spec"].get("f:replicas").is_none());
    }

    #[test]
    fn dropped_fields_owned_by_others_are_kept() {
        let live = created();
        let mut edited = live.clone();
        edited["metadata"]["labels"]["tier"] = json!("backend");
        update_managed_fields(Some(&live), &mut edited, "kubectl-edit", DEPLOY, T2);
        let next = apply(
            Some(&edited),
            &deployment(2, "nginx:1", json!({"app": "web"})),
            "mgr",
            false,
            DEPLOY,
            T3,
        )
        .unwrap();
        assert_eq!(
            next["metadata"]["labels"],
            json!({"app": "web", "tier": "backend"})
        );
    }

    #[test]
    fn changing_a_field_another_manager_owns_conflicts_then_force_takes_it() {
        let live = created();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        update_managed_fields(Some(&live), &mut scaled, "hpa", DEPLOY, T2);
        let hpa = entry(&scaled, "hpa", "Update").expect("hpa entry");
        assert_eq!(hpa["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(hpa["time"], T2);
        // The updater took the field from the applier.
        assert!(
            entry(&scaled, "mgr", "Apply").unwrap()["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_none()
        );

        let other = deployment(7, "nginx:1", json!({"app": "web"}));
        let got = conflicts(apply(Some(&scaled), &other, "ci", false, DEPLOY, T3));
        assert_eq!(got, vec![("hpa".to_string(), ".spec.replicas".to_string())]);
        assert_eq!(scaled["spec"]["replicas"], 5);

        let forced = apply(Some(&scaled), &other, "ci", true, DEPLOY, T3).unwrap();
        assert_eq!(forced["spec"]["replicas"], 7);
        assert!(
            entry(&forced, "hpa", "Update").is_none(),
            "emptied entries are dropped"
        );
        assert_eq!(
            entry(&forced, "ci", "Apply").unwrap()["fieldsV1"]["f:spec"]["f:replicas"],
            json!({})
        );
    }

    #[test]
    fn same_value_is_shared_not_a_conflict() {
        let live = created();
        let next = apply(
            Some(&live),
            &deployment(2, "nginx:1", json!({"app": "web"})),
            "other",
            false,
            DEPLOY,
            T2,
        )
        .unwrap();
        assert!(
            entry(&next, "mgr", "Apply").unwrap()["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_some()
        );
        assert!(
            entry(&next, "other", "Apply").unwrap()["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_some()
        );
    }

    #[test]
    fn conflict_paths_name_list_items_by_key() {
        let live = created();
        let got = conflicts(apply(
            Some(&live),
            &deployment(2, "nginx:9", json!({"app": "x"})),
            "ci",
            false,
            DEPLOY,
            T2,
        ));
        assert_eq!(
            got,
            vec![
                ("mgr".to_string(), ".metadata.labels.app".to_string()),
                (
                    "mgr".to_string(),
                    r#".spec.template.spec.containers[name="nginx"].image"#.to_string()
                ),
            ]
        );
        let e = PatchError::Conflict(vec![ApplyConflict {
            manager: "mgr".into(),
            field: ".spec.replicas".into(),
        }]);
        assert_eq!(
            e.to_string(),
            r#"Apply failed with 1 conflict: conflict with "mgr": .spec.replicas"#
        );
    }

    #[test]
    fn objects_without_managed_fields_belong_to_before_first_apply() {
        let live = deployment(1, "nginx:1", json!({"app": "web"}));
        let got = conflicts(apply(
            Some(&live),
            &deployment(3, "nginx:1", json!({"app": "web"})),
            "mgr",
            false,
            DEPLOY,
            T1,
        ));
        assert_eq!(
            got,
            vec![(BEFORE_FIRST_APPLY.to_string(), ".spec.replicas".to_string())]
        );
        let ok = apply(
            Some(&live),
            &deployment(1, "nginx:1", json!({"app": "web"})),
            "mgr",
            false,
            DEPLOY,
            T1,
        )
        .unwrap();
        assert!(entry(&ok, BEFORE_FIRST_APPLY, "Update").is_some());
    }

    #[test]
    fn ports_key_on_number_and_defaulted_protocol() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
        let live = apply(None, &svc, "mgr", false, "/v1/Service", T1).unwrap();
        let fields = &entry(&live, "mgr", "Apply").unwrap()["fieldsV1"];
        assert_eq!(
            fields["f:spec"]["f:ports"],
            json!({r#"k:{"port":80,"protocol":"TCP"}"#: {".": {}, "f:port": {}, "f:targetPort": {}}})
        );
        assert_eq!(
            fields["f:spec"]["f:selector"],
            json!({".": {}, "f:app": {}})
        );
        let mut other = svc.clone();
        other["spec"]["ports"] = json!([{"port": 80, "targetPort": 9090}]);
        let got = conflicts(apply(Some(&live), &other, "ci", false, "/v1/Service", T2));
        assert_eq!(
            got,
            vec![(
                "mgr".to_string(),
                r#".spec.ports[port=80,protocol="TCP"].targetPort"#.to_string()
            )]
        );
    }

    #[test]
    fn keyed_list_items_from_other_appliers_are_merged() {
        let live = created();
        let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}});
        let next = apply(Some(&live), &sidecar, "injector", false, DEPLOY, T2).unwrap();
        let names: Vec<&Value> = next["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, [&json!("nginx"), &json!("proxy")]);
        // Dropping its container again removes only that container.
        let mut empty = sidecar.clone();
        empty["spec"]["template"]["spec"]["containers"] = json!([]);
        let after = apply(Some(&next), &empty, "injector", false, DEPLOY, T3).unwrap();
        assert_eq!(
            after["spec"]["template"]["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx:1"}])
        );
    }

    #[test]
    fn finalizers_are_a_set() {
        let cm = |fins: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": fins}});
        let live = apply(None, &cm(json!(["a"])), "one", false, "/v1/ConfigMap", T1).unwrap();
        let live = apply(
            Some(&live),
            &cm(json!(["b"])),
            "two",
            false,
            "/v1/ConfigMap",
            T2,
        )
        .unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            entry(&live, "two", "Apply").unwrap()["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {r#"v:"b""#: {}}}})
        );
        let live = apply(
            Some(&live),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            "one",
            false,
            "/v1/ConfigMap",
            T3,
        )
        .unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["b"]));
        assert!(entry(&live, "one", "Apply").is_none());
    }

    #[test]
    fn bad_configurations() {
        let mut with_mf = deployment(1, "x", json!({}));
        with_mf["metadata"]["managedFields"] = json!([{"manager": "x"}]);
        let mut no_key = deployment(1, "x", json!({}));
        no_key["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
        let mut dup = deployment(1, "x", json!({}));
        dup["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
        for config in [json!([1]), with_mf, no_key, dup] {
            assert!(
                matches!(
                    apply(None, &config, "m", false, DEPLOY, T1),
                    Err(PatchError::BadRequest(_))
                ),
                "{config}"
            );
        }
    }

    #[test]
    fn ignored_fields_and_status_are_not_owned() {
        let mut config = deployment(1, "x", json!({"a": "b"}));
        config["metadata"]["resourceVersion"] = json!("5");
        config["status"] = json!({"replicas": 1});
        let live = apply(None, &config, "m", false, DEPLOY, T1).unwrap();
        let fields = &entry(&live, "m", "Apply").unwrap()["fieldsV1"];
        assert!(fields.get("f:status").is_none() && fields.get("f:apiVersion").is_none());
        assert_eq!(
            fields["f:metadata"],
            json!({"f:labels": {".": {}, "f:a": {}}})
        );
    }

    #[test]
    fn null_in_configuration_means_unspecified() {
        let live = created();
        let mut config = deployment(2, "nginx:1", json!({"app": "web", "tier": null}));
        config["spec"]["replicas"] = Value::Null;
        let next = apply(Some(&live), &config, "mgr", false, DEPLOY, T2).unwrap();
        assert_eq!(next["metadata"]["labels"], json!({"app": "web"}));
        assert!(next["spec"].get("replicas").is_none());
    }

    #[test]
    fn custom_resources_lists_are_atomic_without_schema_and_keyed_with_one() {
        let cr = |items: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"items": items}});
        let kind = "example.com/v1/Widget";
        let live = apply(
            None,
            &cr(json!([{"id": "a", "v": 1}])),
            "one",
            false,
            kind,
            T1,
        )
        .unwrap();
        let got = conflicts(apply(
            Some(&live),
            &cr(json!([{"id": "b", "v": 2}])),
            "two",
            false,
            kind,
            T2,
        ));
        assert_eq!(got, vec![("one".to_string(), ".spec.items".to_string())]);

        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"items": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
            "items": {"type": "object", "properties": {"id": {"type": "string"}, "v": {"type": "integer"}}}}}}}});
        let live = apply_with_schema(
            None,
            &cr(json!([{"id": "a", "v": 1}])),
            "one",
            false,
            kind,
            T1,
            Some(&schema),
        )
        .unwrap();
        let next = apply_with_schema(
            Some(&live),
            &cr(json!([{"id": "b", "v": 2}])),
            "two",
            false,
            kind,
            T2,
            Some(&schema),
        )
        .unwrap();
        assert_eq!(
            next["spec"]["items"],
            json!([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
        );
        assert_eq!(
            entry(&next, "two", "Apply").unwrap()["fieldsV1"]["f:spec"]["f:items"],
            json!({r#"k:{"id":"b"}"#: {".": {}, "f:id": {}, "f:v": {}}})
        );
    }

    #[test]
    fn update_on_create_owns_everything_set() {
        let mut obj = deployment(1, "nginx:1", json!({"app": "web"}));
        obj["metadata"]["uid"] = json!("u");
        update_managed_fields(None, &mut obj, "kubectl-create", DEPLOY, T1);
        let e = entry(&obj, "kubectl-create", "Update").expect("entry");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(
            e["fieldsV1"]["f:metadata"],
            json!({"f:labels": {".": {}, "f:app": {}}})
        );
        assert_eq!(e["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
        // A later apply changing what the creator set conflicts with it.
        let got = conflicts(apply(
            Some(&obj),
            &deployment(4, "nginx:1", json!({"app": "web"})),
            "mgr",
            false,
            DEPLOY,
            T2,
        ));
        assert_eq!(
            got,
            vec![("kubectl-create".to_string(), ".spec.replicas".to_string())]
        );
    }

    #[test]
    fn update_that_changes_nothing_records_nothing() {
        let mut obj = deployment(1, "nginx:1", json!({"app": "web"}));
        update_managed_fields(None, &mut obj, "creator", DEPLOY, T1);
        let before = obj.clone();
        update_managed_fields(Some(&before), &mut obj, "someone", DEPLOY, T2);
        assert_eq!(obj, before);
    }

    #[test]
    fn update_removing_fields_drops_them_from_every_set() {
        let live = created();
        let mut edited = live.clone();
        edited["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("tier");
        update_managed_fields(Some(&live), &mut edited, "kubectl-edit", DEPLOY, T2);
        assert!(
            entry(&edited, "kubectl-edit", "Update").is_none(),
            "removal alone owns nothing"
        );
        assert!(
            entry(&edited, "mgr", "Apply").unwrap()["fieldsV1"]["f:metadata"]["f:labels"]
                .get("f:tier")
                .is_none()
        );
    }

    #[test]
    fn untracked_objects_stay_untracked_on_update_and_clients_can_reset() {
        let old = deployment(1, "nginx:1", json!({}));
        let mut new = deployment(2, "nginx:1", json!({}));
        update_managed_fields(Some(&old), &mut new, "m", DEPLOY, T1);
        assert!(new["metadata"].get("managedFields").is_none());

        let live = created();
        let mut reset = live.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        update_managed_fields(Some(&live), &mut reset, "m", DEPLOY, T2);
        assert!(reset["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn entries_are_sorted_apply_first_then_by_time() {
        let live = created();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(9);
        update_managed_fields(Some(&live), &mut scaled, "hpa", DEPLOY, T2);
        let next = apply(Some(&scaled), &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": {"a": "b"}}}), "zz", false, DEPLOY, T3).unwrap();
        let order: Vec<(&Value, &Value)> = next["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (&e["manager"], &e["operation"]))
            .collect();
        assert_eq!(
            order,
            [
                (&json!("mgr"), &json!("Apply")),
                (&json!("zz"), &json!("Apply")),
                (&json!("hpa"), &json!("Update"))
            ]
        );
    }
}
