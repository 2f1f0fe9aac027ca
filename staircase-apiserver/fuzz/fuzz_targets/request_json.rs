//! Arbitrary bytes as the JSON body of a create, update or patch (merge, JSON, strategic, apply)
//! of a ConfigMap, a Deployment or a custom resource with a schema (and its `/status`, `/scale`),
//! answered through the server's real request path. See `staircase_apiserver_fuzz::request`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staircase_apiserver_fuzz::{Encoding, request};

fuzz_target!(|data: &[u8]| request(Encoding::Json, data));
