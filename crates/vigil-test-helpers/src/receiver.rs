//! A loopback HTTP receiver for alert tests: records every request (method, path,
//! headers, body) and answers with a scripted status, or never answers at all.
//!
//! Plain std threads: one accept thread, one thread per connection. It stops accepting
//! when dropped (hung connections are released then too).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Script {
    /// These statuses in order, then `then` forever.
    Statuses { first: Vec<u16>, then: u16 },
    /// Reads the request and never answers (the connection stays open until drop).
    Hang,
}

impl Script {
    pub fn ok() -> Script {
        Script::Statuses {
            first: Vec::new(),
            then: 200,
        }
    }
}

/// One received request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status it was answered with (`None` when hung).
    pub status: Option<u16>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct State {
    script: Script,
    answered: VecDeque<u16>,
    requests: Vec<Request>,
    hung: Vec<TcpStream>,
}

/// A running receiver on `127.0.0.1:port`.
pub struct Receiver {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start(script: Script) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("local addr").port();
        let answered = match &script {
            Script::Statuses { first, .. } => first.iter().copied().collect(),
            Script::Hang => VecDeque::new(),
        };
        let state = Arc::new(Mutex::new(State {
            script,
            answered,
            requests: Vec::new(),
            hung: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || serve(conn, &state));
                }
            });
        }
        Receiver { port, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("receiver state").requests.clone()
    }

    /// Requests answered with a 2xx status.
    pub fn delivered(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.status.is_some_and(|s| (200..300).contains(&s)))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Ok(mut s) = self.state.lock() {
            s.hung.clear();
        }
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut st = state.lock().expect("receiver state");
    let status = match &st.script {
        Script::Hang => None,
        Script::Statuses { then, .. } => {
            let then = *then;
            Some(st.answered.pop_front().unwrap_or(then))
        }
    };
    st.requests.push(Request {
        method,
        path,
        headers,
        body,
        status,
    });
    match status {
        None => st.hung.push(conn),
        Some(code) => {
            drop(st);
            let text = format!("status {code}");
            let reply = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let mut conn = conn;
            let _ = conn.write_all(reply.as_bytes());
            let _ = conn.flush();
        }
    }
}
