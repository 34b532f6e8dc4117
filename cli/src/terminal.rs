//! `roomcast terminal ROOM -- CMD`: runs CMD in a pseudo-terminal and shares it through the room.
//!
//! Everything the command prints goes to the room as stored messages, in order; a terminal
//! emulator (`vt100`) follows the same bytes, so the agent can also publish **keyframes**, the
//! whole current screen, every `--keyframe-ms` while the screen changes, when a new member joins,
//! and after a resize. A viewer draws the newest keyframe and then the output after it, so a late
//! joiner sees the current screen at once, not the whole scroll-back. Viewers whose token holds
//! the `input` right type into it with `input` frames addressed to this agent's client id (the
//! room refuses them from anyone else); `{"resize":[rows,cols]}` resizes it.
//!
//! The stored messages (docs/CLI.md, *terminal*):
//! `{"term":"k","rows":R,"cols":C,"screen":ANSI,"text":PLAIN}` a keyframe,
//! `{"term":"o","d":TEXT}` output, `{"term":"x","code":N}` the command exited.

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Output waits this long for more before it goes, so a burst becomes one message.
const OUTPUT_DELAY: Duration = Duration::from_millis(30);
/// The most output bytes in one message: escaped as JSON (a control byte takes 6), it stays under
/// the room's 64 KiB frame limit.
const OUTPUT_MAX: usize = 8 * 1024;
/// At most one keyframe for new members this often, however many join: each is the whole screen
/// (33 KB for a colourful 24 x 80 one), stored and sent to every viewer, and comes out of the
/// agent's own byte rate (256 KiB/s by default), ahead of the command's output.
const JOIN_KEYFRAME_GAP: Duration = Duration::from_secs(1);
/// The largest size a viewer may ask for.
const MAX_ROWS: u64 = 200;
const MAX_COLS: u64 = 400;

/// Output bytes that are whole UTF-8 text, and the start of a character cut at the end (kept
/// for the next chunk). Bytes that are no UTF-8 at all become U+FFFD.
pub fn split_utf8(bytes: &[u8]) -> (String, Vec<u8>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), Vec::new()),
        Err(e) if e.error_len().is_none() => {
            let (done, rest) = bytes.split_at(e.valid_up_to());
            (String::from_utf8_lossy(done).into_owned(), rest.to_vec())
        }
        Err(_) => {
            // Something invalid inside: keep a cut character at the very end for the next chunk.
            let cut =
                (1..=3.min(bytes.len())).find(|&n| std::str::from_utf8(&bytes[bytes.len() - n..]).is_err_and(|e| e.error_len().is_none()));
            let (done, rest) = bytes.split_at(bytes.len() - cut.unwrap_or(0));
            (String::from_utf8_lossy(done).into_owned(), rest.to_vec())
        }
    }
}

/// The most JSON a keyframe may take and still fit the room's 64 KiB frame with the message's
/// envelope (seq, ids, user, timestamp) around it.
const KEYFRAME_MAX_JSON: usize = 60 * 1024;

/// A keyframe of the emulator's screen. The plain `text` is a convenience (`screen` alone redraws
/// it): it is left out when the keyframe would not fit a frame with it, which doubles the screen
/// sizes whose keyframes reach viewers (a full 100 x 400 screen of plain text). One still over is
/// refused by the room and skipped (see `run`).
pub fn keyframe(parser: &vt100::Parser) -> Value {
    let screen = parser.screen();
    let (rows, cols) = screen.size();
    let mut k = json!({
        "term": "k",
        "rows": rows,
        "cols": cols,
        "screen": String::from_utf8_lossy(&screen.state_formatted()),
        "text": screen.contents(),
    });
    if k.to_string().len() > KEYFRAME_MAX_JSON {
        if let Some(fields) = k.as_object_mut() {
            fields.remove("text");
        }
    }
    k
}

/// When the keyframe for new members goes: at once after a join, unless a keyframe went less
/// than the gap ago; then once at the gap's end, for everyone who joined meanwhile. Any member,
/// even an anonymous one in a room that admits them, makes a join, so one keyframe per join let
/// a stream of joiners fill the room's history and starve the command's output.
#[derive(Debug)]
pub struct JoinKeyframes {
    gap: Duration,
    last: Option<Instant>,
    due: Option<Instant>,
}

