//! Benchmarks: the same operator written as a staircase and as a hand-written
//! `kube::runtime::Controller`, run side by side (interleaved) on one embedded API server.
//!
//! - [`alloc`]: the counting global allocator (per-thread counters);
//! - [`cpu`]: per-thread CPU clocks;
//! - [`workload`]: the `Bench` custom resource and the two operators (K = 5 field patches);
//! - [`harness`]: scenarios, measurement, repetitions;
//! - [`reads`]: the cost of a staircase's reads of its children, cached and live;
//! - [`report`]: medians, ratios, markdown and JSON.
#![warn(missing_docs)]

pub mod alloc;
pub mod compile;
pub mod cpu;
pub mod harness;
pub mod reads;
pub mod report;
pub mod workload;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;
