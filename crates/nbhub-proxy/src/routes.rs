//! The route table: a trie keyed by path segments, as CHP's `URLTrie`.
//!
//! Lookup walks one `HashMap` level per path segment and keeps the deepest node that holds a
//! route, so its cost depends on the depth of the request path, not on the number of routes.
//! Each route lives in an `Arc` so the forwarding path can keep it after the table lock is
//! released, and bump its `last_activity` (an atomic) with a relaxed store, lock-free.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use http::uri::{Authority, Scheme};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch (what CHP's `new Date()` holds).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A parsed route target: `proto://host:port[/path]`.
#[derive(Debug, Clone)]
pub struct Target {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path of the target without a trailing `/` (empty for an origin).
    pub path: String,
}

impl Target {
    pub fn parse(s: &str) -> Result<Self, String> {
        let uri: http::Uri = s
            .parse()
            .map_err(|e| format!("invalid target {s:?}: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("target {s:?} has no scheme"))?;
        // ws/wss targets are spoken to as http/https (the upgrade is an HTTP request).
        let scheme = match scheme.as_str() {
            "http" | "ws" => Scheme::HTTP,
            "https" | "wss" => Scheme::HTTPS,
            other => return Err(format!("target {s:?}: unsupported scheme {other:?}")),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("target {s:?} has no host"))?;
        let path = uri.path().trim_end_matches('/').to_string();
        Ok(Target {
            scheme,
            authority,
            path,
        })
    }
}

/// One route: the data posted through the API (stored whole), its parsed target and activity.
///
/// The data is kept as its compact JSON text rather than a `serde_json::Map`: a map of four
/// entries costs a B-tree node of ~600 bytes, the text ~100, and the API only ever prints it.
#[derive(Debug)]
pub struct Route {
    /// The normalised route key (`/user/alice`, `/` for the root).
    pub key: Box<str>,
    /// The route data as a compact JSON object, without `last_activity`.
    data: Box<str>,
    pub target: Target,
    /// The hub's route (data `"hub": true`, or `--default-target`'s): requests on it may wait
    /// for a hub that restarts ([`crate::hubwait`]).
    pub hub: bool,
    last_activity: AtomicI64,
}

impl Route {
    /// A route from its data; a `last_activity` in `data` is dropped (the proxy keeps its own).
    pub fn new(key: &str, mut data: Map<String, Value>, target: Target) -> Self {
        data.remove("last_activity");
        let hub = data.get("hub") == Some(&Value::Bool(true));
        let data = serde_json::to_string(&Value::Object(data)).unwrap_or_else(|_| "{}".into());
        Route {
            key: key.into(),
            data: data.into(),
            target,
            hub,
            last_activity: AtomicI64::new(now_ms()),
        }
    }

    /// A route as another process or the routes file had it, with its `last_activity`.
    pub fn with_activity(key: &str, data: Map<String, Value>, target: Target, ms: i64) -> Self {
        let r = Route::new(key, data, target);
        r.last_activity.store(ms, Ordering::Relaxed);
        r
    }

    /// Take a later `last_activity` seen elsewhere (the process this one took over from).
    pub fn touched_at(&self, ms: i64) {
        self.last_activity.fetch_max(ms, Ordering::Relaxed);
    }

    /// Record traffic on this route. A relaxed store: readers only need a recent value.
    #[inline]
    pub fn touch(&self) {
        self.last_activity.store(now_ms(), Ordering::Relaxed);
    }

    pub fn last_activity_ms(&self) -> i64 {
        self.last_activity.load(Ordering::Relaxed)
    }

    /// The stored route data (without `last_activity`).
    pub fn data(&self) -> Map<String, Value> {
        serde_json::from_str(&self.data).unwrap_or_default()
    }

    /// Append the route as the API shows it (the data plus `last_activity`) to `out`.
    pub fn write_json(&self, out: &mut String) {
        let body = self.data.strip_suffix('}').unwrap_or("{");
        out.push_str(body);
        if body.len() > 1 {
            out.push(',');
        }
        out.push_str("\"last_activity\":\"");
        out.push_str(&format_js_date(self.last_activity_ms()));
        out.push_str("\"}");
    }

    /// The route as the API shows it, as JSON text.
    pub fn to_json_string(&self) -> String {
        let mut s = String::with_capacity(self.data.len() + 48);
        self.write_json(&mut s);
        s
    }
}

/// Routes as one JSON object, key → the route as the API shows it: the body of
/// `GET /api/routes`, the routes file and a handover's snapshot.
pub fn table_json<'a>(routes: impl IntoIterator<Item = &'a Arc<Route>>) -> String {
    let mut out = String::from("{");
    for r in routes {
        if out.len() > 1 {
            out.push(',');
        }
        // Keys are JSON strings: let serde_json escape them.
        out.push_str(&serde_json::to_string(&*r.key).unwrap_or_else(|_| "\"\"".into()));
        out.push(':');
        r.write_json(&mut out);
    }
    out.push('}');
    out
}

/// Routes from [`table_json`]'s text. A route whose target does not parse is an error (the
/// text is ours: something is wrong with it).
pub fn parse_table(text: &str) -> Result<Vec<Route>, String> {
    let table: Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("not a route table: {e}"))?;
    table
        .into_iter()
        .map(|(key, v)| {
            let Value::Object(data) = v else {
                return Err(format!("route {key}: not an object"));
            };
            let target = match data.get("target") {
                Some(Value::String(t)) => Target::parse(t)?,
                _ => return Err(format!("route {key}: no target")),
            };
            let ms = match data.get("last_activity") {
                Some(Value::String(d)) => parse_iso_date(d),
                _ => None,
            };
            Ok(Route::with_activity(
                &normalize_key(&key),
                data,
                target,
                ms.unwrap_or_else(now_ms),
            ))
        })
        .collect()
}

