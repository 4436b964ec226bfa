//! A real Prometheus (Debian's `prometheus`), started on loopback with its own data directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, get, temp_dir, try_get};

pub struct Prometheus {
    child: Child,
    pub url: String,
    pub dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    pub fn start(config: &str) -> Prometheus {
        Prometheus::start_with(config, &[])
    }

    /// Starts Prometheus with extra flags (`--enable-feature=native-histograms`).
    pub fn start_with(config: &str, flags: &[&str]) -> Prometheus {
        let dir = temp_dir("prometheus");
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("run prometheus (Debian package prometheus; scripts/install-deps installs it)");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        p.wait_until("ready", |p| {
            try_get(&format!("{}/-/ready", p.url)).is_some_and(|r| r.status == 200)
        });
        p
    }

    pub fn api(&self, path: &str) -> Value {
        let body = get(&format!("{}{path}", self.url), &[]).body;
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    pub fn query(&self, promql: &str) -> Vec<Value> {
        let q: String = form_urlencoded_byte_serialize(promql);
        self.api(&format!("/api/v1/query?query={q}"))["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn targets_up(&self) -> Vec<String> {
        self.api("/api/v1/targets")["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["health"] == "up")
            .map(|t| {
                t["labels"]["dataplane"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    pub fn wait_until(&self, what: &str, done: impl Fn(&Prometheus) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if done(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        panic!(
            "Prometheus: not {what} within 60 s; targets: {}\nlog:\n{log}",
            get(&format!("{}/api/v1/targets", self.url), &[]).body
        );
    }
}

fn form_urlencoded_byte_serialize(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
