//! `roomcast`: follow, publish into and pipe into roomcast rooms from a shell, and mint tokens.
//! docs/CLI.md is its manual. Exit codes: 0 done, 1 refused or failed (the reason on stderr),
//! 2 a usage error.

mod pipe;
mod terminal;
mod token;

use clap::{Parser, Subcommand};
use roomcast_client::{Auth, Client, Event, Events, JoinOptions, Message, Options, Room, State};
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(name = "roomcast", version, about = "Follow, publish and pipe into roomcast rooms; mint tokens.")]
struct Cli {
    /// The edge's URL (https://…, or http://127.0.0.1:8787 for `npm run dev`).
    #[arg(long, env = "ROOMCAST_URL", global = true)]
    url: Option<String>,
    /// A token (a socket's credential; `roomcast token` mints one).
    #[arg(long, env = "ROOMCAST_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The API key (the HTTP API: publish and pipe without a token).
    #[arg(long, env = "ROOMCAST_API_KEY", global = true, hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Follow a room: stored messages, then live ones, resuming across network loss. Several
    /// rooms share one session socket (a token is needed), each line prefixed with its room.
    Tail {
        #[arg(required = true)]
        rooms: Vec<String>,
        /// Start after this seq (history first, then live).
        #[arg(long, conflicts_with = "rewind")]
        since: Option<u64>,
        /// Start with the last N stored messages.
        #[arg(long)]
        rewind: Option<u64>,
        /// Print each message frame as one JSON line.
        #[arg(long)]
        json: bool,
        /// Print strings and log lines as they came, control characters included (colours, but
        /// also whatever codes another member of the room sent); without it they show escaped.
        #[arg(long)]
        raw: bool,
    },
    /// Publish DATA (JSON), or with `-` each JSON line of stdin; prints each seq.
    Publish { room: String, data: String },
    /// Stdin lines to stored messages in batches ({"lines":[…]}), in order, none lost.
    Pipe {
        room: String,
        /// Send a batch at most this long after its first line.
        #[arg(long, default_value_t = 100)]
        batch_ms: u64,
        /// The most JSON bytes of lines in one message.
        #[arg(long, default_value_t = 48 * 1024)]
        batch_bytes: usize,
    },
    /// Run a command in a pseudo-terminal and share it: output and keyframes to the room, input
    /// back from viewers whose token holds the `input` right.
    Terminal {
        room: String,
        #[arg(long, default_value_t = 24)]
        rows: u16,
        #[arg(long, default_value_t = 80)]
        cols: u16,
        /// Publish the whole screen this often while it changes (and when someone joins).
        #[arg(long, default_value_t = 2000)]
        keyframe_ms: u64,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Mint a token, as `npm run token` does.
    Token {
        #[arg(long)]
        user: String,
        /// A room name or pattern (`chat:*`, `*`).
        #[arg(long)]
        room: String,
        #[arg(long, default_value = "subscribe,publish,presence")]
        rights: String,
        /// Lifetime: a number with s, m, h or d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Presence metadata (a JSON object).
        #[arg(long)]
        meta: Option<String>,
        /// The signing secret (default: ROOMCAST_SECRET, then ./.dev.vars).
        #[arg(long, env = "ROOMCAST_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
}

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(e),
    }
}

fn fail(e: String) -> ExitCode {
    eprintln!("roomcast: {e}");
    ExitCode::FAILURE
}

