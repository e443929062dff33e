//! Request and answer heads on the lean path: a client's request head read (httparse, in
//! place) into a `Plan` — hand it over, answer it ourselves, or forward it — with the
//! target's head written into a reused buffer (hop-by-hop headers dropped, forwarding and
//! custom headers added); a target's answer head read and the client's written the same way.

use std::sync::Arc;

use http::uri::Scheme;
use http::StatusCode;

use super::Framing;
use crate::forward::{self, ConnInfo, Forwarder};
use crate::routes::Route;

/// What to do with a parsed request head.
pub(super) enum Plan {
    Fallback,
    /// Answer it ourselves (health check, no route); close afterwards if it has a body we
    /// would have to skip.
    Answer {
        head_len: usize,
        status: StatusCode,
        close: bool,
        head_request: bool,
    },
    Forward {
        route: Arc<Route>,
        head_len: usize,
        body: Framing,
        close: bool,
        head_request: bool,
    },
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `Connection` header tokens other than `close`/`keep-alive`: the headers they name are
/// hop-by-hop too. A handful at most in practice; more send the request to the general path.
#[derive(Default)]
struct ConnectionTokens<'a> {
    names: [&'a [u8]; 8],
    len: usize,
}

impl<'a> ConnectionTokens<'a> {
    fn push(&mut self, t: &'a [u8]) -> bool {
        if self.len == self.names.len() {
            return false;
        }
        self.names[self.len] = t;
        self.len += 1;
        true
    }
    fn contains(&self, name: &[u8]) -> bool {
        self.names[..self.len]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) that are never passed on as they came.
fn is_hop_by_hop(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

pub(super) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Route a parsed request and write the target's head into `out`.
pub(super) fn plan(
    fw: &Forwarder,
    info: &ConnInfo,
    req: &httparse::Request<'_, '_>,
    head_len: usize,
    out: &mut Vec<u8>,
    orig: &mut String,
) -> Plan {
    let cfg = &fw.config;
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Plan::Fallback;
    };
    // Origin-form targets of visible ASCII only: anything else is hyper's to judge.
    if method == "CONNECT"
        || !target.starts_with('/')
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return Plan::Fallback;
    }
    orig.clear();
    orig.push_str(target);
    let mut host: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut tokens = ConnectionTokens::default();
    let (mut xff, mut xfport, mut xfproto, mut xfhost) = (None, None, None, false);
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            host.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match (parse_length(h.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Plan::Fallback,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked || !trim(h.value).eq_ignore_ascii_case(b"chunked") {
                return Plan::Fallback;
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in h.value.split(|&b| b == b',').map(trim) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                    continue;
                }
                let names_a_header = !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive");
                if t.eq_ignore_ascii_case(b"upgrade") || (names_a_header && !tokens.push(t)) {
                    // Upgrades (websockets) and long token lists are the general path's.
                    return Plan::Fallback;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            return Plan::Fallback;
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            xff.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-port") {
            xfport.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            xfproto.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-host") {
            xfhost = true;
        }
    }
    if chunked && length.is_some() {
        return Plan::Fallback;
    }
    let body = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) if n > 0 => Framing::Length(n),
        _ => Framing::None,
    };
    let head_request = method == "HEAD";
    let raw_path = target.split_once('?').map_or(target, |(p, _)| p);
    if raw_path == "/_chp_healthz" {
        return Plan::Answer {
            head_len,
            status: StatusCode::OK,
            close: close || body != Framing::None,
            head_request,
        };
    }
    let path = forward::routing_path(raw_path);
    let routing_host = if cfg.host_routing {
        let h = host.and_then(|h| std::str::from_utf8(h).ok()).unwrap_or("");
        Some(forward::strip_host_port(h))
    } else {
        None
    };
    let Some(route) = fw.routes.lookup(routing_host, &path) else {
        tracing::debug!(path = %path, "no route");
        return Plan::Answer {
            head_len,
            status: StatusCode::NOT_FOUND,
            close: close || body != Framing::None,
            head_request,
        };
    };
    if route.target.scheme != Scheme::HTTP {
        return Plan::Fallback;
    }

