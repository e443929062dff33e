//! The hub's integration tests in one binary: the in-process hub (`common::TestHub`), the real
//! `nbhub` binary with its managed proxy and the real `jupyterhub-singleuser`
//! (`common::hubproc`), and the page tests in a real Chromium (`common::browser`). One module
//! per part of the hub; run one with a filter, e.g. `cargo test -p nbhub --test hub api::`.
//!
//! Two runs that need other real parts have their own binaries: `slurm` (the Slurm dev cluster)
//! and `conformance` (schemathesis against JupyterHub's OpenAPI spec).

#[path = "../common/mod.rs"]
mod common;

mod advisories;
mod announcements;
mod api;
mod cli;
mod db;
mod db_outage;
mod hub_restart;
mod identity_cache;
mod import_config;
mod jupyterhub5;
mod listener;
mod login;
mod metrics;
mod oidc;
mod package;
mod pages_browser;
mod pages_security;
mod pages_templates;
mod servers;
mod sharing;
mod slots;
mod spawn_queue;
mod two_proxies;
