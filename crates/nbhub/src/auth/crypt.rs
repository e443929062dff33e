//! auth_state encrypted at rest: JupyterHub's `JUPYTERHUB_CRYPT_KEY` (one or more 32-byte
//! keys, hex or base64, `;`-separated; the first encrypts, all decrypt, so keys can be
//! rotated) with AES-256-GCM. A sealed value is `nbhub-aead-v1:` + base64url(nonce ‖ ciphertext
//! ‖ tag); the user's id is the associated data, so a blob copied onto another user's row does
//! not open.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// JupyterHub's variable, same format.
pub const CRYPT_KEY_ENV: &str = "JUPYTERHUB_CRYPT_KEY";
const PREFIX: &str = "nbhub-aead-v1:";

pub struct CryptKeeper {
    keys: Vec<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for CryptKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CryptKeeper({} keys)", self.keys.len())
    }
}

/// Why a stored auth_state could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Sealed, but none of the keys opens it (the key was changed), or it was altered.
    NoKeyOpensIt,
    /// Sealed, and this hub has no key at all.
    NoKeys,
    /// Not a sealed value and not JSON either.
    Garbled,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unreadable::NoKeyOpensIt => {
                "it was encrypted with a key that is no longer in JUPYTERHUB_CRYPT_KEY"
            }
            Unreadable::NoKeys => "it is encrypted and JUPYTERHUB_CRYPT_KEY is not set",
            Unreadable::Garbled => "it is neither encrypted nor JSON",
        })
    }
}

impl CryptKeeper {
    /// Parses `JUPYTERHUB_CRYPT_KEY`'s format; the error names the bad key by position.
    pub fn from_keys(spec: &str) -> Result<CryptKeeper, String> {
        let mut keys = Vec::new();
        for (i, part) in spec.split(';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let bytes = decode_key(part).ok_or_else(|| {
                format!(
                    "{CRYPT_KEY_ENV}: key {} is not 32 bytes, hex (64 characters) or base64 (44); make one with `openssl rand -hex 32`",
                    i + 1
                )
            })?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| format!("{CRYPT_KEY_ENV}: key {} is unusable", i + 1))?;
            keys.push(LessSafeKey::new(key));
        }
        if keys.is_empty() {
            return Err(format!("{CRYPT_KEY_ENV} holds no key"));
        }
        Ok(CryptKeeper {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Seals `plain` for the user with this id, with the first key.
    pub fn seal(&self, user_id: i64, plain: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce".to_string())?;
        let mut buf = plain.to_vec();
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(user_id.to_be_bytes()),
                &mut buf,
            )
            .map_err(|_| "encryption failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a sealed value with whichever key sealed it.
    pub fn open(&self, user_id: i64, sealed: &str) -> Result<Vec<u8>, Unreadable> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|r| r.len() > NONCE_LEN)
            .ok_or(Unreadable::Garbled)?;
        let (nonce, body) = raw.split_at(NONCE_LEN);
        for key in &self.keys {
            let mut buf = body.to_vec();
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unreadable::Garbled)?;
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(user_id.to_be_bytes()), &mut buf)
            {
                return Ok(plain.to_vec());
            }
        }
        Err(Unreadable::NoKeyOpensIt)
    }
}

/// Whether a stored value is sealed (rather than the plain JSON of a hub without a key).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// What the `auth_state` column holds, as JSON: sealed values opened, plain JSON (written by a
/// hub without a key) read as it is.
pub fn read_stored(
    keeper: Option<&CryptKeeper>,
    user_id: i64,
    stored: Option<&str>,
) -> Result<serde_json::Value, Unreadable> {
    let Some(stored) = stored.filter(|s| !s.is_empty()) else {
        return Ok(serde_json::Value::Null);
    };
    let plain = if is_sealed(stored) {
        keeper.ok_or(Unreadable::NoKeys)?.open(user_id, stored)?
    } else {
        stored.as_bytes().to_vec()
    };
    serde_json::from_slice(&plain).map_err(|_| Unreadable::Garbled)
}