    // The target's head.
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(forward::upstream_path(cfg, &route, cfg.host_routing, target).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let skip = is_hop_by_hop(name)
            || (name.eq_ignore_ascii_case(b"te")
                && !trim(h.value).eq_ignore_ascii_case(b"trailers"))
            || tokens.contains(name)
            || (cfg.x_forward
                && (name.eq_ignore_ascii_case(b"x-forwarded-for")
                    || name.eq_ignore_ascii_case(b"x-forwarded-port")
                    || name.eq_ignore_ascii_case(b"x-forwarded-proto")))
            || (cfg.change_origin && name.eq_ignore_ascii_case(b"host"))
            || cfg
                .custom_headers
                .iter()
                .any(|(n, _)| n.as_str().as_bytes().eq_ignore_ascii_case(name));
        if !skip {
            push_header(out, name, h.value);
        }
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if cfg.change_origin {
        push_header(out, b"host", route.target.authority.as_str().as_bytes());
    }
    if cfg.x_forward {
        // Appended to what the client sent, comma-joined, as http-proxy's `xfwd` does.
        let mut forwarded = |name: &[u8], old: Option<&[u8]>, v: &[u8]| {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            if let Some(old) = old.filter(|o| !o.is_empty()) {
                out.extend_from_slice(old);
                out.push(b',');
            }
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        };
        forwarded(b"x-forwarded-for", xff, info.remote_ip.as_bytes());
        forwarded(
            b"x-forwarded-port",
            xfport,
            info.forwarded_port(host).as_bytes(),
        );
        forwarded(b"x-forwarded-proto", xfproto, b"http");
        if !xfhost {
            push_header(out, b"x-forwarded-host", host.unwrap_or(b""));
        }
    }
    for (n, v) in &cfg.custom_headers {
        push_header(out, n.as_str().as_bytes(), v.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Plan::Forward {
        route,
        head_len,
        body,
        close,
        head_request,
    }
}

pub(super) struct ResponseHead {
    pub(super) head_len: usize,
    pub(super) status: u16,
    pub(super) body: Framing,
    /// The target keeps the connection open after this answer.
    pub(super) reusable: bool,
}

/// Write the client's response head for a target's answer into `out`; `None` for a 101.
pub(super) fn response_head(
    res: &httparse::Response<'_, '_>,
    head_len: usize,
    head_request: bool,
    client_close: bool,
    out: &mut Vec<u8>,
) -> Option<ResponseHead> {
    let code = res.code.unwrap_or(502);
    if code == 101 {
        return None;
    }
    let mut length: Option<u64> = None;
    let mut bad_length = false;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = res.version != Some(1);
    let mut tokens = ConnectionTokens::default();
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match (parse_length(h.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding decides: chunked framing, or else the body runs to the close.
            let last = h.value.rsplit(|&b| b == b',').next().map(trim);
            chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            other_coding = !chunked;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in h.value.split(|&b| b == b',').map(trim) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    // An HTTP/1.0 target that keeps its connection says so.
                    close &= res.version != Some(0);
                } else if !t.is_empty() {
                    // Too many to track: pass them on rather than guess.
                    let _ = tokens.push(t);
                }
            }
        }
    }
    let no_body = head_request || (100..200).contains(&code) || code == 204 || code == 304;
    let body = if no_body {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if other_coding || bad_length {
        Framing::UntilClose
    } else {
        match length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&itoa_u16(code).0);
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let skip = is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"te")
            || tokens.contains(name)
            || (bad_length && name.eq_ignore_ascii_case(b"content-length"))
            || (chunked && name.eq_ignore_ascii_case(b"content-length"));
        if !skip {
            push_header(out, name, h.value);
        }
    }
    if body == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if client_close || body == Framing::UntilClose {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(ResponseHead {
        head_len,
        status: code,
        body,
        reusable: !close && body != Framing::UntilClose,
    })
}

/// Three ASCII digits of a status code, without a formatter.
struct Code([u8; 3]);

fn itoa_u16(code: u16) -> Code {
    let c = code.min(999);
    Code([
        b'0' + (c / 100) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_as_digits() {
        assert_eq!(itoa_u16(200).0, *b"200");
        assert_eq!(itoa_u16(404).0, *b"404");
        assert_eq!(itoa_u16(1000).0, *b"999");
    }
}
