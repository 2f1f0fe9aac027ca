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
    let w = Walker { schema: Schema::for_kind(kind, schema) };
    if !applied.is_object() {
        return Err(PatchError::BadRequest("apply configuration must be a JSON object".into()));
    }
    if applied.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
        return Err(PatchError::BadRequest("metadata.managedFields must be nil".into()));
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
            api_version: live.get("apiVersion").and_then(Value::as_str).unwrap_or_default().into(),
            time: Some(now.into()),
            subresource: None,
            set: w.set_of(live),
        });
    }
    let last_set = entries
        .iter()
        .position(|e| e.is(manager, "Apply", &api_version))
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
            conflicts.extend(
                taken.iter().map(|p| ApplyConflict { manager: entry.manager.clone(), field: managed::display(p) }),
            );
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
        subresource: None,
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
pub fn update_managed_fields(old: Option<&Value>, new: &mut Value, manager: &str, kind: &str, now: &str) {
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
    let w = Walker { schema: Schema::for_kind(kind, schema) };
    let api_version = new.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let given = new.pointer("/metadata/managedFields").filter(|m| m.as_array().is_some_and(|a| !a.is_empty()));
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
        let mut own = match entries.iter().position(|e| e.is(manager, "Update", &api_version)) {
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
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Fields nobody owns: identity and server-maintained metadata, and `status`, which writes to the
/// main resource do not set.
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
}

impl Walker<'_> {
    fn list_type(&self, names: &[String]) -> ListType {
        self.schema.list_type(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn map_type(&self, names: &[String]) -> MapType {
        if names.is_empty() {
            return MapType::Struct;
        }
        self.schema.map_type(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The `k:` elements of a keyed list, or `None` when an item lacks a key or keys repeat; such
    /// a list (only possible in stored data, apply configurations are validated) is then handled
    /// as atomic rather than failing a write.
    fn item_ids(items: &[Value], keys: &[KeyField]) -> Option<Vec<String>> {
        let ids = items.iter().map(|i| key_item(i, keys)).collect::<Option<Vec<_>>>()?;
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

    fn collect_children(&self, m: &Map<String, Value>, names: &mut Vec<String>, path: &mut Path, out: &mut FieldSet) {
        for (k, v) in m {
            names.push(k.clone());
            if !(path.is_empty() && excluded(names)) {
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

    fn compare_at(&self, old: Option<&Value>, new: Option<&Value>, names: &mut Vec<String>, path: &mut Path, diff: &mut Diff) {
        let (o, n) = match (old, new) {
            (None, None) => return,
            (None, Some(n)) => return self.collect(n, names, path, &mut diff.added),
            (Some(o), None) => return self.collect(o, names, path, &mut diff.removed),
            (Some(o), Some(n)) => (o, n),
        };
        match (o, n) {
            (Value::Object(om), Value::Object(nm)) if self.map_type(names) != MapType::Atomic || path.is_empty() => {
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
                ListType::Map(keys) => match (Self::item_ids(oi, &keys), Self::item_ids(ni, &keys)) {
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
                                (None, Some(b)) => self.collect_item(&b, names, path, &mut diff.added),
                                (Some(a), None) => self.collect_item(&a, names, path, &mut diff.removed),
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

    fn collect_item(&self, item: &Value, names: &mut Vec<String>, path: &mut Path, out: &mut FieldSet) {
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
            if !(path.is_empty() && excluded(names)) {
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
            (Some(Value::Object(l)), Value::Object(c)) if names.is_empty() || self.map_type(names) != MapType::Atomic => {
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
                    (Some(l_ids), Some(c_ids)) => Value::Array(merge_keyed(l, &l_ids, c, &c_ids, |li, ci| match (li, ci) {
                        (Some(Value::Object(lm)), Value::Object(cm)) => Value::Object(self.merge_objects(lm, cm, names)),
                        _ => ci.clone(),
                    })),
                    _ => config.clone(),
                },
            },
            _ => config.clone(),
        }
    }

    fn merge_objects(&self, live: &Map<String, Value>, config: &Map<String, Value>, names: &mut Vec<String>) -> Map<String, Value> {
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
            let still_owned = owned.range(candidate.clone()..).next().is_some_and(|q| q.starts_with(&candidate));
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
                let Some(obj) = cur.as_object_mut() else { return };
                if last {
                    obj.remove(name);
                    return;
                }
                let Some(next) = obj.get_mut(name) else { return };
                cur = next;
            } else {
                let list_type = self.list_type(&names);
                let Some(items) = cur.as_array_mut() else { return };
                let matches = |item: &Value| match &list_type {
                    ListType::Set => set_item(item) == *element,
                    ListType::Map(keys) => key_item(item, keys).as_ref() == Some(element),
                    ListType::Atomic => false,
                };
                let Some(index) = items.iter().position(matches) else { return };
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
    fn validate_keys(&self, value: &Value, names: &mut Vec<String>, shown: &mut Vec<String>) -> Result<(), PatchError> {
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
                    let key_names = keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ");
                    let at = managed::display(shown);
                    let ids = items
                        .iter()
                        .map(|i| key_item(i, &keys))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| PatchError::BadRequest(format!("{at}: every item must be an object with key fields {key_names}")))?;
                    if Self::item_ids(items, &keys).is_none() {
                        return Err(PatchError::BadRequest(format!("{at}: duplicate entries for key fields {key_names}")));
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