/// Runs the command; the process's exit code (a terminal's command's own).
async fn run(cli: Cli) -> Res<u8> {
    let Cli { url, token, api_key, cmd } = cli;
    let url = || url.clone().ok_or_else(|| "no URL: pass --url or set ROOMCAST_URL".to_owned());
    match cmd {
        Cmd::Terminal { room, rows, cols, keyframe_ms, command } => {
            let opts = socket_options(token, api_key.as_deref(), "terminal")?;
            let (room, events) = Client::connect(&url()?, &room, opts).await.map_err(|e| e.to_string())?;
            let code = terminal::run(room, events, rows, cols, Duration::from_millis(keyframe_ms.max(100)), &command).await?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Cmd::Token { user, room, rights, ttl, meta, secret } => {
            let secret = secret.or_else(|| std::fs::read_to_string(".dev.vars").ok().and_then(|v| token::dev_var(&v, "ROOMCAST_SECRET")));
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let m =
                token::Mint { user: &user, room: &room, rights: &rights, ttl_seconds: token::parse_ttl(&ttl)?, meta: meta.as_deref(), now };
            println!("{}", token::mint(&secret.unwrap_or_default(), &m).map_err(|e| format!("token: {e}"))?);
            Ok(0)
        }
        Cmd::Tail { rooms, since, rewind, json, raw } => {
            let style = Style { json, raw };
            let opts = socket_options(token, api_key.as_deref(), "tail")?;
            match rooms.as_slice() {
                [room] => tail(&url()?, room, Options { rewind, ..opts }, since, style).await.map(|()| 0),
                _ if since.is_some() => Err("--since takes one room".to_owned()),
                _ if matches!(opts.auth, Auth::None) => {
                    Err("tail of several rooms needs a token: they share one session socket".to_owned())
                }
                _ => tail_many(&url()?, &rooms, opts, rewind, style).await.map(|()| 0),
            }
        }
        Cmd::Publish { room, data } => {
            let items = if data == "-" { read_json_lines().await? } else { vec![parse_json(&data, "DATA")?] };
            match (token, api_key) {
                (None, Some(key)) => publish_http(&url()?, &room, &key, items).await,
                (token, _) => publish_socket(&url()?, &room, socket_options(token, None, "publish")?, items).await,
            }
            .map(|()| 0)
        }
        Cmd::Pipe { room, batch_ms, batch_bytes } => {
            let sink = match (token, api_key) {
                (None, Some(key)) => Sink::Http(Http::new(&url()?, &room, &key)),
                (token, _) => {
                    let (room, events) =
                        Client::connect(&url()?, &room, socket_options(token, None, "pipe")?).await.map_err(|e| e.to_string())?;
                    Sink::Socket(room, watch_closes(events))
                }
            };
            pipe_stdin(sink, Duration::from_millis(batch_ms), batch_bytes).await.map(|()| 0)
        }
    }
}

/// A socket's options: the token, or anonymous. The API key opens no socket.
fn socket_options(token: Option<String>, api_key: Option<&str>, what: &str) -> Res<Options> {
    match (token, api_key) {
        (Some(t), _) => Ok(Options { auth: Auth::Token(t), ..Options::default() }),
        (None, Some(_)) => {
            Err(format!("{what} needs a token (--token or ROOMCAST_TOKEN): the API key opens no socket; mint one with `roomcast token`"))
        }
        (None, None) => Ok(Options::default()),
    }
}

fn parse_json(text: &str, what: &str) -> Res<String> {
    serde_json::from_str::<Value>(text)
        .map(|v| v.to_string())
        .map_err(|e| format!("{what} is not JSON ({e}); a string needs quotes: '\"hello\"'"))
}

async fn read_json_lines() -> Res<Vec<String>> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut items = Vec::new();
    let mut n = 0;
    while let Some(line) = lines.next_line().await.map_err(|e| format!("stdin: {e}"))? {
        n += 1;
        if !line.trim().is_empty() {
            items.push(parse_json(&line, &format!("stdin line {n}"))?);
        }
    }
    Ok(items)
}

/// How `tail` prints: message frames as JSON lines, or text; text with control characters as
/// they came, or escaped.
#[derive(Debug, Clone, Copy, Default)]
struct Style {
    json: bool,
    raw: bool,
}

/// How a message prints, line end included: its frame with `--json`; a string as it is; a pipe
/// batch as its lines; a shared terminal's output as the raw bytes, its keyframe as the escape
/// codes that redraw the screen (so `tail` of a terminal room is a live view of it); anything
/// else as compact JSON. Strings and lines come from any member with `publish`: their control
/// characters (an escape code that rewrites the screen, a `\r` over the room's prefix, a line
/// feed that forges a line) show escaped unless `--raw`.
fn render(m: &Message, style: Style) -> String {
    if style.json {
        return format!("{}\n", m.raw);
    }
    let field = |k: &str| m.data.get(k).and_then(Value::as_str);
    match (&m.data, pipe::batch_lines(&m.data), field("term")) {
        (Value::String(s), _, _) => format!("{}\n", shown(s, style.raw)),
        (_, Some(lines), _) => lines.iter().map(|l| format!("{}\n", shown(l, style.raw))).collect(),
        (_, _, Some("o")) if field("d").is_some() => field("d").unwrap_or_default().to_owned(),
        // Home and clear, then the screen as the agent's emulator holds it.
        (_, _, Some("k")) if field("screen").is_some() => format!("\x1b[H\x1b[2J{}", field("screen").unwrap_or_default()),
        (data, _, Some("x")) => format!("\r\n[the command exited with {}]\r\n", data["code"]),
        (data, _, _) => format!("{data}\n"),
    }
}

