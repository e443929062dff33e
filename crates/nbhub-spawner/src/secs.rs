//! Serde helpers for config values written the way JupyterHub's traits are.

/// A `Duration` as a number of seconds (integer or fraction).
pub(crate) mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::custom(format!("{secs} is not a number of seconds >= 0"))
        })
    }
}

/// A command given either as one string or as a list of strings (`cmd = "jupyterhub-singleuser"`
/// or `cmd = ["python3", "-m", "jupyterhub.singleuser"]`). One string is one argument: it is
/// never split on spaces.
pub(crate) mod one_or_many {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        })
    }
}