/// CHP's `trimPrefix`: a leading `/`, no trailing `/` (except the root itself).
pub fn normalize_key(path: &str) -> String {
    let mut s = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        s.push('/');
    }
    s.push_str(path);
    if s.len() > 1 && s.ends_with('/') {
        s.pop();
    }
    s
}

/// Segments of a path as CHP's `stringToPath`: `/a/b/` → `a`, `b`; `/` → nothing.
/// Inner empty segments (`/a//b`) are kept, as CHP keeps them.
pub fn segments(path: &str) -> impl Iterator<Item = &str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    let empty = p.is_empty();
    p.split('/').filter(move |_| !empty)
}

#[derive(Debug, Default)]
struct Node {
    route: Option<Arc<Route>>,
    children: HashMap<Box<str>, Node>,
}

/// The segment trie. Not synchronised: see [`RouteTable`].
#[derive(Debug, Default)]
pub struct Trie {
    root: Node,
    len: usize,
}

impl Trie {
    /// Insert or replace the route at `route.key`.
    pub fn insert(&mut self, route: Route) {
        let mut node = &mut self.root;
        // Split the key first: `route` moves into the node at the end.
        let key = route.key.clone();
        for seg in segments(&key) {
            node = node.children.entry(seg.into()).or_default();
        }
        if node.route.replace(Arc::new(route)).is_none() {
            self.len += 1;
        }
    }

    /// Remove the route at `key` (normalised); prunes emptied branches.
    pub fn remove(&mut self, key: &str) -> Option<Arc<Route>> {
        fn rec<'a>(node: &mut Node, mut segs: impl Iterator<Item = &'a str>) -> Option<Arc<Route>> {
            match segs.next() {
                None => node.route.take(),
                Some(seg) => {
                    let child = node.children.get_mut(seg)?;
                    let r = rec(child, segs);
                    if child.route.is_none() && child.children.is_empty() {
                        node.children.remove(seg);
                    }
                    r
                }
            }
        }
        let r = rec(&mut self.root, segments(key));
        if r.is_some() {
            self.len -= 1;
        }
        r
    }

    /// The route stored exactly at `key` (normalised).
    pub fn get(&self, key: &str) -> Option<&Arc<Route>> {
        let mut node = &self.root;
        for seg in segments(key) {
            node = node.children.get(seg)?;
        }
        node.route.as_ref()
    }

    /// Longest prefix match on segments.
    pub fn lookup<'a>(&self, segs: impl Iterator<Item = &'a str>) -> Option<&Arc<Route>> {
        let mut node = &self.root;
        let mut best = node.route.as_ref();
        for seg in segs {
            match node.children.get(seg) {
                Some(child) => {
                    node = child;
                    if node.route.is_some() {
                        best = node.route.as_ref();
                    }
                }
                None => break,
            }
        }
        best
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All routes, in no particular order.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = vec![&self.root];
        while let Some(n) = stack.pop() {
            if let Some(r) = &n.route {
                out.push(r.clone());
            }
            stack.extend(n.children.values());
        }
        out
    }
}

