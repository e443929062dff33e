//! Chunked framing (RFC 9112 §7.1) followed byte by byte over a body relayed raw: where it
//! ends, so that the connection can carry the next message; never decoded or re-encoded.

/// Follows chunked framing (RFC 9112 §7.1) over bytes relayed raw, to find where a body ends.
#[derive(Default)]
pub(super) struct ChunkedTracker {
    state: ChunkState,
    size: u64,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    SizeStart,
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    EndLf,
    Done,
}

impl ChunkedTracker {
    /// Consume `data`: `Some(n)` when the body ends after its first `n` bytes, `None` when it
    /// continues past them, `Err` on broken framing.
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        use ChunkState::*;
        let mut i = 0;
        while i < data.len() {
            if self.state == Done {
                return Ok(Some(i));
            }
            if self.state == Data {
                let take = self.size.min((data.len() - i) as u64);
                i += take as usize;
                self.size -= take;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (SizeStart, _) => {
                    self.size = hex(b).ok_or(())?;
                    Size
                }
                (Size, _) if hex(b).is_some() => {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(hex(b).unwrap_or(0)))
                        .ok_or(())?;
                    Size
                }
                (Size, b';' | b' ' | b'\t') => Extension,
                (Size | Extension, b'\r') => SizeLf,
                (Size | Extension | SizeLf, b'\n') => {
                    if self.size == 0 {
                        TrailerStart
                    } else {
                        Data
                    }
                }
                (Extension, _) => Extension,
                (DataCr, b'\r') => DataLf,
                (DataCr | DataLf, b'\n') => SizeStart,
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | EndLf, b'\n') => Done,
                (Trailer, b'\n') => TrailerStart,
                (TrailerStart | Trailer, _) => Trailer,
                _ => return Err(()),
            };
        }
        Ok((self.state == Done).then_some(i))
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(input: &[u8], step: usize) -> Result<Option<usize>, ()> {
        let mut t = ChunkedTracker::default();
        let mut off = 0;
        for piece in input.chunks(step) {
            if let Some(k) = t.feed(piece)? {
                return Ok(Some(off + k));
            }
            off += piece.len();
        }
        Ok(None)
    }

    #[test]
    fn chunked_framing_is_followed_in_any_split() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..body.len() {
            let mut input = body.to_vec();
            input.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(feed_all(&input, step), Ok(Some(body.len())), "step {step}");
        }
        assert_eq!(feed_all(b"0\r\n\r\n", 1), Ok(Some(5)));
        assert_eq!(feed_all(b"0\n\n", 1), Ok(Some(3)));
        assert_eq!(feed_all(b"5\r\nhel", 2), Ok(None));
        assert_eq!(feed_all(b"zz\r\n", 1), Err(()));
        assert_eq!(feed_all(b"5\r\nhelloXX", 3), Err(()));
        assert_eq!(feed_all(b"fffffffffffffffff\r\n", 4), Err(()));
    }
}
