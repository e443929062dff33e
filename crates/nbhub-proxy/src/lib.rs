//! nbhub-proxy: a configurable-http-proxy compatible reverse proxy (see issue 3).
