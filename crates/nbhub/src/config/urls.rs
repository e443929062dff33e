//! URLs checked once, when the file is read: [`HttpUrl`] (absolute `http`/`https` with a
//! host) and [`BaseUrl`] (a path with a leading and trailing slash). Code that holds one need
//! not check it again.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// An absolute `http://` or `https://` URL with a host.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{s:?} must start with http:// or https://"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{s:?} has no host"));
        }
        Ok(HttpUrl(url))
    }
    pub fn url(&self) -> &url::Url {
        &self.0
    }
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or("127.0.0.1")
    }
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(80)
    }
    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }
    /// `scheme://host:port` with no path.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }
    /// The `host:port` to bind to; a bracketed IPv6 host is unbracketed.
    pub fn socket_addr_string(&self) -> String {
        let host = self.host().trim_start_matches('[').trim_end_matches(']');
        if host.contains(':') {
            format!("[{host}]:{}", self.port())
        } else {
            format!("{host}:{}", self.port())
        }
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Print as written by an admin: no trailing `/` on a bare origin.
        let s = self.0.as_str();
        f.write_str(if self.0.path() == "/" {
            s.trim_end_matches('/')
        } else {
            s
        })
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HttpUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A URL path prefix such as `/` or `/jupyter/`; normalised to start and end with `/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BaseUrl(pub(super) String);

impl BaseUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("{s:?} must be a path starting with '/'"));
        }
        if s.contains(['?', '#', ' ', '\\']) || s.contains("//") {
            return Err(format!(
                "{s:?} must be a plain path such as \"/\" or \"/jupyter/\""
            ));
        }
        let mut s = s.to_string();
        if !s.ends_with('/') {
            s.push('/');
        }
        Ok(BaseUrl(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BaseUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}
