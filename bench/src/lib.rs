//! Benchmarks: the same operator written as a staircase and as a hand-written
//! `kube::runtime::Controller`, run side by side (interleaved) on one embedded API server.
//!
//! - [`alloc`]: the counting global allocator (per-thread counters);
//! - [`cpu`]: per-thread CPU clocks;
//! - [`workload`]: the `Bench` custom resource and the two operators (K = 5 field patches);
//! - [`harness`]: scenarios, measurement, repetitions;
//! - [`reads`]: the cost of a staircase's reads of its children, cached and live;
//! - [`shard`]: sharding: throughput with replicas, rebalance, loss;
//! - [`webapp`]: the webapp workload, its three operators (each its own process) and the driver;
//! - [`report`]: medians, ratios, markdown and JSON.
//!
//! The counting allocator is installed by the binaries that measure allocations
//! (`staircase-bench`, `staircase-bench-reads`), not by this library: the webapp operators link
//! it and run on the system allocator, as a user's operator would.
#![warn(missing_docs)]

pub mod alloc;
pub mod compile;
pub mod cpu;
pub mod harness;
pub mod reads;
pub mod report;
pub mod shard;
pub mod webapp;
pub mod workload;
