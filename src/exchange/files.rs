//! Reading `mongoexport` files: one JSON document per line, or one JSON
//! array of documents (`--jsonArray`), each with the line it starts on so
//! that an error can say where to look.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

/// A document of a file, or why one could not be read; `line` counts from 1.
pub type Item = Result<(usize, Value), (usize, String)>;

/// The documents of the file at `path`, in order, with bytes read so far
/// (for progress). A file starting with `[` is read as one array (in
/// memory); any other is read line by line.
pub struct Documents {
    source: Source,
    /// Bytes consumed so far.
    pub bytes: u64,
}

enum Source {
    Lines {
        reader: BufReader<File>,
        line: usize,
    },
    Array {
        text: Vec<u8>,
        at: usize,
        line: usize,
        done: bool,
    },
}

impl Documents {
    /// Opens `path`.
    pub fn open(path: &Path) -> std::io::Result<Documents> {
        let mut reader = BufReader::new(File::open(path)?);
        let first = loop {
            let buf = reader.fill_buf()?;
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => break Some(buf[i]),
                None if buf.is_empty() => break None,
                None => {
                    let n = buf.len();
                    reader.consume(n);
                }
            }
        };
        let source = if first == Some(b'[') {
            // whitespace consumed before the `[` only holds no newlines if
            // it was all on line 1; read from the start to count them
            let mut text = Vec::new();
            File::open(path)?.read_to_end(&mut text)?;
            let at = text.iter().position(|b| *b == b'[').unwrap_or(0);
            let line = 1 + text[..at].iter().filter(|b| **b == b'\n').count();
            Source::Array {
                text,
                at: at + 1,
                line,
                done: false,
            }
        } else {
            let reader = BufReader::new(File::open(path)?);
            Source::Lines { reader, line: 0 }
        };
        Ok(Documents { source, bytes: 0 })
    }
}

impl Iterator for Documents {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        match &mut self.source {
            Source::Lines { reader, line } => loop {
                let mut text = String::new();
                *line += 1;
                match reader.read_line(&mut text) {
                    Ok(0) => return None,
                    Ok(n) => self.bytes += n as u64,
                    Err(e) => return Some(Err((*line, format!("cannot read: {e}")))),
                }
                if text.trim().is_empty() {
                    continue;
                }
                return Some(
                    serde_json::from_str(&text)
                        .map(|v| (*line, v))
                        .map_err(|e| (*line, format!("not JSON: {e}"))),
                );
            },
            Source::Array {
                text,
                at,
                line,
                done,
            } => {
                if *done {
                    return None;
                }
                // skip white space and the comma between documents
                let mut seen_comma = false;
                while let Some(&b) = text.get(*at) {
                    match b {
                        b'\n' => *line += 1,
                        b' ' | b'\t' | b'\r' => {}
                        b',' if !seen_comma => seen_comma = true,
                        _ => break,
                    }
                    *at += 1;
                }
                self.bytes = *at as u64;
                match text.get(*at) {
                    None => {
                        *done = true;
                        Some(Err((*line, "the JSON array is not closed".into())))
                    }
                    Some(b']') => {
                        *done = true;
                        None
                    }
                    Some(_) => {
                        let start = *line;
                        let mut one =
                            serde_json::Deserializer::from_slice(&text[*at..]).into_iter::<Value>();
                        match one
                            .next()
                            .unwrap_or_else(|| Err(serde::de::Error::custom("EOF")))
                        {
                            Ok(value) => {
                                let end = *at + one.byte_offset();
                                *line += text[*at..end].iter().filter(|b| **b == b'\n').count();
                                *at = end;
                                Some(Ok((start, value)))
                            }
                            Err(e) => {
                                *done = true;
                                Some(Err((start, format!("not JSON: {e}"))))
                            }
                        }
                    }
                }
            }
        }
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
    fn broken_documents_say_where_they_start() {
        let lines = read("{\"a\": 1}\n{\"a\": \n");
        assert_eq!(lines[1].as_ref().expect_err("broken").0, 2);
        let array = read("[{\"a\": 1},\n {\"a\":\n 2,,}]");
        assert_eq!(array[1].as_ref().expect_err("broken").0, 2);
        let open = read("[{\"a\": 1},\n");
        assert!(open[1].is_err());
    }
}