/// What to store for `value`: sealed with a key, plain JSON without one; `None` for null.
pub fn to_stored(
    keeper: Option<&CryptKeeper>,
    user_id: i64,
    value: &serde_json::Value,
) -> Result<Option<String>, String> {
    if value.is_null() {
        return Ok(None);
    }
    let text = value.to_string();
    match keeper {
        Some(k) => k.seal(user_id, text.as_bytes()).map(Some),
        None => Ok(Some(text)),
    }
}

/// JupyterHub's rules: 64 characters of hex, 44 of base64 (either alphabet), or 32 raw bytes.
fn decode_key(s: &str) -> Option<Vec<u8>> {
    let decoded = match s.len() {
        64 => hex::decode(s).ok(),
        44 => URL_SAFE.decode(s).or_else(|_| STANDARD.decode(s)).ok(),
        32 => Some(s.as_bytes().to_vec()),
        _ => None,
    };
    decoded.filter(|k| k.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn keys_in_jupyterhubs_formats() {
        assert!(CryptKeeper::from_keys(HEX_A).is_ok());
        let b64 = STANDARD.encode([7u8; 32]);
        assert_eq!(b64.len(), 44);
        assert!(CryptKeeper::from_keys(&b64).is_ok());
        assert!(CryptKeeper::from_keys(&URL_SAFE.encode([0xfbu8; 32])).is_ok());
        let two = format!("{HEX_A};{b64}");
        assert_eq!(CryptKeeper::from_keys(&two).expect("two").keys.len(), 2);
        let err = CryptKeeper::from_keys(&format!("{HEX_A};tooshort")).unwrap_err();
        assert!(
            err.contains("key 2") && err.contains("openssl rand -hex 32"),
            "{err}"
        );
        assert!(CryptKeeper::from_keys(" ; ").is_err());
    }

    #[test]
    fn sealed_values_open_with_any_listed_key_and_only_for_their_user() {
        let old = CryptKeeper::from_keys(HEX_A).expect("old");
        let sealed = old.seal(7, b"{\"access_token\":\"secret\"}").expect("seal");
        assert!(is_sealed(&sealed) && !sealed.contains("secret"));
        assert_ne!(
            sealed,
            old.seal(7, b"{\"access_token\":\"secret\"}").unwrap()
        );
        let new_key = STANDARD.encode([9u8; 32]);
        let rotated = CryptKeeper::from_keys(&format!("{new_key};{HEX_A}")).expect("rotated");
        assert_eq!(
            rotated.open(7, &sealed).expect("old key still opens"),
            b"{\"access_token\":\"secret\"}"
        );
        assert_eq!(rotated.open(8, &sealed), Err(Unreadable::NoKeyOpensIt));
        let changed = CryptKeeper::from_keys(&new_key).expect("changed");
        assert_eq!(changed.open(7, &sealed), Err(Unreadable::NoKeyOpensIt));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(old.open(7, &tampered).is_err());
    }

    #[test]
    fn stored_values_plain_or_sealed() {
        let k = CryptKeeper::from_keys(HEX_A).expect("key");
        let v = serde_json::json!({"a": 1});
        let sealed = to_stored(Some(&k), 3, &v).expect("seal").expect("some");
        assert_eq!(read_stored(Some(&k), 3, Some(&sealed)), Ok(v.clone()));
        assert_eq!(read_stored(None, 3, Some(&sealed)), Err(Unreadable::NoKeys));
        assert_eq!(read_stored(None, 3, Some("{\"a\":1}")), Ok(v.clone()));
        assert_eq!(read_stored(Some(&k), 3, None), Ok(serde_json::Value::Null));
        assert_eq!(to_stored(Some(&k), 3, &serde_json::Value::Null), Ok(None));
        assert_eq!(
            read_stored(None, 3, Some("nonsense")),
            Err(Unreadable::Garbled)
        );
    }
}
