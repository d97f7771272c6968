//! Reading `mongoexport` files: one JSON document per line, or one JSON
//! array of documents (`--jsonArray`), each with the line it starts on so
//! that an error can say where to look. Both are read one document at a
//! time, so memory grows with the largest document, not with the file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

/// A document of a file, or why one could not be read; `line` counts from 1.
pub type Item = Result<(usize, Value), (usize, String)>;

/// The largest document read (MongoDB's own limit is 16 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// The documents of the file at `path`, in order, with bytes read so far
/// (for progress). A file starting with `[` is read as one array, element
/// by element; any other is read line by line.
pub struct Documents {
    reader: BufReader<File>,
    /// Inside a JSON array (`--jsonArray`), else one document per line.
    array: bool,
    /// The line the reader is on.
    line: usize,
    /// An array element was read: the next one follows a comma.
    after_element: bool,
    done: bool,
    /// The largest document read ([`MAX_DOCUMENT_BYTES`]).
    max_document: usize,
    /// Bytes consumed so far.
    pub bytes: u64,
}

impl Documents {
    /// Opens `path`.
    pub fn open(path: &Path) -> std::io::Result<Documents> {
        let mut docs = Documents {
            reader: BufReader::new(File::open(path)?),
            array: false,
            line: 1,
            after_element: false,
            done: false,
            max_document: MAX_DOCUMENT_BYTES,
            bytes: 0,
        };
        if docs.skip_blank(false)?.0 == Some(b'[') {
            docs.consume(1);
            docs.array = true;
        } else {
            // read line by line from the start
            docs = Documents {
                reader: BufReader::new(File::open(path)?),
                line: 0,
                ..docs
            };
        }
        Ok(docs)
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.bytes += n as u64;
    }

    /// Skips white space (and, with `comma`, one comma) counting lines;
    /// the next byte (`None` at the end of the file) and whether a comma
    /// was skipped.
    fn skip_blank(&mut self, comma: bool) -> std::io::Result<(Option<u8>, bool)> {
        let mut seen_comma = !comma;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok((None, seen_comma && comma));
            }
            let mut used = 0;
            let mut next = None;
            for &b in buf {
                match b {
                    b'\n' => self.line += 1,
                    b' ' | b'\t' | b'\r' => {}
                    b',' if !seen_comma => seen_comma = true,
                    _ => {
                        next = Some(b);
                        break;
                    }
                }
                used += 1;
            }
            self.consume(used);
            if next.is_some() {
                return Ok((next, seen_comma && comma));
            }
        }
    }

    /// The bytes of the array element that starts here: up to the end of
    /// its object, array or string, or of a bare value at `,`, `]` or
    /// white space outside strings.
    fn element(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        loop {
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| format!("cannot read: {e}"))?;
            if buf.is_empty() {
                return Ok(out);
            }
            let mut used = 0;
            let mut complete = false;
            for &b in buf {
                if in_string {
                    match (escaped, b) {
                        (true, _) => escaped = false,
                        (false, b'\\') => escaped = true,
                        (false, b'"') => in_string = false,
                        _ => {}
                    }
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' if depth > 0 => depth -= 1,
                        b',' | b']' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => {
                            complete = true;
                            break;
                        }
                        _ => {}
                    }
                }
                used += 1;
                if depth == 0 && !in_string && matches!(b, b'}' | b']' | b'"') {
                    complete = true;
                    break;
                }
            }
            out.extend_from_slice(&buf[..used]);
            let lines = buf[..used].iter().filter(|b| **b == b'\n').count();
            self.consume(used);
            self.line += lines;
            if out.len() > self.max_document {
                let max = self.max_document;
                return Err(format!("a document is larger than {max} bytes"));
            }
            if complete {
                return Ok(out);
            }
        }
    }

    fn next_line(&mut self) -> Option<Item> {
        loop {
            let mut text = String::new();
            self.line += 1;
            let mut limited = (&mut self.reader).take(self.max_document as u64 + 1);
            match limited.read_line(&mut text) {
                Ok(0) => return None,
                Ok(n) => self.bytes += n as u64,
                Err(e) => return Some(Err((self.line, format!("cannot read: {e}")))),
            }
            if text.len() > self.max_document {
                // the rest of the line is not read: nothing after it is
                self.done = true;
                let max = self.max_document;
                return Some(Err((
                    self.line,
                    format!("a document is larger than {max} bytes"),
                )));
            }
            if text.trim().is_empty() {
                continue;
            }
            return Some(
                serde_json::from_str(&text)
                    .map(|v| (self.line, v))
                    .map_err(|e| (self.line, format!("not JSON: {e}"))),
            );
        }
    }

    fn next_element(&mut self) -> Option<Item> {
        let (next, comma) = match self.skip_blank(self.after_element) {
            Ok(found) => found,
            Err(e) => return Some(Err((self.line, format!("cannot read: {e}")))),
        };
        let start = self.line;
        match next {
            None => Some(Err((start, "the JSON array is not closed".into()))),
            Some(b']') if comma => Some(Err((start, "a `,` before the array's `]`".into()))),
            Some(b']') => None,
            Some(_) if self.after_element && !comma => {
                Some(Err((start, "expected `,` or `]` after a document".into())))
            }
            Some(_) => Some({
                self.after_element = true;
                self.element()
                    .and_then(|bytes| {
                        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
                    })
                    .map(|v| (start, v))
                    .map_err(|e| (start, e))
            }),
        }
    }
}

