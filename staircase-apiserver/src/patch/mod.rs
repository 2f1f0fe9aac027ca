//! Patch semantics of the API server: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! strategic merge patch for built-in kinds, and server-side apply with field ownership.
//!
//! Everything here is pure: functions over `serde_json::Value`, no I/O, so each rule is unit-tested
//! on its own and the server only decides *which* patch applies.

mod apply;
mod fields;
mod json_patch;
mod managed;
mod merge;
mod strategic;

pub use apply::{
    apply, apply_to_status, apply_with_schema, update_managed_fields,
    update_managed_fields_with_schema,
};
pub use json_patch::json_patch;
pub use merge::merge_patch;
pub use strategic::strategic_merge_patch;

/// Why a patch could not be applied; the server maps each kind to a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchError {
    /// The patch document itself is malformed (400 BadRequest).
    BadRequest(String),
    /// A JSON patch `test` operation failed, or a path does not exist (422 Invalid).
    Invalid(String),
    /// This patch type is not supported for this kind, e.g. strategic merge on a custom resource (415).
    UnsupportedMediaType(String),
    /// Server-side apply conflicts with fields owned by other managers (409 Conflict).
    Conflict(Vec<ApplyConflict>),
}

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatchError::BadRequest(m)
            | PatchError::Invalid(m)
            | PatchError::UnsupportedMediaType(m) => f.write_str(m),
            PatchError::Conflict(conflicts) => {
                // Same wording as kube-apiserver so clients matching on it keep working.
                if conflicts.len() == 1 {
                    let c = &conflicts[0];
                    write!(
                        f,
                        "Apply failed with 1 conflict: conflict with \"{}\": {}",
                        c.manager, c.field
                    )
                } else {
                    write!(f, "Apply failed with {} conflicts:", conflicts.len())?;
                    for c in conflicts {
                        write!(f, " conflict with \"{}\": {};", c.manager, c.field)?;
                    }
                    Ok(())
                }
            }
        }
    }
}

impl std::error::Error for PatchError {}

/// One field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApplyConflict {
    /// The manager owning the field.
    pub manager: String,
    /// The field path in the form kube-apiserver prints, e.g. `.spec.replicas`.
    pub field: String,
}