/// The shared route table. Readers hold the lock only for a trie walk and an `Arc` clone;
/// writers (the REST API) only for one insert or remove, so the hot path never waits long.
#[derive(Debug, Default)]
pub struct RouteTable {
    trie: RwLock<Trie>,
}

impl RouteTable {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Trie> {
        // A panic while holding the lock cannot leave the trie half-updated in a way that
        // matters more than losing the proxy, so ignore poisoning.
        self.trie.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Trie> {
        self.trie.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, route: Route) {
        self.write().insert(route)
    }

    pub fn remove(&self, key: &str) -> Option<Arc<Route>> {
        self.write().remove(key)
    }

    pub fn get(&self, key: &str) -> Option<Arc<Route>> {
        self.read().get(key).cloned()
    }

    /// Longest-prefix lookup of a request: `host` first when host routing is on.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<Arc<Route>> {
        let t = self.read();
        match host {
            Some(h) => t.lookup(std::iter::once(h).chain(segments(path))).cloned(),
            None => t.lookup(segments(path)).cloned(),
        }
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    pub fn routes(&self) -> Vec<Arc<Route>> {
        self.read().routes()
    }
}

/// JavaScript `Date#toJSON`: `2026-11-26T11:26:48.374Z`.
pub fn format_js_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            millis
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".into(),
    }
}