impl Iterator for Documents {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        let item = if self.array {
            self.next_element()
        } else {
            self.next_line()
        };
        if !matches!(item, Some(Ok(_))) {
            self.done = self.done || self.array || item.is_none();
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Item> {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f.json");
        std::fs::write(&path, text).expect("write");
        Documents::open(&path).expect("open").collect()
    }

    #[test]
    fn lines_and_arrays_give_documents_with_their_first_line() {
        let lines = read("{\"a\": 1}\n\n{\"a\": 2}\n");
        let got: Vec<(usize, i64)> = lines
            .into_iter()
            .map(|i| {
                let (n, v) = i.expect("doc");
                (n, v["a"].as_i64().expect("a"))
            })
            .collect();
        assert_eq!(got, [(1, 1), (3, 2)]);
        let array = read("\n[\n  {\n    \"a\": 1\n  },\n  {\"a\": 2}\n]\n");
        let got: Vec<usize> = array.into_iter().map(|i| i.expect("doc").0).collect();
        assert_eq!(got, [3, 6]);
        assert!(read("[]").is_empty());
        assert!(read("").is_empty());
    }

    #[test]
    fn array_elements_of_any_kind_and_layout_are_read_one_by_one() {
        let docs = read("[1,\"a]\\\"b\",{\"s\": \"}]\"},[[2]] , null ,{}]");
        let got: Vec<Value> = docs.into_iter().map(|i| i.expect("doc").1).collect();
        assert_eq!(
            got,
            [
                serde_json::json!(1),
                serde_json::json!("a]\"b"),
                serde_json::json!({"s": "}]"}),
                serde_json::json!([[2]]),
                Value::Null,
                serde_json::json!({})
            ]
        );
        let text = format!("[{}]", "{\"k\": 1},\n".repeat(20_000) + "{}");
        assert_eq!(read(&text).len(), 20_001);
        assert!(read("[,{}]")[0].is_err());
        assert!(read("[{}{}]")[1].is_err());
        assert!(read("[{},]").len() == 2 && read("[{},]")[1].is_err());
    }

    #[test]
    fn a_document_over_the_size_limit_ends_the_file_with_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        for (name, text) in [
            (
                "lines.json",
                "{\"a\": 1}\n{\"b\": \"0123456789\"}\n{\"c\": 3}\n",
            ),
            (
                "array.json",
                "[{\"a\": 1},\n{\"b\": \"0123456789\"},\n{\"c\": 3}]",
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            let mut docs = Documents::open(&path).expect("open");
            docs.max_document = 12;
            let got: Vec<Item> = docs.collect();
            assert_eq!(got.len(), 2, "{name}: {got:?}");
            assert!(got[0].is_ok());
            let (line, why) = got[1].as_ref().expect_err("too large");
            assert_eq!(
                (*line, why.as_str()),
                (2, "a document is larger than 12 bytes"),
                "{name}"
            );
        }
    }

    #[test]
    fn broken_documents_say_where_they_start() {
        let lines = read("{\"a\": 1}\n{\"a\": \n");
        assert_eq!(lines[1].as_ref().expect_err("broken").0, 2);
        let array = read("[{\"a\": 1},\n {\"a\":\n 2,,}]");
        assert_eq!(array[1].as_ref().expect_err("broken").0, 2);
        let open = read("[{\"a\": 1},\n");
        assert!(open[1].is_err());
    }
}
