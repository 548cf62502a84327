//! Test-only crate; see tests/oracle.rs.
