//! placeholder (crate docs written below once the API settles)
#![warn(missing_docs)]

mod crd;
mod discovery;
mod faults;
mod gc;
mod handlers;
mod meta;
mod openapi;
mod ops;
pub mod patch;
pub mod real;
mod registry;
mod router;
pub mod schema;
mod selectors;
mod server;
mod stats;
mod status;
mod store;
mod watch;

pub use faults::{Fault, FaultAction, FaultId, Faults};
pub use router::Verb;
pub use server::{ApiServer, ApiServerBuilder};
pub use stats::{RequestRecord, Stats};
