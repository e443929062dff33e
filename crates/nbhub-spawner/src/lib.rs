//! Spawners: the trait and its backends (see issue 4).