/// `s` with its control characters but tabs written as `\xNN` (`\u{NNNN}` above 0xff), unless raw.
fn shown(s: &str, raw: bool) -> std::borrow::Cow<'_, str> {
    if raw || !s.chars().any(|c| c.is_control() && c != '\t') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\t' => out.push(c),
            c if c.is_control() && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

fn print(text: &str) -> Res<()> {
    let mut out = std::io::stdout().lock();
    // A reader that went away (`| head`) ends the tail quietly.
    if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
    Ok(())
}

fn status_note(s: &roomcast_client::Status) -> Option<String> {
    (s.state == State::Reconnecting).then(|| format!("reconnecting in {:.1} s ({} {})", s.delay_ms as f64 / 1000.0, s.code, s.reason))
}

async fn tail(url: &str, room: &str, opts: Options, since: Option<u64>, style: Style) -> Res<()> {
    let (handle, mut events) = Client::connect(url, room, opts).await.map_err(|e| e.to_string())?;
    let mut pending_since = since;
    while let Some(event) = events.recv().await {
        match event {
            Event::Welcome(w) => {
                if let Some(from) = pending_since.take() {
                    catch_up(&handle, from, w.seq, style).await?;
                }
            }
            Event::Message(m) => print(&render(&m, style))?,
            Event::Gap { reason, since } => eprintln!("roomcast: messages after seq {since} were missed ({reason})"),
            Event::Status(s) if s.state == State::Closed => return Err(format!("closed: {} {}", s.code, s.reason)),
            Event::Status(s) => {
                if let Some(note) = status_note(&s) {
                    eprintln!("roomcast: {note}");
                }
            }
            Event::Error(e) => eprintln!("roomcast: {}: {}", e.code, e.message),
            _ => {}
        }
    }
    Ok(())
}

/// `tail ROOM ROOM…`: every room joined on one session socket, each line prefixed with its room
/// (with `--json`, the frame gains a `room` field). Ends when every room (or the session) closed.
async fn tail_many(url: &str, rooms: &[String], opts: Options, rewind: Option<u64>, style: Style) -> Res<()> {
    let (session, mut status) = Client::session(url, opts).await.map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for name in rooms {
        let (_room, mut events) = session.join(name, JoinOptions { rewind, echo: false }).await.map_err(|e| e.to_string())?;
        let (tx, name) = (tx.clone(), name.clone());
        tokio::spawn(async move {
            // (the handle is kept so the room stays joined)
            let _room = _room;
            while let Some(event) = events.recv().await {
                if tx.send((name.clone(), event)).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            event = status.recv() => match event {
                Some(Event::Status(s)) if s.state == State::Closed => return Err(format!("closed: {} {}", s.code, s.reason)),
                Some(Event::Status(s)) => {
                    if let Some(note) = status_note(&s) {
                        eprintln!("roomcast: {note}");
                    }
                }
                Some(Event::Error(e)) => eprintln!("roomcast: {}: {}", e.code, e.message),
                Some(_) => {}
                None => return Ok(()),
            },
            event = rx.recv() => match event {
                Some((room, Event::Message(m))) => {
                    let text = if style.json {
                        format!("{{\"room\":{},{}\n", Value::String(room), m.raw.get(1..).unwrap_or_default())
                    } else {
                        render(&m, style).lines().map(|l| format!("{room}: {l}\n")).collect()
                    };
                    print(&text)?;
                }
                Some((room, Event::Gap { reason, since })) => eprintln!("roomcast: {room}: messages after seq {since} were missed ({reason})"),
                Some((room, Event::Status(s))) if s.state == State::Closed => eprintln!("roomcast: {room}: closed: {} {}", s.code, s.reason),
                Some((room, Event::Error(e))) => eprintln!("roomcast: {room}: {}: {}", e.code, e.message),
                Some(_) => {}
                None => return Err("every room closed".to_owned()),
            },
        }
    }
}

/// `tail --since N`: the stored messages after N up to the welcome's seq, page by page; live
/// ones after it wait in the event stream meanwhile.
async fn catch_up(room: &Room, from: u64, until: u64, style: Style) -> Res<()> {
    let mut cursor = from;
    while cursor < until {
        let page = room.history(Some(1000), None, Some(cursor)).await.map_err(|e| format!("history: {e}"))?;
        let start = cursor;
        for m in page.messages.iter().filter(|m| m.seq > start && m.seq <= until) {
            print(&render(m, style))?;
            cursor = m.seq;
        }
        if !page.more || page.messages.is_empty() {
            break;
        }
    }
    Ok(())
}

/// Reads a socket's events in the background for a command that only publishes: reports
/// reconnects on stderr, and hands back the close that ended it.
fn watch_closes(mut events: Events) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Status(s) if s.state == State::Closed => {
                    let _ = tx.send(format!("closed: {} {}", s.code, s.reason));
                }
                Event::Status(s) => {
                    if let Some(note) = status_note(&s) {
                        eprintln!("roomcast: {note}");
                    }
                }
                Event::Error(e) => eprintln!("roomcast: {}: {}", e.code, e.message),
                _ => {}
            }
        }
    });
    rx
}