/// Parse an ISO 8601 date as JavaScript's `Date.parse` does for the forms people send:
/// `2026-11-26`, `2026-11-26T11:26`, `…:48`, `…:48.374`, with `Z` or `±hh:mm` (or none = UTC;
/// also a space instead of `T`). Returns milliseconds since the epoch.
pub fn parse_iso_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = num(0..4)? as i32;
    let month = time::Month::try_from(num(5..7)? as u8).ok()?;
    let day = num(8..10)? as u8;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let (mut h, mut mi, mut sec, mut ms, mut offset_s) = (0i64, 0i64, 0i64, 0i64, 0i64);
    let mut i = 10;
    if i < b.len() {
        if b[i] != b'T' && b[i] != b't' && b[i] != b' ' {
            return None;
        }
        h = num(i + 1..i + 3)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        mi = num(i + 4..i + 6)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            sec = num(i + 1..i + 3)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if end == start {
                    return None;
                }
                // Milliseconds: first three digits, padded.
                let frac = &s[start..end.min(start + 3)];
                ms = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
                i = end;
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z') | Some(b'z') if i + 1 == b.len() => {}
            Some(&c) if c == b'+' || c == b'-' => {
                let oh = num(i + 1..i + 3)?;
                let om = match b.get(i + 3) {
                    Some(b':') => num(i + 4..i + 6)?,
                    _ => num(i + 3..i + 5)?,
                };
                let end = if b.get(i + 3) == Some(&b':') {
                    i + 6
                } else {
                    i + 5
                };
                if end != b.len() {
                    return None;
                }
                offset_s = (oh * 3600 + om * 60) * if c == b'-' { -1 } else { 1 };
            }
            _ => return None,
        }
        if h > 24 || mi > 59 || sec > 59 {
            return None;
        }
    }
    let days = (date.to_julian_day() - time::macros::date!(1970 - 01 - 01).to_julian_day()) as i64;
    Some(((days * 86400 + h * 3600 + mi * 60 + sec - offset_s) * 1000) + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str) -> Route {
        let t = Target::parse("http://127.0.0.1:1").expect("target");
        Route::new(&normalize_key(key), Map::new(), t)
    }

    fn find(t: &Trie, path: &str) -> Option<String> {
        t.lookup(segments(path)).map(|r| r.key.to_string())
    }

    #[test]
    fn normalises_keys() {
        assert_eq!(normalize_key(""), "/");
        assert_eq!(normalize_key("/"), "/");
        assert_eq!(normalize_key("user/alice/"), "/user/alice");
        assert_eq!(normalize_key("/user/alice"), "/user/alice");
        assert_eq!(segments("/").count(), 0);
        assert_eq!(segments("/a//b/").collect::<Vec<_>>(), ["a", "", "b"]);
    }

    #[test]
    fn longest_segment_prefix() {
        let mut t = Trie::default();
        t.insert(route("/"));
        t.insert(route("/user/alice"));
        t.insert(route("/user/alice/foo"));
        assert_eq!(t.len(), 3);
        assert_eq!(find(&t, "/user/alice").as_deref(), Some("/user/alice"));
        assert_eq!(find(&t, "/user/alice/").as_deref(), Some("/user/alice"));
        assert_eq!(find(&t, "/user/alice/lab").as_deref(), Some("/user/alice"));
        assert_eq!(
            find(&t, "/user/alice/foo/x").as_deref(),
            Some("/user/alice/foo")
        );
        assert_eq!(find(&t, "/user/alicex").as_deref(), Some("/"));
        assert_eq!(find(&t, "/user").as_deref(), Some("/"));
        assert_eq!(find(&t, "/").as_deref(), Some("/"));
    }

    #[test]
    fn no_root_means_no_match() {
        let mut t = Trie::default();
        t.insert(route("/user/alice"));
        assert_eq!(find(&t, "/user/bob"), None);
        assert_eq!(find(&t, "/"), None);
    }

    #[test]
    fn replace_and_remove_prunes() {
        let mut t = Trie::default();
        t.insert(route("/a/b/c"));
        t.insert(route("/a/b/c/"));
        assert_eq!(t.len(), 1);
        t.insert(route("/a"));
        assert!(t.remove("/a/b").is_none());
        assert!(t.remove("/a/b/c").is_some());
        assert_eq!(t.len(), 1);
        assert_eq!(find(&t, "/a/b/c/d").as_deref(), Some("/a"));
        assert!(t.root.children["a"].children.is_empty());
        assert!(t.remove("/a").is_some());
        assert!(t.is_empty());
        assert!(t.root.children.is_empty());
    }

    #[test]
    fn host_routing_prefix() {
        let table = RouteTable::default();
        table.insert(route("/alice.hub.tld/user/alice"));
        table.insert(route("/"));
        let r = table.lookup(Some("alice.hub.tld"), "/user/alice/api");
        assert_eq!(
            r.map(|r| r.key.to_string()).as_deref(),
            Some("/alice.hub.tld/user/alice")
        );
        let r = table.lookup(Some("bob.hub.tld"), "/user/alice/api");
        assert_eq!(r.map(|r| r.key.to_string()).as_deref(), Some("/"));
    }

    #[test]
    fn many_routes() {
        let mut t = Trie::default();
        for i in 0..10_000 {
            t.insert(route(&format!("/user/u{i}")));
        }
        assert_eq!(t.len(), 10_000);
        assert_eq!(find(&t, "/user/u9999/lab").as_deref(), Some("/user/u9999"));
        assert_eq!(t.routes().len(), 10_000);
    }

    #[test]
    fn route_json() {
        let t = Target::parse("http://127.0.0.1:1").expect("target");
        let mut m = Map::new();
        m.insert("target".into(), "http://127.0.0.1:1".into());
        m.insert("last_activity".into(), "stale".into());
        let r = Route::new("/a", m, t.clone());
        let v: Value = serde_json::from_str(&r.to_json_string()).expect("json");
        assert_eq!(v["target"], "http://127.0.0.1:1");
        assert_ne!(v["last_activity"], "stale");
        assert_eq!(r.data().len(), 1);
        let r = Route::new("/b", Map::new(), t);
        let v: Value = serde_json::from_str(&r.to_json_string()).expect("json");
        assert_eq!(v.as_object().map(|o| o.len()), Some(1));
    }

    #[test]
    fn js_dates() {
        assert_eq!(format_js_date(0), "1970-01-01T00:00:00.000Z");
        let ms = parse_iso_date("2026-11-26T11:26:48.374Z").expect("parse");
        assert_eq!(format_js_date(ms), "2026-11-26T11:26:48.374Z");
        assert_eq!(
            parse_iso_date("2026-11-26"),
            parse_iso_date("2026-11-26T00:00:00.000Z")
        );
        assert_eq!(
            parse_iso_date("2026-11-26T12:00:00+01:00"),
            parse_iso_date("2026-11-26T11:00Z")
        );
        assert_eq!(
            parse_iso_date("2026-11-26T11:26:48.5"),
            Some(parse_iso_date("2026-11-26T11:26:48").expect("p") + 500)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-26T",
            "2026-11-26Tx",
            "2026-11-26Z1",
        ] {
            assert_eq!(parse_iso_date(bad), None, "{bad}");
        }
    }
}
