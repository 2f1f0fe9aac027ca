//! A complete reconciler: the ordered steps, and optionally the cleanup steps run on deletion.

use std::marker::PhantomData;

use crate::chain::{Stairs, Start};

/// The finalizer the runtime manages when a staircase has cleanup steps.
pub const DEFAULT_FINALIZER: &str = "staircase.rs/cleanup";

/// The reconciler `staircase!` produces: ordered steps for resource `K` with user state `S`, and
/// optional cleanup steps run (behind a finalizer) when an object is deleted.
pub struct Staircase<K, S, M, C = Start<K, S>> {
    pub(crate) main: M,
    pub(crate) cleanup: Option<C>,
    pub(crate) finalizer: String,
    pub(crate) _p: PhantomData<fn(&K, &S)>,
}

impl<K, S, M: Stairs<K, S>> Staircase<K, S, M> {
    /// A staircase without cleanup steps.
    pub fn new(main: M) -> Self {
        Staircase {
            main,
            cleanup: None,
            finalizer: DEFAULT_FINALIZER.to_string(),
            _p: PhantomData,
        }
    }

    /// Adds cleanup steps, run under the same rules when an object is being deleted. The runtime
    /// adds its finalizer as the first modification of each object and removes it once every
    /// cleanup step reports unchanged.
    pub fn with_cleanup<C: Stairs<K, S>>(self, cleanup: C) -> Staircase<K, S, M, C> {
        Staircase {
            main: self.main,
            cleanup: Some(cleanup),
            finalizer: self.finalizer,
            _p: PhantomData,
        }
    }
}

impl<K, S, M: Stairs<K, S>, C: Stairs<K, S>> Staircase<K, S, M, C> {
    /// Uses `name` as the finalizer instead of [`DEFAULT_FINALIZER`].
    pub fn finalizer(mut self, name: impl Into<String>) -> Self {
        self.finalizer = name.into();
        self
    }

    /// The finalizer name, when there are cleanup steps.
    pub fn finalizer_name(&self) -> Option<&str> {
        self.cleanup.as_ref().map(|_| self.finalizer.as_str())
    }

    /// The names of the steps, in order.
    pub fn step_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        self.main.step_names(&mut v);
        v
    }

    /// The names of the cleanup steps, in order.
    pub fn cleanup_step_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if let Some(c) = &self.cleanup {
            c.step_names(&mut v);
        }
        v
    }
}

/// Any staircase, named by its resource and state alone: the return type of a function that
/// builds one, and what [`Operator`](crate::Operator) runs.
///
/// ```
/// # use staircase_runtime::{Reconciler, Staircase, Start};
/// # struct Foo;
/// # #[derive(Default)] struct App;
/// fn stairs() -> impl Reconciler<Foo, App> {
///     // in an operator: `staircase!(Foo => [ensure_config, wait_ready])`
///     Staircase::new(Start::<Foo, App>::new())
/// }
/// # let _ = stairs();
/// ```
pub trait Reconciler<K, S> {
    /// The steps' chain.
    type Main: Stairs<K, S>;
    /// The cleanup steps' chain ([`Start`] when there are none).
    type Cleanup: Stairs<K, S>;
    /// The staircase itself.
    fn into_staircase(self) -> Staircase<K, S, Self::Main, Self::Cleanup>;
}

impl<K, S, M: Stairs<K, S>, C: Stairs<K, S>> Reconciler<K, S> for Staircase<K, S, M, C> {
    type Main = M;
    type Cleanup = C;

    fn into_staircase(self) -> Self {
        self
    }
}