/// Codes after which the same publish may go again later (it was not stored).
fn retryable(code: Option<&str>) -> bool {
    matches!(code, Some("rate_limited" | "backpressure" | "storage" | "queue_full"))
}

/// Publishes over the socket until the room stores it; the error says why not.
async fn publish_once(room: &Room, closes: &mut mpsc::UnboundedReceiver<String>, data: &str) -> Res<u64> {
    let mut wait = Duration::from_millis(100);
    loop {
        match room.publish_json(data.to_owned()).await {
            Ok(seq) => return Ok(seq),
            Err(e) if retryable(e.code()) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) if e.code() == Some("closed") => {
                // The close's status comes before the rejections it causes; the watcher passes it on.
                let why = tokio::time::timeout(Duration::from_secs(2), closes.recv()).await.ok().flatten();
                return Err(why.unwrap_or_else(|| e.to_string()));
            }
            Err(e) => return Err(format!("publish refused: {e}")),
        }
    }
}

async fn publish_socket(url: &str, room: &str, opts: Options, items: Vec<String>) -> Res<()> {
    let (room, events) = Client::connect(url, room, opts).await.map_err(|e| e.to_string())?;
    let mut closes = watch_closes(events);
    for data in items {
        print(&format!("{}\n", publish_once(&room, &mut closes, &data).await?))?;
    }
    room.close();
    Ok(())
}

/// The HTTP API with the API key.
struct Http {
    agent: ureq::Agent,
    endpoint: String,
    auth: String,
}

impl Http {
    fn new(url: &str, room: &str, key: &str) -> Http {
        let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build();
        Http {
            agent: config.into(),
            endpoint: format!("{}/rooms/{room}/messages", url.trim_end_matches('/')),
            auth: format!("Bearer {key}"),
        }
    }

    /// POSTs `body`: the answer's JSON, or (retry?, why not).
    async fn post(&self, body: String) -> Result<Value, (bool, String)> {
        let (agent, endpoint, auth) = (self.agent.clone(), self.endpoint.clone(), self.auth.clone());
        let answer = tokio::task::spawn_blocking(move || {
            let mut res = agent.post(&endpoint).header("authorization", &auth).header("content-type", "application/json").send(&body)?;
            let text = res.body_mut().read_to_string()?;
            Ok::<_, ureq::Error>((res.status().as_u16(), text))
        })
        .await
        .map_err(|e| (false, e.to_string()))?;
        match answer {
            Ok((200, text)) => serde_json::from_str(&text).map_err(|e| (false, format!("a bad answer: {e}"))),
            // Rate, storage, webhook backpressure: the batch was not stored; the same again later.
            Ok((status @ (429 | 500..=599), text)) => Err((true, format!("{status} {text}"))),
            Ok((status, text)) => Err((false, format!("{status} {text}"))),
            // The edge is down or restarting: the same again (an id makes it stored once).
            Err(e) => Err((true, e.to_string())),
        }
    }
}

