//! A stand-in forge on 127.0.0.1: a real TCP listener speaking just enough
//! HTTP/1.1 for one API call per connection. It records each request
//! (method, path, headers, body) and answers as told: a status with a JSON
//! body, or nothing at all (the connection held open), as a forge that
//! hangs does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// How the forge answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Status(u16),
    /// Reads the request and never answers (the connection stays open).
    Hang,
}

/// One request as the forge read it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

pub struct Forge {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Forge {
    /// Starts listening at once (the port is bound before this returns, so
    /// a client started afterwards finds it) and serves on a thread.
    pub fn start(answer: Answer) -> Forge {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some((req, stream)) = read_request(stream) {
                    seen.lock().unwrap().push(req);
                    match answer {
                        Answer::Status(code) => respond(stream, code),
                        Answer::Hang => held.push(stream),
                    }
                }
            }
        });
        Forge { port, requests }
    }

    /// The base URL of a repository on this forge, as DRONE_REPO_LINK.
    pub fn repo_link(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: TcpStream) -> Option<(Request, TcpStream)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let mut req = Request {
        method: words.next()?.to_string(),
        path: words.next()?.to_string(),
        ..Request::default()
    };
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        req.headers
            .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = req
        .headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    req.body = vec![0; len];
    reader.read_exact(&mut req.body).ok()?;
    Some((req, stream))
}

fn respond(mut stream: TcpStream, code: u16) {
    let body = if (200..300).contains(&code) {
        r#"{"id":1,"body":"posted"}"#.to_string()
    } else {
        format!(r#"{{"message":"the stand-in forge answers {code}"}}"#)
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {code} Stand-in\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}
