//! A batch's body: the stored events joined as they are, each with its id in front.

use super::super::event;
use crate::store::OutboxRow;

/// `{"events":[…]}`: the stored events, each with its id in front, joined as they are.
pub fn batch_body(key: &str, rows: &[OutboxRow]) -> String {
    batch_body_within(key, rows, usize::MAX).0
}

/// The body of the longest prefix of `rows` whose body is at most `max_bytes` long (at least one
/// row, whatever its size), and how many rows it holds.
pub fn batch_body_within(key: &str, rows: &[OutboxRow], max_bytes: usize) -> (String, usize) {
    const CLOSE: &str = "]}";
    let mut body = String::with_capacity(rows.iter().map(|r| r.body.len() + 48).sum::<usize>().min(max_bytes) + 16);
    body.push_str("{\"events\":[");
    let mut count = 0;
    for (i, row) in rows.iter().enumerate() {
        let before = body.len();
        if i > 0 {
            body.push(',');
        }
        event::with_id(key, row.n, &row.body, &mut body);
        if i > 0 && body.len() + CLOSE.len() > max_bytes {
            body.truncate(before);
            break;
        }
        count = i + 1;
    }
    body.push_str(CLOSE);
    (body, count)
}