impl JoinKeyframes {
    pub fn new(gap: Duration) -> Self {
        JoinKeyframes { gap, last: None, due: None }
    }

    /// Someone joined at `now`.
    pub fn joined(&mut self, now: Instant) {
        if self.due.is_none() {
            self.due = Some(self.last.map_or(now, |last| (last + self.gap).max(now)));
        }
    }

    /// When the keyframe new members wait for is due.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// A keyframe went at `now` (for whatever reason): everyone who joined before has it.
    pub fn sent(&mut self, now: Instant) {
        self.last = Some(now);
        self.due = None;
    }
}

/// How many viewers' `keys` may wait for a command that is not reading its input.
const KEYS_WAITING: usize = 64;

/// The pty's input, written on a thread of its own: a write to a pty whose command stopped reading
/// blocks once the pty's buffer is full (a few KiB), and written from the loop it stopped
/// everything, the output, the keyframes and the room's events, until the command read again.
pub struct Keys(std::sync::mpsc::SyncSender<String>);

impl Keys {
    pub fn start(mut writer: Box<dyn Write + Send>) -> Keys {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(KEYS_WAITING);
        std::thread::spawn(move || {
            while let Ok(keys) = rx.recv() {
                if writer.write_all(keys.as_bytes()).and_then(|()| writer.flush()).is_err() {
                    break;
                }
            }
        });
        Keys(tx)
    }

    /// Hands `keys` to the writer without waiting; false when they were dropped (too many wait).
    pub fn send(&self, keys: String) -> bool {
        self.0.try_send(keys).is_ok()
    }
}

/// What a viewer asked: keys to type, or a new size.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Keys(String),
    Resize(u16, u16),
}

pub fn read_input(data: &Value) -> Option<Input> {
    if let Some(keys) = data.get("keys").and_then(Value::as_str) {
        return Some(Input::Keys(keys.to_owned()));
    }
    let size = data.get("resize")?.as_array()?;
    // At most 200 x 400: a keyframe of the whole screen must fit one message.
    let n = |i: usize, max: u64| size.get(i).and_then(Value::as_u64).filter(|n| (1..=max).contains(n)).map(|n| n as u16);
    Some(Input::Resize(n(0, MAX_ROWS)?, n(1, MAX_COLS)?))
}

