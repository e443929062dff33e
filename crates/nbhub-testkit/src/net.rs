//! Ports and polling: wait until something answers, with a deadline, never a fixed sleep.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, released).
///
/// Another process may take it before the caller binds it; prefer handing a bound listener to
/// in-process servers, and use this only for child processes that must be told a port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// The port of the first `host:PORT` in a line such as
/// `listening on http://127.0.0.1:43117/hub/` or `… on [::1]:8001` (what ready lines tell).
pub fn port_in_line(line: &str) -> Option<u16> {
    let mut in_brackets = false;
    for (i, c) in line.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ':' if !in_brackets => {
                let digits: String = line[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(port) = digits.parse() {
                    return Some(port);
                }
            }
            _ => {}
        }
    }
    None
}

/// Polls until a TCP connection to `addr` succeeds; panics after `timeout`.
pub async fn wait_for_tcp(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        let err = match TcpStream::connect(addr).await {
            Ok(_) => return,
            Err(e) => e,
        };
        if Instant::now() + pause > deadline {
            panic!(
                "nothing accepted TCP connections on {addr} within {timeout:?} (last error: {err})"
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Polls `url` (plain `http://` only) until it answers with a status below 500, the rule of
/// the hub's readiness probe (docs/wire.md#readiness-probe), and returns that response. Panics after `timeout`
/// with the last error or status.
pub async fn wait_for_http(url: &str, timeout: Duration) -> HttpResponse {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        let last = match http_get(url).await {
            Ok(resp) if resp.status < 500 => return resp,
            Ok(resp) => format!("status {}", resp.status),
            Err(e) => e.to_string(),
        };
        if Instant::now() + pause > deadline {
            panic!("{url} did not answer (< 500) within {timeout:?}; last: {last}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// A response read by [`http_get`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 `GET` (no redirects, `Connection: close`, 10 s limit), enough for
/// readiness checks without pulling an HTTP client into every test.
pub async fn http_get(url: &str) -> std::io::Result<HttpResponse> {
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid(format!("only http:// URLs are supported: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    let io = async {
        let mut stream = TcpStream::connect(authority).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "GET took over 10 s"))??;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed HTTP response from {url}"),
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A slow client, as in a slow-loris attack: connects to `addr`, sends `head`, then one byte
/// a second until the server ends the connection. Returns what the server sent and how long
/// after the head the connection ended; an error if it was still open after `give_up`.
pub async fn slow_request(
    addr: SocketAddr,
    head: &[u8],
    give_up: Duration,
) -> Result<(String, Duration), String> {
    let mut c = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    c.write_all(head)
        .await
        .map_err(|e| format!("send the head: {e}"))?;
    let start = Instant::now();
    let (mut got, mut chunk) = (Vec::new(), [0u8; 1024]);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let ended = tokio::time::timeout(give_up, async {
        loop {
            tokio::select! {
                r = c.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                },
                _ = tick.tick() => {
                    // The server may have closed its side already: the read says so.
                    let _ = c.write_all(b"a").await;
                }
            }
        }
    })
    .await;
    let got = String::from_utf8_lossy(&got).into_owned();
    match ended {
        Ok(()) => Ok((got, start.elapsed())),
        Err(_) => Err(format!("still open after {give_up:?}; received {got:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let resp = parse_response(raw).expect("parses");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, "abcde");
        assert_eq!(resp.header("x-a"), Some("b"));
    }

    #[test]
    fn finds_the_port_in_a_ready_line() {
        assert_eq!(
            port_in_line("listening on http://127.0.0.1:43117/hub/"),
            Some(43117)
        );
        assert_eq!(port_in_line("Listening on [::1]:8001 (pid 42)"), Some(8001));
        assert_eq!(port_in_line("no port here: none"), None);
    }

    #[test]
    fn parses_plain_response() {
        let resp = parse_response(b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
            .expect("parses");
        assert_eq!((resp.status, resp.body.as_str()), (404, "no"));
    }
}
