//! The binary the demo runs (`scripts/demo`, the compose stack): its flags, and what it serves.
//! (Being an integration test, this also has `cargo test --workspace` build the binary, which
//! `tests/tests/demo.rs` hands to `scripts/demo`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// The app, started on a free port; killed when dropped.
struct App {
    child: Child,
    addr: String,
}

impl App {
    fn start(args: &[&str]) -> App {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshmetrics-demo-app"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start meshmetrics-demo-app");
        let mut line = String::new();
        BufReader::new(child.stderr.take().expect("stderr"))
            .read_line(&mut line)
            .expect("its first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/metrics\n"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        App { child, addr }
    }

    /// One `GET /metrics`: the response's head and body.
    fn get(&self) -> (String, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        (head.to_owned(), body.to_owned())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serves_text_named_after_its_flag_and_moving_with_each_scrape() {
    let app = App::start(&["--name", "orders"]);
    let (head, body) = app.get();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        body.contains("orders_http_requests_total{code=\"200\"} 7\n"),
        "{body}"
    );
    let (_, body) = app.get();
    assert!(
        body.contains("orders_http_requests_total{code=\"200\"} 14\n"),
        "{body}"
    );
}

#[test]
fn serves_openmetrics_when_told() {
    let app = App::start(&["--name", "payments", "--openmetrics"]);
    let (head, body) = app.get();
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains(
            "payments_http_requests_total{code=\"200\"} 7 # {trace_id=\"0000000000000001\"} 1\n"
        ),
        "{body}"
    );
}
