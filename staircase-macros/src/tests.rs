//! Unit tests of parse and validate on token streams (the expansion is tested by `ui-tests`).
