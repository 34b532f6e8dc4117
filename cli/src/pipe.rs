//! `roomcast pipe`: stdin lines to stored messages in batches. Each message is one batch,
//! `{"lines":[…]}` (what `npm run demo:logs` and the log tail demo use). One batch is in flight at
//! a time, so batches are stored in the order read; a full pipeline blocks the reader (and so the
//! writer upstream) instead of dropping lines. Across a restart of the edge a batch in flight is
//! sent again with the same message id (the client machine's queue over a socket, the batch's
//! own id over HTTP), so the room stores it once.

use serde_json::Value;

/// The envelope around the lines: `{"lines":[` and `]}`.
const ENVELOPE: usize = 12;

/// Lines gathered into one message's data, at most `max_bytes` of JSON.
pub struct Batcher {
    lines: Vec<String>,
    bytes: usize,
    max_bytes: usize,
}

/// A line that alone is larger than a message may be.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLong {
    pub bytes: usize,
}

impl Batcher {
    pub fn new(max_bytes: usize) -> Batcher {
        Batcher { lines: Vec::new(), bytes: ENVELOPE, max_bytes }
    }

    /// Adds a line. When it does not fit the batch, the batch so far comes back (to send) and the
    /// line starts the next one; a line that fits no batch is refused.
    pub fn push(&mut self, line: String) -> Result<Option<String>, TooLong> {
        let size = Value::String(line).to_string();
        let cost = size.len() + 1;
        if ENVELOPE + cost > self.max_bytes {
            return Err(TooLong { bytes: size.len() });
        }
        let full = if self.bytes + cost > self.max_bytes { self.take() } else { None };
        self.bytes += cost;
        self.lines.push(size);
        Ok(full)
    }

    /// How many lines the batch holds.
    pub fn count(&self) -> usize {
        self.lines.len()
    }

    /// The batch as a message's data (`{"lines":[…]}`), and a new empty batch; `None` if empty.
    pub fn take(&mut self) -> Option<String> {
        if self.lines.is_empty() {
            return None;
        }
        let data = format!(r#"{{"lines":[{}]}}"#, self.lines.join(","));
        self.lines.clear();
        self.bytes = ENVELOPE;
        Some(data)
    }
}

/// The lines a message's data holds when it is a pipe batch (`{"lines":[strings]}`, nothing
/// else), so `tail` prints them back as lines.
pub fn batch_lines(data: &Value) -> Option<Vec<&str>> {
    let obj = data.as_object().filter(|o| o.len() == 1)?;
    obj.get("lines")?.as_array()?.iter().map(Value::as_str).collect()
}

/// Strips a line's terminator (`\n` or `\r\n`).
pub fn trim_eol(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
        if let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batches_hold_whole_lines_up_to_the_byte_limit_and_keep_their_order() {
        let mut b = Batcher::new(40);
        let mut sent = Vec::new();
        for i in 0..10 {
            if let Some(batch) = b.push(format!("line {i}")).unwrap() {
                assert!(batch.len() <= 40, "{batch}");
                sent.push(batch);
            }
        }
        sent.extend(b.take());
        assert!(b.take().is_none() && b.count() == 0);
        let lines: Vec<String> = sent
            .iter()
            .flat_map(|s| batch_lines(&serde_json::from_str(s).unwrap()).unwrap().into_iter().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        assert_eq!(lines, (0..10).map(|i| format!("line {i}")).collect::<Vec<_>>());
        assert!(sent.len() > 2, "the limit split them: {sent:?}");
    }

    #[test]
    fn escapes_count_toward_the_limit_and_a_line_too_long_is_refused() {
        let mut b = Batcher::new(40);
        assert_eq!(b.push("\"\"\"\"\"\"\"\"".to_owned()).unwrap(), None); // 18 bytes escaped: 12 + 19
        assert_eq!(b.count(), 1);
        assert!(b.push("1234567".to_owned()).unwrap().is_some(), "escaped quotes filled the batch: 31 + 10 > 40");
        assert_eq!(b.push("x".repeat(30)), Err(TooLong { bytes: 32 }));
        assert_eq!(b.count(), 1, "the refused line is not in the batch");
    }

    #[test]
    fn only_a_pipe_batch_reads_as_lines() {
        assert_eq!(batch_lines(&json!({"lines":["a","b"]})), Some(vec!["a", "b"]));
        assert_eq!(batch_lines(&json!({"lines":["a",1]})), None);
        assert_eq!(batch_lines(&json!({"lines":["a"],"level":"x"})), None);
        assert_eq!(batch_lines(&json!(["a"])), None);
    }

    #[test]
    fn line_ends_are_stripped_once() {
        assert_eq!(trim_eol(b"a\r\n"), b"a");
        assert_eq!(trim_eol(b"a\n"), b"a");
        assert_eq!(trim_eol(b"a"), b"a");
        assert_eq!(trim_eol(b"a\r"), b"a\r");
    }
}