/// Runs the command shared into `room` until it exits; its exit code.
pub async fn run(
    room: roomcast_client::Room,
    mut events: roomcast_client::Events,
    rows: u16,
    cols: u16,
    keyframe_every: Duration,
    command: &[String],
) -> Result<u32, String> {
    let size = PtySize { rows, cols, pixel_width: 0, pixel_height: 0 };
    let pair = native_pty_system().openpty(size).map_err(|e| format!("no pseudo-terminal: {e}"))?;
    let mut cmd = CommandBuilder::new(&command[0]);
    cmd.args(&command[1..]);
    if let Ok(dir) = std::env::current_dir() {
        cmd.cwd(dir);
    }
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd).map_err(|e| format!("cannot run {}: {e}", command[0]))?;
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().map_err(|e| e.to_string())?;
    let keys_to_pty = Keys::start(pair.master.take_writer().map_err(|e| e.to_string())?);

    // The pty is read on a thread of its own; a full channel stops it reading (backpressure).
    let (bytes_tx, mut bytes_rx) = mpsc::channel::<Vec<u8>>(64);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || bytes_tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    // Messages go out one at a time, in order, through their own task.
    let (out_tx, mut out_rx) = mpsc::channel::<Value>(64);
    let publisher = {
        let room = room.clone();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let mut wait = Duration::from_millis(100);
                loop {
                    match room.publish(&m).await {
                        Ok(_) => break,
                        Err(e) if matches!(e.code(), Some("rate_limited" | "backpressure" | "storage" | "queue_full")) => {
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(5));
                        }
                        // A keyframe of a large, busy screen over the room's frame limit: viewers
                        // catch up at the next one; the terminal goes on.
                        Err(e) if e.code() == Some("too_large") => {
                            eprintln!("roomcast: a {} message was over the room's limit and was not sent ({e})", m["term"]);
                            break;
                        }
                        Err(e) => return Err(format!("publish refused: {e}")),
                    }
                }
            }
            Ok(())
        })
    };
    let send = |m: Value| {
        let tx = out_tx.clone();
        async move { tx.send(m).await.map_err(|_| "the room stopped taking messages".to_owned()) }
    };

    let mut parser = vt100::Parser::new(rows, cols, 0);
    let mut pending: Vec<u8> = Vec::new();
    let mut flush_at: Option<Instant> = None;
    let mut dirty = true;
    let mut next_keyframe = Instant::now() + keyframe_every;
    let mut joins = JoinKeyframes::new(JOIN_KEYFRAME_GAP);
    send(keyframe(&parser)).await?;
    joins.sent(Instant::now());
    loop {
        tokio::select! {
            chunk = bytes_rx.recv() => match chunk {
                Some(bytes) => {
                    parser.process(&bytes);
                    pending.extend_from_slice(&bytes);
                    dirty = true;
                    if pending.len() >= OUTPUT_MAX {
                        flush(&mut pending, &send).await?;
                        flush_at = None;
                    } else {
                        flush_at.get_or_insert_with(|| Instant::now() + OUTPUT_DELAY);
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep_until(flush_at.unwrap_or_else(far)), if flush_at.is_some() => {
                flush(&mut pending, &send).await?;
                flush_at = None;
            }
            _ = tokio::time::sleep_until(next_keyframe) => {
                if dirty {
                    flush(&mut pending, &send).await?;
                    flush_at = None;
                    send(keyframe(&parser)).await?;
                    joins.sent(Instant::now());
                    dirty = false;
                }
                next_keyframe = Instant::now() + keyframe_every;
            }
            // Someone new is watching: the current screen.
            _ = tokio::time::sleep_until(joins.due().unwrap_or_else(far)), if joins.due().is_some() => {
                flush(&mut pending, &send).await?;
                flush_at = None;
                send(keyframe(&parser)).await?;
                joins.sent(Instant::now());
                dirty = false;
            }
            event = events.recv() => match event {
                Some(roomcast_client::Event::Input(i)) => match read_input(&i.data) {
                    Some(Input::Keys(keys)) => {
                        if !keys_to_pty.send(keys) {
                            eprintln!("roomcast: the command is not reading its input; keys from {} dropped", i.from);
                        }
                    }
                    Some(Input::Resize(r, c)) => {
                        let _ = pair.master.resize(PtySize { rows: r, cols: c, pixel_width: 0, pixel_height: 0 });
                        flush(&mut pending, &send).await?;
                        flush_at = None;
                        parser.screen_mut().set_size(r, c);
                        send(keyframe(&parser)).await?;
                        joins.sent(Instant::now());
                    }
                    None => eprintln!("roomcast: input from {} not understood: {}", i.from, i.data),
                },
                // Someone new is watching: the current screen, at once or at the gap's end.
                Some(roomcast_client::Event::Presence(p)) if p.event == "join" => joins.joined(Instant::now()),
                Some(roomcast_client::Event::Status(s)) if s.state == roomcast_client::State::Closed => {
                    let _ = child.kill();
                    return Err(format!("closed: {} {}", s.code, s.reason));
                }
                Some(roomcast_client::Event::Status(s)) if s.state == roomcast_client::State::Reconnecting => {
                    eprintln!("roomcast: reconnecting in {:.1} s ({} {})", s.delay_ms as f64 / 1000.0, s.code, s.reason);
                }
                Some(_) => {}
                None => {
                    let _ = child.kill();
                    return Err("the connection ended".to_owned());
                }
            },
        }
    }
    // The command's output ended: the rest, the final screen, and how it exited.
    flush(&mut pending, &send).await?;
    if !pending.is_empty() {
        send(json!({"term": "o", "d": String::from_utf8_lossy(&pending)})).await?;
    }
    send(keyframe(&parser)).await?;
    let code = tokio::task::spawn_blocking(move || child.wait()).await.map_err(|e| e.to_string())?.map_or(1, |s| s.exit_code());
    send(json!({"term": "x", "code": code})).await?;
    drop(out_tx);
    publisher.await.map_err(|e| e.to_string())??;
    room.close();
    Ok(code)
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// Sends the pending output (whole characters; a cut one waits for its rest).
async fn flush<F, Fut>(pending: &mut Vec<u8>, send: &F) -> Result<(), String>
where
    F: Fn(Value) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    for m in output_messages(pending) {
        send(m).await?;
    }
    Ok(())
}

/// The output messages for the pending bytes (whole characters; a cut one stays pending), each
/// of at most `OUTPUT_MAX` bytes of text: what the pty gave since the last flush may be more
/// (the loop flushes once `OUTPUT_MAX` is reached, after a read of up to 8 KiB), and one message
/// of it all, escaped as JSON, could be over the room's frame limit and then never sent.
pub fn output_messages(pending: &mut Vec<u8>) -> Vec<Value> {
    if pending.is_empty() {
        return Vec::new();
    }
    let (text, rest) = split_utf8(pending);
    *pending = rest;
    let mut out = Vec::new();
    let mut text = text.as_str();
    while !text.is_empty() {
        let mut end = text.len().min(OUTPUT_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        out.push(json!({"term": "o", "d": &text[..end]}));
        text = &text[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_between_characters_never_inside_one() {
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(split_utf8(b"ab"), ("ab".to_owned(), vec![]));
        assert_eq!(split_utf8(&[b"a", &euro[..2]].concat()), ("a".to_owned(), euro[..2].to_vec()));
        let (text, rest) = split_utf8(&[&[0xff][..], b"x", &euro[..1]].concat());
        assert_eq!((text.as_str(), rest), ("\u{fffd}x", euro[..1].to_vec()));
    }

    #[test]
    fn output_messages_fit_a_frame_whatever_the_pty_printed() {
        // The most the loop holds before a flush: just under OUTPUT_MAX, then one more read.
        for fill in [&b"\x01"[..], b"\xff", "\u{20ac}".as_bytes(), b"x"] {
            let mut pending: Vec<u8> = fill.iter().copied().cycle().take(OUTPUT_MAX - 1 + 8192).collect();
            pending.extend_from_slice(&"\u{20ac}".as_bytes()[..2]);
            let all = pending.clone();
            let messages = output_messages(&mut pending);
            assert_eq!(pending, "\u{20ac}".as_bytes()[..2], "the cut character waits for its rest");
            let mut text = String::new();
            for m in &messages {
                let frame = json!({"type": "publish", "id": "p-123456789", "data": m}).to_string();
                assert!(frame.len() <= 64 * 1024, "{} bytes: over the room's frame limit", frame.len());
                text.push_str(m["d"].as_str().unwrap());
            }
            assert_eq!(text, String::from_utf8_lossy(&all[..all.len() - 2]), "nothing lost or doubled");
        }
    }

    #[test]
    fn joiners_get_a_keyframe_at_once_or_one_at_the_gap_end_however_many_they_are() {
        let gap = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut k = JoinKeyframes::new(gap);
        assert_eq!(k.due(), None);
        k.joined(t0);
        assert_eq!(k.due(), Some(t0), "the first joiner: at once");
        k.sent(t0);
        // A stream of joiners, one every 10 ms for 5 s: a keyframe when due, as the loop does.
        let mut sent = 0;
        for i in 1..=500 {
            let now = t0 + Duration::from_millis(10 * i);
            k.joined(now);
            if k.due().is_some_and(|due| due <= now) {
                k.sent(now);
                sent += 1;
            }
        }
        assert_eq!(sent, 5, "one a second, not one a join");
        // A keyframe for another reason (the periodic one, a resize) serves who joined before it.
        let now = t0 + Duration::from_millis(5_005);
        k.joined(now);
        assert_eq!(k.due(), Some(t0 + Duration::from_millis(6_000)));
        k.sent(now + Duration::from_millis(100));
        assert_eq!(k.due(), None);
        // After a quiet while: at once again.
        let later = now + Duration::from_secs(10);
        k.joined(later);
        assert_eq!(k.due(), Some(later));
    }

    /// A pty whose command does not read: every write blocks until the test lets it go.
    struct Stuck(std::sync::Arc<std::sync::Mutex<Vec<u8>>>, std::sync::mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.1.recv();
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keys_for_a_command_that_does_not_read_never_stall_the_loop() {
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (go, wait) = std::sync::mpsc::channel();
        let keys = Keys::start(Box::new(Stuck(written.clone(), wait)));
        let started = std::time::Instant::now();
        let sent: Vec<bool> = (0..KEYS_WAITING + 10).map(|i| keys.send(format!("{i},"))).collect();
        assert!(started.elapsed() < Duration::from_secs(1), "sending never waits for the pty");
        let taken = sent.iter().filter(|s| **s).count();
        assert!((KEYS_WAITING..=KEYS_WAITING + 1).contains(&taken), "{taken}: the queue holds what it may, the rest is dropped");
        assert!(!sent[KEYS_WAITING + 9], "the newest, past the bound, was dropped");
        // The command reads again: what was taken arrives in order.
        for _ in 0..taken {
            go.send(()).unwrap();
        }
        drop(keys);
        let expected: String = (0..taken).map(|i| format!("{i},")).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while written.lock().unwrap().len() < expected.len() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(String::from_utf8(written.lock().unwrap().clone()).unwrap(), expected);
    }

    #[test]
    fn a_keyframe_too_large_with_its_plain_text_goes_without_it() {
        let mut agent = vt100::Parser::new(100, 400, 0);
        let line = "x".repeat(399);
        for _ in 0..99 {
            agent.process(format!("{line}\r\n").as_bytes());
        }
        let k = keyframe(&agent);
        assert!(k.get("text").is_none(), "a 100 x 400 screen of text leaves its plain copy out");
        assert!(k.to_string().len() <= KEYFRAME_MAX_JSON, "{} bytes", k.to_string().len());
        let mut viewer = vt100::Parser::new(100, 400, 0);
        viewer.process(k["screen"].as_str().unwrap().as_bytes());
        assert_eq!(viewer.screen().contents(), agent.screen().contents(), "`screen` alone redraws it");
        let small = keyframe(&vt100::Parser::new(24, 80, 0));
        assert!(small.get("text").is_some(), "a keyframe that fits keeps its plain text");
    }

    #[test]
    fn a_keyframe_redraws_the_screen_in_a_fresh_emulator() {
        let mut agent = vt100::Parser::new(5, 20, 0);
        agent.process(b"hello\r\n\x1b[1mbold\x1b[0m world\r\n$ ");
        let k = keyframe(&agent);
        assert_eq!((k["rows"].as_u64(), k["cols"].as_u64()), (Some(5), Some(20)));
        assert_eq!(k["text"], "hello\nbold world\n$ ");
        let mut viewer = vt100::Parser::new(5, 20, 0);
        viewer.process(k["screen"].as_str().unwrap().as_bytes());
        assert_eq!(viewer.screen().contents(), agent.screen().contents());
        assert_eq!(viewer.screen().cursor_position(), agent.screen().cursor_position());
        assert!(viewer.screen().cell(1, 0).unwrap().bold(), "attributes come along");
    }

    #[test]
    fn viewers_send_keys_or_a_sane_size() {
        assert_eq!(read_input(&json!({"keys": "ls\r"})), Some(Input::Keys("ls\r".into())));
        assert_eq!(read_input(&json!({"resize": [30, 100]})), Some(Input::Resize(30, 100)));
        assert_eq!(read_input(&json!({"resize": [0, 100]})), None);
        assert_eq!(read_input(&json!({"resize": [200, 400]})), Some(Input::Resize(200, 400)));
        assert_eq!(read_input(&json!({"resize": [201, 100]})), None, "a screen whose keyframe could not be sent");
        assert_eq!(read_input(&json!({"resize": [30]})), None);
        assert_eq!(read_input(&json!("ls")), None);
    }
}
