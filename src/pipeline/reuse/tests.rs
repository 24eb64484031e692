//! Unit tests of `reuse`.
