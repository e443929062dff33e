//! Test fixtures shared by nbhub tests.
