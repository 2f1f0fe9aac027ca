//! Arbitrary bytes as the protobuf body (`application/vnd.kubernetes.protobuf`) of a create or
//! update of a ConfigMap, a Deployment (and its `/scale`) or a custom resource (which has no
//! protobuf form), answered in protobuf when the object has one, through the server's real
//! request path; patches take their JSON bodies as in `request_json`. See
//! `staircase_apiserver_fuzz::request`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staircase_apiserver_fuzz::{Encoding, request};

fuzz_target!(|data: &[u8]| request(Encoding::Protobuf, data));
