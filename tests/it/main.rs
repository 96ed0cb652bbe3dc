//! End-to-end tests of the CLI (filled in below).
