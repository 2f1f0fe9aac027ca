//! Arbitrary bytes as the YAML body (`application/yaml`, `application/apply-patch+yaml`) of a
//! create, update or patch, as in `request_json`; bodies labelled JSON that do not start like
//! JSON are decoded as YAML too, so this mostly exercises the YAML decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staircase_apiserver_fuzz::{Encoding, request};

fuzz_target!(|data: &[u8]| request(Encoding::Yaml, data));
