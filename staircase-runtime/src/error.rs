//! The error type steps return, and how the runtime classifies it.

use std::fmt;

use crate::writes::Write;

/// The result type of steps: `Ok(Outcome)` or a staircase [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from a step or from the runtime.
///
/// Any error converts into it with `?` (like `anyhow::Error`). Errors are *transient* by default:
/// the object is retried with per-object exponential backoff. Wrap an error with
/// [`Error::permanent`] when retrying cannot help (an invalid spec): it is reported in the
/// object's status and retried only rarely, so a broken object cannot hot-loop.
pub struct Error {
    source: anyhow::Error,
    permanent: bool,
    violation: Option<RuleViolation>,
}

impl Error {
    /// An error that retrying will not fix; the object waits for a change (or a long backoff).
    /// `source` is any error, or an `anyhow` message:
    ///
    /// ```
    /// # use staircase_runtime::{Error, Outcome, Result};
    /// # fn check(limit: i64) -> Result<Outcome> {
    /// if limit < 0 {
    ///     return Err(Error::permanent(anyhow::anyhow!("spec.limit is {limit}; it must be 0 or more")));
    /// }
    /// # Ok(Outcome::unchanged()) }
    /// ```
    pub fn permanent(source: impl Into<anyhow::Error>) -> Self {
        Error {
            source: source.into(),
            permanent: true,
            violation: None,
        }
    }

    /// A transient error from a plain message.
    pub fn msg(message: impl fmt::Display + fmt::Debug + Send + Sync + 'static) -> Self {
        Error {
            source: anyhow::Error::msg(message),
            permanent: false,
            violation: None,
        }
    }

    /// Whether retrying is pointless until the object changes.
    ///
    /// Besides errors marked [`Error::permanent`], API answers that will not change on retry count:
    /// `400 BadRequest`, `403 Forbidden`, `422 Invalid`.
    pub fn is_permanent(&self) -> bool {
        self.permanent || matches!(self.api_code(), Some(400 | 403 | 422))
    }

    /// The HTTP code when this error is a Kubernetes API answer.
    pub fn api_code(&self) -> Option<u16> {
        match self.source.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        }
    }

    /// The rule violation this error reports, if it is one.
    pub fn violation(&self) -> Option<&RuleViolation> {
        self.violation.as_ref()
    }

    /// The underlying error.
    pub fn source_error(&self) -> &anyhow::Error {
        &self.source
    }

    /// Adds which step failed to the message, keeping the classification.
    pub(crate) fn in_step(self, step: &str) -> Self {
        Error {
            source: self.source.context(format!("step `{step}` failed")),
            ..self
        }
    }

    pub(crate) fn from_violation(v: RuleViolation) -> Self {
        Error {
            source: anyhow::Error::msg(v.to_string()),
            permanent: false,
            violation: Some(v),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Error {
    fn from(e: E) -> Self {
        Error {
            source: e.into(),
            permanent: false,
            violation: None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

impl fmt::Display for Error {
    /// The whole cause chain on one line, which is what a condition message needs; an API
    /// server's answer as its message and code, once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cause) in self.source.chain().enumerate() {
            if i > 0 {
                f.write_str(": ")?;
            }
            if let Some(e) = cause.downcast_ref::<kube::Error>() {
                // kube's own text repeats the message three times (its Display, the Status's
                // Debug, then the Status as the source).
                return f.write_str(&api_message(e));
            }
            write!(f, "{cause}")?;
        }
        Ok(())
    }
}

/// A kube error as a person reads it: an API server's answer as `message (code Reason)`.
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.reason.is_empty() => format!("{} ({})", s.message, s.code),
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

/// A step broke the one-modification rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// The step that broke the rule.
    pub step: String,
    /// What the step reported.
    pub reported: crate::OutcomeKind,
    /// Which rule was broken.
    pub rule: Rule,
    /// Every write the step made during this run.
    pub writes: Vec<Write>,
}

/// The rules the runtime enforces on every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A step that reports anything but `Modified` must not write.
    WriteWithoutModified,
    /// A step that reports `Modified` makes exactly one modification.
    MoreThanOneWrite,
    /// A step declared `read_only` never writes.
    ReadOnlyWrote,
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.rule {
            Rule::WriteWithoutModified => format!(
                "reported {} but made {} write(s)",
                self.reported,
                self.writes.len()
            ),
            Rule::MoreThanOneWrite => format!(
                "reported modified but made {} writes (exactly one is allowed)",
                self.writes.len()
            ),
            Rule::ReadOnlyWrote => format!("is read-only but made {} write(s)", self.writes.len()),
        };
        write!(
            f,
            "step `{}` broke the one-modification rule: it {what}",
            self.step
        )?;
        for w in &self.writes {
            write!(f, "; {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error() -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            message: "configmaps \"x\" is forbidden".into(),
            reason: "Forbidden".into(),
            code: 403,
            ..Default::default()
        }))
    }

    #[test]
    fn an_api_answer_reads_as_its_message_and_code_once() {
        let e = Error::from(api_error()).in_step("ensure_config");
        assert_eq!(
            e.to_string(),
            "step `ensure_config` failed: configmaps \"x\" is forbidden (403 Forbidden)"
        );
        assert!(e.is_permanent());
    }

    #[test]
    fn other_errors_keep_their_whole_chain() {
        let e = Error::from(anyhow::anyhow!("root").context("middle")).in_step("s");
        assert_eq!(e.to_string(), "step `s` failed: middle: root");
    }
}
