//! kci-lite patch: a strict reader of a chunked request body (RFC 9112
//! §7.1), in place of `chunked_transfer::Decoder`. Every line it reads is
//! bounded, anything malformed is an error, trailer fields are read and
//! dropped, and a body dropped before its end says so, so that the
//! connection is not read further: the bytes after the point where reading
//! stopped are body, not a next request.

use std::convert::TryFrom;
use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The longest chunk-size line (size and extensions) or trailer line, in
/// bytes, CRLF excluded.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// The most bytes of trailer fields, CRLFs included.
const MAX_TRAILER_BYTES: usize = 64 * 1024;

enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, with this many data bytes left.
    Data(u64),
    /// After the data of a chunk: its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then the blank line.
    Trailers,
    /// The whole body was read.
    Done,
    /// The body is malformed, or reading it failed.
    Failed,
}

/// A chunked body read from `source`, which it leaves just after the body.
pub struct ChunkedBody<R> {
    source: R,
    state: State,
    /// Set when the body is dropped before its end.
    unfinished: Arc<AtomicBool>,
}

fn malformed(what: &str) -> IoError {
    IoError::new(
        ErrorKind::InvalidData,
        format!("malformed chunked body: {what}"),
    )
}

impl<R: Read> ChunkedBody<R> {
    /// A body read from `source`; `unfinished` is set if it is dropped
    /// before its end (including after an error).
    pub fn new(source: R, unfinished: Arc<AtomicBool>) -> ChunkedBody<R> {
        ChunkedBody {
            source,
            state: State::Size,
            unfinished,
        }
    }

    fn byte(&mut self) -> IoResult<u8> {
        let mut byte = [0u8; 1];
        match self.source.read(&mut byte)? {
            0 => Err(IoError::new(
                ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            )),
            _ => Ok(byte[0]),
        }
    }

    /// One CRLF-terminated line of at most `limit` bytes, without its CRLF.
    fn line(&mut self, limit: usize) -> IoResult<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            match self.byte()? {
                b'\r' => {
                    return match self.byte()? {
                        b'\n' => Ok(line),
                        _ => Err(malformed("bare CR")),
                    }
                }
                b'\n' => return Err(malformed("bare LF")),
                _ if line.len() == limit => return Err(malformed("line too long")),
                byte => line.push(byte),
            }
        }
    }

    /// A chunk-size line: hex digits, then optional whitespace and
    /// extensions (which are ignored).
    fn chunk_size(&mut self) -> IoResult<u64> {
        let line = self.line(MAX_CHUNK_LINE_BYTES)?;
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let after = line[digits..].iter().find(|b| !matches!(b, b' ' | b'\t'));
        if digits == 0 || after.is_some_and(|b| *b != b';') {
            return Err(malformed("invalid chunk size"));
        }
        std::str::from_utf8(&line[..digits])
            .ok()
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| malformed("chunk size out of range"))
    }

    fn step(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Failed => return Err(malformed("read after an error")),
                State::Size => {
                    self.state = match self.chunk_size()? {
                        0 => State::Trailers,
                        size => State::Data(size),
                    }
                }
                State::Data(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let read = self.source.read(&mut buf[..want])?;
                    if read == 0 {
                        return Err(IoError::new(
                            ErrorKind::UnexpectedEof,
                            "connection closed inside a chunk",
                        ));
                    }
                    let left = left - read as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(read);
                }
                State::DataEnd => {
                    if self.byte()? != b'\r' || self.byte()? != b'\n' {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    self.state = State::Size;
                }
                State::Trailers => {
                    let mut total = 0;
                    loop {
                        let line = self.line(MAX_CHUNK_LINE_BYTES)?;
                        if line.is_empty() {
                            break;
                        }
                        total += line.len() + 2;
                        if total > MAX_TRAILER_BYTES {
                            return Err(malformed("trailer fields too large"));
                        }
                    }
                    self.state = State::Done;
                }
            }
        }
    }
}

impl<R: Read> Read for ChunkedBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let result = self.step(buf);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }
}

impl<R> Drop for ChunkedBody<R> {
    fn drop(&mut self) {
        if !matches!(self.state, State::Done) {
            self.unfinished.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkedBody;
    use std::io::{Cursor, Read};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Reads `input` as a chunked body: (body or error, rest of the input,
    /// whether the body was reported unfinished).
    fn decode(input: &str) -> (Result<String, String>, String, bool) {
        let flag = Arc::new(AtomicBool::new(false));
        let mut source = Cursor::new(input.as_bytes().to_vec());
        let mut body = String::new();
        let result = {
            let mut reader = ChunkedBody::new(&mut source, Arc::clone(&flag));
            reader
                .read_to_string(&mut body)
                .map(|_| body.clone())
                .map_err(|e| e.to_string())
        };
        let mut rest = String::new();
        source.read_to_string(&mut rest).unwrap();
        (result, rest, flag.load(Ordering::SeqCst))
    }

    #[test]
    fn reads_chunks_extensions_and_trailers() {
        let (body, rest, unfinished) = decode("5\r\nhello\r\n6;a=b \r\n world\r\n0\r\n\r\nNEXT");
        assert_eq!(body.unwrap(), "hello world");
        assert_eq!(rest, "NEXT");
        assert!(!unfinished);
        let (body, rest, _) = decode("A \t;x\r\n0123456789\r\n00\r\nX-T: 1\r\nY: 2\r\n\r\nNEXT");
        assert_eq!(body.unwrap(), "0123456789");
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn refuses_malformed_bodies() {
        for input in [
            "",
            "zz\r\n",
            "+5\r\nhello\r\n0\r\n\r\n",
            "0x5\r\nhello\r\n0\r\n\r\n",
            "5 5\r\nhello\r\n0\r\n\r\n",
            "5\nhello\r\n0\r\n\r\n",
            "5\r\nhelloXX0\r\n\r\n",
            "5\r\nhel",
            "0\r\nX-T: 1\r\n",
            "10000000000000000\r\n",
        ] {
            let (body, _, unfinished) = decode(input);
            assert!(body.is_err(), "{:?} gave {:?}", input, body);
            assert!(unfinished, "{:?}", input);
        }
        let long = format!("1{}\r\n", "0".repeat(super::MAX_CHUNK_LINE_BYTES));
        let (body, rest, _) = decode(&long);
        assert!(body.is_err());
        // reading stopped at the limit
        assert_eq!(rest, "\r\n");
    }

    #[test]
    fn a_body_dropped_before_its_end_is_unfinished() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut source = Cursor::new(b"5\r\nhello\r\n0\r\n\r\n".to_vec());
        let mut reader = ChunkedBody::new(&mut source, Arc::clone(&flag));
        let mut five = [0u8; 5];
        reader.read_exact(&mut five).unwrap();
        drop(reader);
        assert!(flag.load(Ordering::SeqCst));
    }
}
