//! nbhub: the Hub.
