//! Example operators built with staircase, shared by the examples, the integration tests and the
//! benchmarks.
//!
//! [`foo`] is the quickstart operator: a `Foo` custom resource that wants a ConfigMap carrying
//! its message, a Secret with a generated token, and a Service, each child made by its own step.
//! [`echo`] keeps a Deployment and a Service through the declarative children step and reports
//! them in its status; [`greeting`] keeps its own `observedGeneration`; [`order`] orders from an
//! external REST service ([`shop`]) with the two-step idempotent pattern; [`shelf`] has two served
//! versions and validating, mutating and conversion webhooks. [`harness`] is what
//! their demos share.
#![warn(missing_docs)]

pub mod echo;
pub mod foo;
pub mod greeting;
pub mod harness;
pub mod order;
pub mod shelf;
pub mod shop;
