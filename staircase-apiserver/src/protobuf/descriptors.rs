//! The Kubernetes protobuf schema the server carries: the descriptor set of the built-in API
//! groups (`kubernetes.binpb`) and the JSON names of their fields (`json-fields.txt`), both
//! generated from the Kubernetes v1.37 Go modules by `scripts/protobuf-descriptors.sh`.

use std::collections::HashMap;
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

static DESCRIPTORS: &[u8] = include_bytes!("kubernetes.binpb");
static JSON_FIELDS: &str = include_str!("json-fields.txt");

/// How one protobuf field appears in JSON.
#[derive(Clone, Debug)]
pub enum JsonName {
    /// Under this key.
    Key(String),
    /// An embedded Go struct: the submessage's fields sit in the parent's JSON object.
    Inline,
}

/// One field of a message with its JSON form.
#[derive(Clone, Debug)]
pub struct FieldInfo {
    /// The protobuf field.
    pub field: FieldDescriptor,
    /// Where it goes in JSON.
    pub json: JsonName,
    /// A scalar written even when zero (a Go pointer, or no `omitempty`); other zero scalars are
    /// left out, as Go's JSON encoder leaves them out.
    pub keep_zero: bool,
}

/// A message's fields with their JSON names.
#[derive(Debug)]
pub struct MessageInfo {
    /// In field order.
    pub fields: Vec<FieldInfo>,
    /// JSON key -> index into `fields` (an inline field answers for its submessage's keys).
    pub by_key: HashMap<String, usize>,
}

/// The schema: the pool and the JSON view of each message.
pub struct Schema {
    pool: DescriptorPool,
    messages: HashMap<String, MessageInfo>,
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let pool = DescriptorPool::decode(DESCRIPTORS).expect("the committed descriptor set decodes");
    Schema::new(pool)
});

/// The schema, built on first use.
pub fn schema() -> &'static Schema {
    &SCHEMA
}

impl Schema {
    fn new(pool: DescriptorPool) -> Self {
        // "<message> <field> name <json>|-" and "<message> <field> keep" lines.
        let mut names: HashMap<(&str, &str), &str> = HashMap::new();
        let mut keep: std::collections::HashSet<(&str, &str)> = Default::default();
        for line in JSON_FIELDS.lines() {
            match line.split(' ').collect::<Vec<_>>()[..] {
                [m, f, "name", j] => {
                    names.insert((m, f), j);
                }
                [m, f, "keep"] => {
                    keep.insert((m, f));
                }
                _ => {}
            }
        }
        let mut messages = HashMap::new();
        for m in pool.all_messages() {
            let fields: Vec<FieldInfo> = m
                .fields()
                .map(|f| {
                    let key = (m.full_name(), f.name());
                    let json = match names.get(&key) {
                        Some(&"-") => JsonName::Inline,
                        Some(j) => JsonName::Key((*j).to_string()),
                        None => JsonName::Key(f.name().to_string()),
                    };
                    FieldInfo {
                        keep_zero: keep.contains(&key),
                        field: f,
                        json,
                    }
                })
                .collect();
            messages.insert(m.full_name().to_string(), (m, fields));
        }
        // Keys of inlined submessages (resolved after all messages are known; inlining nests).
        let mut out = HashMap::new();
        for (name, (_, fields)) in &messages {
            let mut by_key = HashMap::new();
            for (i, f) in fields.iter().enumerate() {
                for k in json_keys(&messages, f) {
                    by_key.insert(k, i);
                }
            }
            out.insert(
                name.clone(),
                MessageInfo {
                    fields: fields.clone(),
                    by_key,
                },
            );
        }
        Schema {
            pool,
            messages: out,
        }
    }

    /// The message of a full protobuf name.
    pub fn message(&self, full_name: &str) -> Option<MessageDescriptor> {
        self.pool.get_message_by_name(full_name)
    }

    /// The JSON view of a message.
    pub fn info(&self, m: &MessageDescriptor) -> &MessageInfo {
        &self.messages[m.full_name()]
    }

    /// The message of a built-in kind: `apps/v1`, `Deployment` ->
    /// `k8s.io.api.apps.v1.Deployment`. `None` for groups that are not built in (custom
    /// resources have no protobuf form).
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<MessageDescriptor> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let package = match group {
            "" if matches!(kind, "Status" | "DeleteOptions") => "k8s.io.apimachinery.pkg.apis.meta",
            "meta.k8s.io" => "k8s.io.apimachinery.pkg.apis.meta",
            "" => "k8s.io.api.core",
            "apps" => "k8s.io.api.apps",
            "batch" => "k8s.io.api.batch",
            "autoscaling" => "k8s.io.api.autoscaling",
            "policy" => "k8s.io.api.policy",
            "coordination.k8s.io" => "k8s.io.api.coordination",
            "events.k8s.io" => "k8s.io.api.events",
            "networking.k8s.io" => "k8s.io.api.networking",
            "admissionregistration.k8s.io" => "k8s.io.api.admissionregistration",
            "rbac.authorization.k8s.io" => "k8s.io.api.rbac",
            "apiextensions.k8s.io" => "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions",
            _ => return None,
        };
        if !version.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        self.message(&format!("{package}.{version}.{kind}"))
    }
}

fn json_keys(
    messages: &HashMap<String, (MessageDescriptor, Vec<FieldInfo>)>,
    f: &FieldInfo,
) -> Vec<String> {
    match (&f.json, f.field.kind()) {
        (JsonName::Key(k), _) => vec![k.clone()],
        (JsonName::Inline, Kind::Message(sub)) => messages[sub.full_name()]
            .1
            .iter()
            .flat_map(|g| json_keys(messages, g))
            .collect(),
        (JsonName::Inline, _) => vec![f.field.name().to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_served_groups_resolve_and_custom_groups_do_not() {
        let s = schema();
        for (av, kind) in [
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "Status"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "DeploymentList"),
            ("autoscaling/v1", "Scale"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("coordination.k8s.io/v1", "Lease"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ] {
            assert!(s.kind(av, kind).is_some(), "{av} {kind}");
        }
        assert!(s.kind("example.com/v1", "Widget").is_none());
        assert!(s.kind("apps.example.com/v1", "Deployment").is_none());
        assert!(s.kind("v1", "Widget").is_none());
    }

    #[test]
    fn inline_fields_answer_for_their_submessage_keys() {
        let s = schema();
        let volume = s.message("k8s.io.api.core.v1.Volume").unwrap();
        let info = s.info(&volume);
        let i = info.by_key["configMap"];
        assert_eq!(info.fields[i].field.name(), "volumeSource");
        let sel = s
            .message("k8s.io.api.core.v1.ConfigMapKeySelector")
            .unwrap();
        let info = s.info(&sel);
        assert_eq!(
            info.fields[info.by_key["name"]].field.name(),
            "localObjectReference"
        );
        assert!(info.by_key.contains_key("key"));
    }
}
