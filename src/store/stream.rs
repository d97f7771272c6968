//! Long answers read in bounded memory: a JSON array of stored document
//! texts, produced by a thread of its own that reads the rows on a pooled
//! read connection and hands them over in chunks of about `CHUNK_BYTES`
//! through a channel of `CHUNKS_AHEAD` chunks. Whatever the number of rows,
//! an answer holds at most that much; a reader that stops (the client went
//! away or stopped reading) stops the producer at its next chunk.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;

use super::{Store, StoreError};

/// Size a chunk is cut at (a single document may make one larger).
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks produced ahead of the reader.
const CHUNKS_AHEAD: usize = 4;

/// A row source for [`Store::stream_array`]: runs its query on `c` and
/// gives each row's document text to `emit`, stopping when `emit` answers
/// `false`.
pub type Rows =
    Box<dyn FnOnce(&Connection, &mut dyn FnMut(&str) -> bool) -> Result<(), StoreError> + Send>;

/// The text of a JSON array (or `prefix` + items + `suffix`), as a reader.
pub struct ArrayStream {
    chunks: Receiver<Result<Vec<u8>, StoreError>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for ArrayStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.at = 0;
                }
                // The answer was cut short: failing the read makes the
                // server close the connection rather than end the body as
                // if it were complete.
                Ok(Err(err)) => return Err(std::io::Error::other(err.to_string())),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Builds chunks from items and sends each when full; `false` once the
/// reader is gone.
struct Chunker {
    out: Sender<Result<Vec<u8>, StoreError>>,
    chunk: Vec<u8>,
    items: usize,
}

impl Chunker {
    fn push(&mut self, text: &[u8]) -> bool {
        self.chunk.extend_from_slice(text);
        if self.chunk.len() < CHUNK_BYTES {
            return true;
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_BYTES));
        self.out.send(Ok(full)).is_ok()
    }

    fn item(&mut self, doc: &str) -> bool {
        if self.items > 0 && !self.push(b",") {
            return false;
        }
        self.items += 1;
        self.push(doc.as_bytes())
    }
}

/// The documents `rows` gives (through the emitter it is handed) as the
/// text of a JSON array, built in memory; `None` as soon as it would pass
/// `max_bytes` (the caller streams such an answer instead).
pub(crate) fn array_text(
    max_bytes: usize,
    rows: impl FnOnce(&mut dyn FnMut(&str) -> bool) -> Result<(), StoreError>,
) -> Result<Option<String>, StoreError> {
    let mut out = String::from("[");
    let mut fits = true;
    rows(&mut |doc| {
        fits = out.len() + doc.len() < max_bytes;
        if fits {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(doc);
        }
        fits
    })?;
    out.push(']');
    Ok(fits.then_some(out))
}

impl Store {
    /// Streams `prefix`, the documents `rows` gives separated by commas,
    /// then `suffix`. A failure before the first row is returned here (so
    /// the caller can still answer with an error); a later one ends the
    /// stream with a read error.
    pub fn stream_array(
        self: &Arc<Self>,
        prefix: String,
        suffix: String,
        rows: Rows,
    ) -> Result<ArrayStream, StoreError> {
        let (out, chunks) = crossbeam_channel::bounded(CHUNKS_AHEAD);
        let (started, start) = crossbeam_channel::bounded::<Result<(), StoreError>>(1);
        let store = Arc::clone(self);
        std::thread::Builder::new()
            .name("kci-stream".into())
            .spawn(move || {
                // none free: refused at once (see MAX_STREAM_READERS)
                let Some(conn) = store.stream_readers.try_get() else {
                    let _ = started.send(Err(StoreError::Busy));
                    return;
                };
                let mut chunker = Chunker {
                    out,
                    chunk: Vec::with_capacity(CHUNK_BYTES),
                    items: 0,
                };
                chunker.chunk.extend_from_slice(prefix.as_bytes());
                let mut first = Some(started);
                let result = catch_unwind(AssertUnwindSafe(|| {
                    rows(&conn, &mut |doc| {
                        if let Some(started) = first.take() {
                            let _ = started.send(Ok(()));
                        }
                        chunker.item(doc)
                    })
                }))
                .unwrap_or_else(|_| Err(StoreError::Internal("a stream's query panicked".into())));
                match result {
                    Ok(()) => {
                        if let Some(started) = first.take() {
                            let _ = started.send(Ok(()));
                        }
                        chunker.chunk.extend_from_slice(suffix.as_bytes());
                        let last = std::mem::take(&mut chunker.chunk);
                        let _ = chunker.out.send(Ok(last));
                    }
                    Err(err) => match first.take() {
                        Some(started) => {
                            let _ = started.send(Err(err));
                        }
                        None => {
                            let _ = chunker.out.send(Err(err));
                        }
                    },
                }
            })
            .map_err(|e| StoreError::Internal(format!("cannot start a stream thread: {e}")))?;
        start
            .recv()
            .map_err(|_| StoreError::Internal("the stream thread ended early".into()))??;
        Ok(ArrayStream {
            chunks,
            current: Vec::new(),
            at: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_store;

    fn collect(mut stream: ArrayStream) -> std::io::Result<String> {
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    }

    fn numbers(n: usize) -> Rows {
        Box::new(move |_, emit| {
            for i in 0..n {
                if !emit(&format!("{{\"n\":{i}}}")) {
                    break;
                }
            }
            Ok(())
        })
    }

    #[test]
    fn streams_a_whole_array_in_chunks() {
        let (_dir, store) = temp_store();
        let store = Arc::new(store);
        let empty = store.stream_array("[".into(), "]".into(), numbers(0));
        assert_eq!(collect(empty.expect("stream")).expect("read"), "[]");
        let many = store.stream_array("{\"items\":[".into(), "]}".into(), numbers(20_000));
        let text = collect(many.expect("stream")).expect("read");
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let items = value["items"].as_array().expect("items");
        assert_eq!(items.len(), 20_000);
        assert_eq!(items[19_999]["n"], 19_999);
    }

    #[test]
    fn an_error_before_the_first_row_is_returned_and_a_later_one_fails_the_read() {
        let (_dir, store) = temp_store();
        let store = Arc::new(store);
        let early: Rows = Box::new(|_, _| Err(StoreError::Internal("no such table".into())));
        assert!(store.stream_array("[".into(), "]".into(), early).is_err());
        let late: Rows = Box::new(|_, emit| {
            for _ in 0..10_000 {
                emit("{\"x\":\"some document text\"}");
            }
            Err(StoreError::Internal("disk I/O error".into()))
        });
        let stream = store
            .stream_array("[".into(), "]".into(), late)
            .expect("started");
        assert!(collect(stream).is_err());
    }

    #[test]
    fn a_reader_that_goes_away_stops_the_producer() {
        let (_dir, store) = temp_store();
        let store = Arc::new(store);
        let (done, finished) = crossbeam_channel::bounded(1);
        let endless: Rows = Box::new(move |_, emit| {
            let mut sent = 0u64;
            while emit("{\"endless\":true}") {
                sent += 1;
            }
            let _ = done.send(sent);
            Ok(())
        });
        let mut stream = store
            .stream_array("[".into(), "]".into(), endless)
            .expect("started");
        let mut buf = [0u8; 100];
        stream.read_exact(&mut buf).expect("read a little");
        drop(stream);
        let sent = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the producer stopped");
        assert!(sent < 1_000_000, "{sent}");
    }
}
