//! End-to-end tests of mnemo across its crates live in `tests/tests/`; this library is
//! empty on purpose. See the test files for what they cover.
