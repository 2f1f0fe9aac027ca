//! Example operators built with staircase, shared by the examples, the integration tests and the
//! benchmarks.
//!
//! [`foo`] is the quickstart operator: a `Foo` custom resource that wants a ConfigMap carrying
//! its message, a Secret with a generated token, and a Service, each child made by its own step.
#![warn(missing_docs)]

pub mod foo;
