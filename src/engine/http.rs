//! A raw HTTP/1.1 request as a rule author saves it (`phi-gateway scan --http FILE`, fixture
//! files): request line, headers, blank line, body. Parsing only — no sockets.

/// Why a raw request could not be parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpParseError {
    /// The request line is not `METHOD TARGET HTTP/1.x`.
    #[error("line 1: expected a request line `METHOD /path HTTP/1.1`")]
    RequestLine,
    /// A header line has no colon.
    #[error("line {line}: header line without `:`")]
    Header {
        /// 1-based line number.
        line: usize,
    },
    /// The chunked body is malformed.
    #[error("malformed chunked body")]
    Chunked,
    /// Content-Length is not a number or exceeds the data.
    #[error("invalid Content-Length")]
    ContentLength,
}

/// A parsed request. Header names are lowercased.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Method (`POST`).
    pub method: String,
    /// The URL path, still percent-encoded.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// Headers in order (lowercase name, raw value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body after undoing chunked framing (Content-Encoding is left to the engine).
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The first header of that (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Parses a request; accepts CRLF or bare LF line ends (files edited by hand).
pub fn parse_request(bytes: &[u8]) -> Result<RawRequest, HttpParseError> {
    let mut pos = 0;
    let mut line_no = 0;
    let next_line = |pos: &mut usize| -> Option<&[u8]> {
        let rest = bytes.get(*pos..)?;
        if rest.is_empty() {
            return None;
        }
        let nl = rest.iter().position(|b| *b == b'\n');
        let (line, adv) = match nl {
            Some(i) => (rest.get(..i)?, i + 1),
            None => (rest, rest.len()),
        };
        *pos += adv;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    };
    let request_line = next_line(&mut pos).ok_or(HttpParseError::RequestLine)?;
    line_no += 1;
    let rl = String::from_utf8_lossy(request_line);
    let mut parts = rl.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpParseError::RequestLine);
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Err(HttpParseError::RequestLine);
    }
    // Absolute-form targets: keep the path and query.
    let target = match target.find("://") {
        Some(i) => {
            let after = target.get(i + 3..).unwrap_or("");
            after
                .find('/')
                .map_or("/", |p| after.get(p..).unwrap_or("/"))
        }
        None => target,
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let mut headers = Vec::new();
    while let Some(line) = next_line(&mut pos) {
        line_no += 1;
        if line.is_empty() {
            break;
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or(HttpParseError::Header { line: line_no })?;
        let name = String::from_utf8_lossy(line.get(..colon).unwrap_or(&[]))
            .trim()
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(HttpParseError::Header { line: line_no });
        }
        let value = line.get(colon + 1..).unwrap_or(&[]);
        let value = value.trim_ascii().to_vec();
        headers.push((name, value));
    }
    let rest = bytes.get(pos..).unwrap_or(&[]);
    let mut req = RawRequest {
        method: method.to_string(),
        path,
        query,
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    req.body = if chunked {
        dechunk(rest)?
    } else if let Some(cl) = req.header("content-length") {
        let n: usize = cl
            .trim()
            .parse()
            .map_err(|_| HttpParseError::ContentLength)?;
        rest.get(..n).ok_or(HttpParseError::ContentLength)?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(req)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, HttpParseError> {
    let mut out = Vec::new();
    loop {
        let nl = data
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(HttpParseError::Chunked)?;
        let size_line = String::from_utf8_lossy(data.get(..nl).unwrap_or(&[]));
        let size_hex = size_line.trim().split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| HttpParseError::Chunked)?;
        data = data.get(nl + 1..).unwrap_or(&[]);
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or(HttpParseError::Chunked)?);
        data = data.get(size..).unwrap_or(&[]);
        data = data
            .strip_prefix(b"\r\n")
            .or_else(|| data.strip_prefix(b"\n"))
            .ok_or(HttpParseError::Chunked)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_headers_and_bodies() {
        let r = parse_request(
            b"POST /fhir/Patient?ssn=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\nabcdEXTRA",
        )
        .expect("parses");
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/fhir/Patient");
        assert_eq!(r.query.as_deref(), Some("ssn=1"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, b"abcd");
        let r = parse_request(
            b"POST http://h/x HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n2;x=y\nde\n0\n\n",
        )
        .expect("chunked");
        assert_eq!(r.path, "/x");
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            parse_request(b"nonsense"),
            Err(HttpParseError::RequestLine)
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\nno colon\n\n"),
            Err(HttpParseError::Header { line: 2 })
        ));
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\nzz\n"),
            Err(HttpParseError::Chunked)
        ));
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\nContent-Length: 99\n\nab"),
            Err(HttpParseError::ContentLength)
        ));
        assert!(parse_request(b"").is_err());
    }
}