async fn publish_http(url: &str, room: &str, key: &str, items: Vec<String>) -> Res<()> {
    let http = Http::new(url, room, key);
    for chunk in items.chunks(100) {
        let body = format!("[{}]", chunk.iter().map(|d| format!(r#"{{"data":{d}}}"#)).collect::<Vec<_>>().join(","));
        let answer = http.post(body).await.map_err(|(_, e)| format!("publish refused: {e}"))?;
        for m in answer["messages"].as_array().into_iter().flatten() {
            print(&format!("{}\n", m["seq"]))?;
        }
    }
    Ok(())
}

/// Where `pipe` stores its batches.
enum Sink {
    Socket(Room, mpsc::UnboundedReceiver<String>),
    Http(Http),
}

impl Sink {
    /// Stores batch number `n` (`data`), waiting out refusals that pass; its seq.
    async fn store(&mut self, n: u64, run: &str, data: &str) -> Res<u64> {
        match self {
            Sink::Socket(room, closes) => publish_once(room, closes, data).await,
            Sink::Http(http) => {
                let body = format!(r#"{{"id":"{run}-{n}","data":{data}}}"#);
                let mut wait = Duration::from_millis(100);
                loop {
                    match http.post(body.clone()).await {
                        Ok(answer) => return answer["seq"].as_u64().ok_or_else(|| format!("an answer without seq: {answer}")),
                        Err((true, why)) => {
                            eprintln!("roomcast: batch {n} not stored yet ({why}); again in {} ms", wait.as_millis());
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(5));
                        }
                        Err((false, why)) => return Err(format!("pipe refused: {why}")),
                    }
                }
            }
        }
    }

    fn close(&self) {
        if let Sink::Socket(room, _) = self {
            room.close();
        }
    }
}

/// `pipe`: a reader task batches stdin; this task stores one batch at a time. The channel
/// between them is short, so a slow room blocks the reader (backpressure), never drops.
async fn pipe_stdin(mut sink: Sink, batch_time: Duration, batch_bytes: usize) -> Res<()> {
    let (tx, mut rx) = mpsc::channel::<(String, usize)>(2);
    let reader = tokio::spawn(read_batches(tx, batch_time, batch_bytes));
    let run = format!("{:012x}", roomcast_client::random_u64() >> 16);
    let (mut n, mut lines, mut first, mut last) = (0u64, 0usize, None, 0);
    while let Some((data, count)) = rx.recv().await {
        n += 1;
        last = sink.store(n, &run, &data).await?;
        first.get_or_insert(last);
        lines += count;
    }
    sink.close();
    let refused = reader.await.map_err(|e| e.to_string())??;
    let seqs = first.map_or(String::new(), |f| format!(" (seq {f}-{last})"));
    eprintln!("roomcast: {lines} lines stored in {n} messages{seqs}");
    if refused > 0 {
        return Err(format!("{refused} lines were longer than --batch-bytes allows and were not sent"));
    }
    Ok(())
}

/// Reads stdin into batches: one goes when full, or `batch_time` after its first line, or at
/// the end. Returns how many lines were refused as too long (each reported on stderr).
async fn read_batches(tx: mpsc::Sender<(String, usize)>, batch_time: Duration, batch_bytes: usize) -> Res<usize> {
    let mut input = BufReader::new(tokio::io::stdin());
    let mut batch = pipe::Batcher::new(batch_bytes);
    let mut buf = Vec::new();
    let (mut refused, mut line_no) = (0, 0u64);
    let mut deadline = None;
    loop {
        let due = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            read = input.read_until(b'\n', &mut buf) => {
                if read.map_err(|e| format!("stdin: {e}"))? == 0 {
                    break;
                }
                line_no += 1;
                let line = String::from_utf8_lossy(pipe::trim_eol(&buf)).into_owned();
                buf.clear();
                let count = batch.count();
                match batch.push(line) {
                    Ok(Some(full)) => {
                        send(&tx, full, count).await?;
                        deadline = Some(tokio::time::Instant::now() + batch_time);
                    }
                    Ok(None) => {
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + batch_time);
                    }
                    Err(too_long) => {
                        refused += 1;
                        eprintln!("roomcast: line {line_no} is {} bytes of JSON, over --batch-bytes {batch_bytes}: not sent", too_long.bytes);
                    }
                }
            }
            _ = tokio::time::sleep_until(due), if deadline.is_some() => {
                let count = batch.count();
                if let Some(data) = batch.take() {
                    send(&tx, data, count).await?;
                }
                deadline = None;
            }
        }
    }
    let count = batch.count();
    if let Some(data) = batch.take() {
        send(&tx, data, count).await?;
    }
    Ok(refused)
}

async fn send(tx: &mpsc::Sender<(String, usize)>, data: String, count: usize) -> Res<()> {
    tx.send((data, count)).await.map_err(|_| "the room stopped taking batches".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn message(data: Value) -> Message {
        let frame = serde_json::json!({"type":"message","seq":3,"from":"c","user":"u","data":data,"ts":1});
        serde_json::from_value(frame).unwrap()
    }

    #[test]
    fn messages_print_as_text_lines_or_json() {
        assert_eq!(render(&message("hello".into()), Style::default()), "hello\n");
        assert_eq!(render(&message(serde_json::json!({"lines":["a","b"]})), Style::default()), "a\nb\n");
        assert_eq!(render(&message(serde_json::json!({"n": 1})), Style::default()), "{\"n\":1}\n");
        let mut m = message(1.into());
        m.raw = "{\"type\":\"message\"}".into();
        assert_eq!(render(&m, Style { json: true, raw: false }), format!("{}\n", m.raw));
        // a terminal room: raw output, a keyframe that redraws, the exit
        assert_eq!(render(&message(serde_json::json!({"term":"o","d":"ls\r\n"})), Style::default()), "ls\r\n");
        assert_eq!(render(&message(serde_json::json!({"term":"k","screen":"S"})), Style::default()), "\x1b[H\x1b[2JS");
        assert_eq!(render(&message(serde_json::json!({"term":"x","code":3})), Style::default()), "\r\n[the command exited with 3]\r\n");
        assert_eq!(render(&message(serde_json::json!({"term":"o"})), Style::default()), "{\"term\":\"o\"}\n", "not a terminal message");
    }

    #[test]
    fn strings_and_lines_from_members_show_their_control_characters_escaped_unless_raw() {
        let forged = "\x1b[2J\x1b[31mpwned\rchat:b: fake\nline\ttab\u{85}";
        let escaped = "\\x1b[2J\\x1b[31mpwned\\x0dchat:b: fake\\x0aline\ttab\\x85\n";
        assert_eq!(render(&message(forged.into()), Style::default()), escaped);
        assert_eq!(render(&message(serde_json::json!({"lines": [forged]})), Style::default()), escaped);
        assert_eq!(render(&message(forged.into()), Style { json: false, raw: true }), format!("{forged}\n"));
        assert_eq!(render(&message("plain ünïcode\tline".into()), Style::default()), "plain ünïcode\tline\n");
    }

    #[test]
    fn data_must_be_json_and_the_api_key_opens_no_socket() {
        assert_eq!(parse_json(" {\"a\": 1} ", "DATA").unwrap(), r#"{"a":1}"#);
        assert!(parse_json("hello", "DATA").unwrap_err().contains("needs quotes"));
        assert!(socket_options(None, Some("k"), "tail").unwrap_err().contains("needs a token"));
        assert!(matches!(socket_options(Some("t".into()), Some("k"), "tail").unwrap().auth, Auth::Token(_)));
        assert!(matches!(socket_options(None, None, "tail").unwrap().auth, Auth::None));
    }

    #[test]
    fn the_command_line_is_consistent_and_since_excludes_rewind() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["roomcast", "tail", "r", "--since", "1", "--rewind", "2"]).is_err());
        let cli = Cli::try_parse_from(["roomcast", "pipe", "logs:app", "--batch-ms", "50", "--url", "http://x"]).unwrap();
        assert!(matches!(cli.cmd, Cmd::Pipe { batch_ms: 50, .. }) && cli.url.as_deref() == Some("http://x"));
    }
}
