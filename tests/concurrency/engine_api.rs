//! The engine client on a real unix socket: what it sends, how it reads a
//! chunked answer, and that the latch and the deadline end a call to an
//! engine that never answers (a hung dockerd must not hang a run).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cc_ci_run::ext::docker::api::Engine;
use cc_ci_run::sys::latch::Latch;

/// Reads one request's head from `s`: its request line and headers.
fn read_head(s: &UnixStream) -> Vec<String> {
    let mut r = BufReader::new(s);
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
            return lines;
        }
        lines.push(l.trim_end().to_string());
    }
}

/// A one-socket engine: answers `/_ping` as 20.10 does, and gives every
/// other request to `answer`, in order. Each head it read goes to the
/// returned channel.
fn engine(
    dir: &std::path::Path,
    answer: impl Fn(&mut UnixStream) + Send + 'static,
) -> (Engine, mpsc::Receiver<Vec<String>>) {
    let path = dir.join("engine.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let head = read_head(&s);
            let ping = head[0].starts_with("GET /_ping ");
            tx.send(head).ok();
            if ping {
                s.write_all(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK")
                    .unwrap();
            } else {
                answer(&mut s);
            }
        }
    });
    let e = Engine::from_host(Some(&format!("unix://{}", path.display()))).unwrap();
    (e, rx)
}

#[test]
fn a_call_names_the_negotiated_version_and_reads_a_chunked_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (e, heads) = engine(dir.path(), |s| {
        // The body in pieces, as a streaming engine writes it.
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        for piece in [
            "3\r\n[{\"\r\n",
            "9\r\nID\":\"s1\"}\r\n",
            "1\r\n]\r\n",
            "0\r\n\r\n",
        ] {
            s.write_all(piece.as_bytes()).unwrap();
            s.flush().unwrap();
        }
    });
    let r = e
        .request(
            "GET",
            "/services?filters=%7B%7D",
            None,
            Some(Instant::now() + Duration::from_secs(10)),
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8(r.body).unwrap(), r#"[{"ID":"s1"}]"#);
    let ping = heads.recv().unwrap();
    assert_eq!(ping[0], "GET /_ping HTTP/1.1");
    let call = heads.recv().unwrap();
    assert_eq!(call[0], "GET /v1.41/services?filters=%7B%7D HTTP/1.1");
    assert!(call.iter().any(|h| h == "Connection: close"), "{call:?}");
    // The version is asked once per client.
    e.request(
        "GET",
        "/info",
        None,
        Some(Instant::now() + Duration::from_secs(10)),
        None,
    )
    .unwrap();
    assert_eq!(heads.recv().unwrap()[0], "GET /v1.41/info HTTP/1.1");
}

#[test]
fn an_error_answer_carries_the_engines_message() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _heads) = engine(dir.path(), |s| {
        let body = br#"{"message":"No such container: c0ffee"}"#;
        write!(
            s,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
    });
    let r = e
        .request(
            "DELETE",
            "/containers/c0ffee?force=1",
            None,
            Some(Instant::now() + Duration::from_secs(10)),
            None,
        )
        .unwrap();
    assert_eq!(
        (r.status, r.message().as_str()),
        (404, "No such container: c0ffee")
    );
}

/// An engine that reads the call and never answers: the head reaches the
/// channel, so the test knows the call is in flight.
fn silent(dir: &std::path::Path) -> (Engine, mpsc::Receiver<Vec<String>>) {
    engine(dir, |s| {
        let mut b = [0u8; 1];
        // Holds the connection until the client closes it.
        let _ = s.read(&mut b);
    })
}

#[test]
fn the_latch_ends_a_call_the_engine_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (e, heads) = silent(dir.path());
    let latch = std::sync::Arc::new(Latch::new().unwrap());
    let (l2, e2) = (latch.clone(), e.clone());
    let call = std::thread::spawn(move || {
        let t = Instant::now();
        let r = e2.request("GET", "/tasks", None, None, Some(&l2));
        (r, t.elapsed())
    });
    heads.recv().unwrap(); // the ping
    let head = heads.recv().unwrap();
    assert!(head[0].starts_with("GET /v1.41/tasks "), "{head:?}");
    let set_at = Instant::now();
    latch.set();
    let (r, _) = call.join().unwrap();
    let waited = set_at.elapsed();
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("stopped"), "{err}");
    // At once: the latch and the socket are polled together (no tick).
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[test]
fn the_deadline_ends_a_call_the_engine_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _heads) = silent(dir.path());
    let t = Instant::now();
    let r = e.request(
        "GET",
        "/tasks",
        None,
        Some(Instant::now() + Duration::from_millis(300)),
        None,
    );
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("did not answer within"), "{err}");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn no_engine_at_the_socket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::from_host(Some(&format!("unix://{}/none.sock", dir.path().display()))).unwrap();
    let err = format!(
        "{:#}",
        e.request(
            "GET",
            "/info",
            None,
            Some(Instant::now() + Duration::from_secs(5)),
            None
        )
        .unwrap_err()
    );
    assert!(
        err.contains("cannot reach the Docker engine at unix://"),
        "{err}"
    );
    assert!(err.contains("none.sock"), "{err}");
}
