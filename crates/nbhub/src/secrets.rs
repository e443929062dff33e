//! The hub's own secrets kept in `data_dir`: the cookie secret and the proxy's API token. A
//! leaf module, so that both the core (the proxy client) and the composition can use it.

use std::path::Path;

/// Reads a secret (hex) from `data_dir/file_name`, creating it (32 random bytes, mode 0600,
/// never overwritten) on first start.
pub fn load_or_create_secret(data_dir: &Path, file_name: &str) -> std::io::Result<Vec<u8>> {
    use rand::RngCore;
    use std::io::Write;
    let path = data_dir.join(file_name);
    match std::fs::read_to_string(&path) {
        Ok(text) => hex::decode(text.trim()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not hex: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            file.write_all(hex::encode(&secret).as_bytes())?;
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}

/// Whether two secrets (hashes, MACs, nonces) are equal, in time that depends only on their
/// lengths: `subtle`'s comparison, which the optimizer cannot cut short at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_secret_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(dir.path(), "s").unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create_secret(dir.path(), "s").unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("s"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
