//! The limit on open files. Every client connection, and every target connection behind it, is
//! a file descriptor; with the usual soft limit of 1024 a few hundred slow or idle clients would
//! leave the proxy unable to accept anyone else. As nginx and other servers do, the soft limit
//! is raised to the hard limit at start (the administrator's ceiling stays in force).
#![allow(unsafe_code)]

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit before and after.
pub fn raise_nofile_limit() -> std::io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur >= lim.rlim_max {
        return Ok((before, before));
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the hard one is
    // always permitted.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((before, lim.rlim_cur))
}

/// [`raise_nofile_limit`], with the outcome logged (a failure is not fatal: the old limit
/// stays).
pub fn raise_nofile_limit_logged() {
    match raise_nofile_limit() {
        Ok((before, after)) if before != after => {
            tracing::info!("open files limit raised from {before} to {after}")
        }
        Ok((_, after)) => tracing::debug!("open files limit is {after}"),
        Err(e) => tracing::warn!("could not raise the open files limit: {e}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        let (_, after) = super::raise_nofile_limit().expect("setrlimit");
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        assert_eq!(after, lim.rlim_cur);
    }
}
