//! Decoding what clients send in URLs and form bodies: path segments,
//! query strings and `application/x-www-form-urlencoded` (on the
//! `form_urlencoded` and `percent-encoding` crates), and the text fields of
//! `multipart/form-data`.

use percent_encoding::percent_decode_str;

/// Splits a path into percent-decoded, non-empty segments (`+` stays a
/// plus sign; invalid UTF-8 becomes replacement characters).
pub fn split_path(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// Parses `a=1&b=2` (urlencoded: `+` is a space; invalid escapes are kept
/// literally and invalid UTF-8 becomes replacement characters).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The `boundary` parameter of a multipart content type.
pub fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Text fields of a multipart/form-data body.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(&delimiter).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let name = head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            v.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
            })
        });
        if let Some(name) = name {
            fields.push((name, value.to_string()));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(query: &str) -> String {
        parse_query(query).pop().map(|(_, v)| v).unwrap_or_default()
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(value("x=a%20b+c"), "a b c");
        assert_eq!(split_path("/a+b"), ["a+b"]);
        assert_eq!(value("x=100%"), "100%");
        assert_eq!(value("x=%zz%4"), "%zz%4");
        assert_eq!(value("x=%ff"), "\u{fffd}");
        assert_eq!(split_path("/node/a%2Fb//c"), ["node", "a/b", "c"]);
    }

    #[test]
    fn multipart_fields() {
        let body = b"--xx\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nbob\r\n--xx\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\np w\r\n--xx--\r\n";
        assert_eq!(
            parse_multipart(body, "xx"),
            vec![
                ("username".to_string(), "bob".to_string()),
                ("password".to_string(), "p w".to_string())
            ]
        );
    }
}
