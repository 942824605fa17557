//! A network between the tests' clients and a server that is slow or breaks on demand:
//! Toxiproxy (`toxiproxy-server`, built by `tests/tools/build toxiproxy`), a TCP proxy that
//! adds latency, resets connections or stops answering ("toxics").
//!
//! Include it together with `tools.rs`, both at the crate root:
//!
//! ```ignore
//! #[path = "../common/tools.rs"]
//! mod tools;
//! #[path = "../common/toxiproxy.rs"]
//! mod toxiproxy;
//! ```
//!
//! [`Toxiproxy::start`] starts a server with its HTTP API on a free 127.0.0.1 port;
//! [`Toxiproxy::proxy`] opens a proxy to any `host:port`, and [`Toxiproxy::proxied_kubeconfig`]
//! writes a copy of a kubeconfig whose server is a new proxy to the original API server. TLS
//! passes through the proxy untouched: the copy keeps the certificate authority and sets
//! `tls-server-name` to the original host, so the serving certificate is still verified
//! against the name it was issued for.
//!
//! The server lives as long as the [`Toxiproxy`] value, and never longer than the test
//! process: it runs under a small shell watchdog that kills it when the test process's end of
//! the watchdog's stdin closes, which happens however the process ends (the trick
//! `cluster.rs` uses). So a `Toxiproxy` kept in a `static` is fine too.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::Kubeconfig;
use serde_json::{Value, json};

/// How long a call to the Toxiproxy API may take before the test fails instead of hanging.
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `toxiproxy-server`; stopped on drop.
pub struct Toxiproxy {
    api: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
    stdin: Option<ChildStdin>,
}

/// Which way a toxic acts: on what the client sends (`Upstream`) or on what the server
/// answers (`Downstream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Upstream,
    Downstream,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// One proxy of a [`Toxiproxy`] server: clients connect to [`Proxy::listen`], the proxy
/// connects to the upstream address and copies bytes both ways through its toxics.
pub struct Proxy<'a> {
    server: &'a Toxiproxy,
    name: String,
    listen: SocketAddr,
    upstream: String,
}

impl Toxiproxy {
    /// Starts `toxiproxy-server` (building it first if needed) with its API on a free
    /// 127.0.0.1 port and waits until the API answers. Panics with the server's log if it
    /// cannot start.
    pub fn start() -> Toxiproxy {
        let binary = crate::tools::toxiproxy_server();
        let dir = tempfile::Builder::new()
            .prefix("toxiproxy-")
            .tempdir()
            .unwrap_or_else(|e| panic!("create a directory for toxiproxy's log: {e}"));
        // The free port is found by binding and releasing it; another process may take it in
        // between, in which case the server exits with "address already in use" and we retry.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Toxiproxy::spawn(binary, dir.path(), port) {
                Ok((child, stdin)) => {
                    return Toxiproxy {
                        api: SocketAddr::from(([127, 0, 0, 1], port)),
                        dir,
                        child,
                        stdin: Some(stdin),
                    };
                }
                Err(message) => last_error = message,
            }
        }
        panic!("toxiproxy-server did not start: {last_error}");
    }

    fn spawn(binary: &Path, dir: &Path, port: u16) -> Result<(Child, ChildStdin), String> {
        let log_path = dir.join("toxiproxy.log");
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        // The watchdog: the server runs in the background; `cat` returns when our end of
        // stdin closes (we dropped it, or this process died), and the server is then killed.
        // (Background jobs of a script read /dev/null unless told otherwise, hence fd 3.)
        // If the server exits by itself, bash exits with its status (so we see it) and stops
        // the watcher, which could otherwise kill a later process that reused the pid.
        let watchdog = r#"exec 3<&0
"$0" "$@" </dev/null 3<&- & server=$!
(cat <&3 >/dev/null; kill "$server" 2>/dev/null) & watcher=$!
exec 3<&-
wait "$server"; status=$?
kill "$watcher" 2>/dev/null
exit "$status""#;
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(watchdog)
            .arg(binary)
            .args(["-host", "127.0.0.1", "-port", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("start {}: {e}", binary.display()))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let api = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "exited with {status}; {}:\n{}",
                    log_path.display(),
                    fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            if let Ok((200, _)) = request(api, "GET", "/version", None) {
                return Ok((child, stdin));
            }
            if Instant::now() > deadline {
                drop(stdin);
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "API on {api} not answering after 20s; {}:\n{}",
                    log_path.display(),
                    fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Address of the Toxiproxy HTTP API.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The server's log (one line per API request and per proxied connection).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("toxiproxy.log")).unwrap_or_default()
    }

    /// Creates proxy `name` (unique per server) listening on a free 127.0.0.1 port and
    /// forwarding to `upstream` (`host:port`), with no toxics.
    pub fn proxy(&self, name: &str, upstream: &str) -> Proxy<'_> {
        let body = json!({
            "name": name,
            "listen": "127.0.0.1:0",
            "upstream": upstream,
            "enabled": true,
        });
        let created = self.call("POST", "/proxies", Some(&body), 201);
        let listen = created["listen"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("toxiproxy: proxy {name} has no listen address: {created}"));
        Proxy {
            server: self,
            name: name.to_owned(),
            listen,
            upstream: upstream.to_owned(),
        }
    }

    /// Creates proxy `name` to the API server of `kubeconfig` and writes to `dest` a copy of
    /// that kubeconfig whose every cluster points at the proxy. TLS passes through: the copy
    /// keeps the certificate authority and sets `tls-server-name` (unless already set) to the
    /// original host, which the serving certificate names. Credentials are copied as they are,
    /// so write `dest` in a private temporary directory.
    ///
    /// Panics if the kubeconfig's clusters do not all use one server (one proxy serves one
    /// upstream).
    pub fn proxied_kubeconfig(&self, name: &str, kubeconfig: &Path, dest: &Path) -> Proxy<'_> {
        let mut config = Kubeconfig::read_from(kubeconfig)
            .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", kubeconfig.display()));
        let mut servers: Vec<String> = config
            .clusters
            .iter()
            .filter_map(|c| c.cluster.as_ref()?.server.clone())
            .collect();
        servers.sort();
        servers.dedup();
        let [server] = servers.as_slice() else {
            panic!(
                "kubeconfig {} has {} distinct cluster servers ({servers:?}); proxied_kubeconfig \
                 needs exactly one",
                kubeconfig.display(),
                servers.len()
            );
        };
        let (host, port) = https_host_port(server).unwrap_or_else(|| {
            panic!(
                "kubeconfig {}: server {server} is not an https:// URL",
                kubeconfig.display()
            )
        });
        let upstream = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let proxy = self.proxy(name, &upstream);
        for named in &mut config.clusters {
            if let Some(cluster) = named.cluster.as_mut() {
                cluster.server = Some(format!("https://{}", proxy.listen));
                cluster.tls_server_name.get_or_insert_with(|| host.clone());
            }
        }
        // JSON is valid YAML, and kubectl, client-go and kube-rs all read it as a kubeconfig.
        let text = serde_json::to_string_pretty(&config).expect("kubeconfig serialises");
        write_private(dest, text.as_bytes());
        proxy
    }

    /// Calls the API; panics unless the answer has status `expect`. Returns the JSON body
    /// (`Null` when empty).
    fn call(&self, method: &str, path: &str, body: Option<&Value>, expect: u16) -> Value {
        let (status, text) = request(self.api, method, path, body)
            .unwrap_or_else(|e| panic!("toxiproxy API {method} {path}: {e}"));
        if status != expect {
            panic!("toxiproxy API {method} {path}: HTTP {status} (expected {expect}): {text}");
        }
        if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("toxiproxy API {method} {path}: {e}: {text}"))
        }
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        // Closing stdin makes the watchdog kill the server; the wait is bounded so that a
        // server that does not stop cannot hang the test.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy<'_> {
    /// The proxy's name in the Toxiproxy API.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where clients connect.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The `host:port` the proxy forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Adds toxic `name` of `kind` (a Toxiproxy toxic type) with `attributes`, on `stream`,
    /// applied to a `toxicity` share (0.0–1.0) of connections. It acts on connections already
    /// open as well as new ones.
    pub fn add_toxic(
        &self,
        name: &str,
        kind: &str,
        stream: Stream,
        toxicity: f32,
        attributes: Value,
    ) {
        let body = json!({
            "name": name,
            "type": kind,
            "stream": stream.as_str(),
            "toxicity": toxicity,
            "attributes": attributes,
        });
        self.server.call(
            "POST",
            &format!("/proxies/{}/toxics", self.name),
            Some(&body),
            200,
        );
    }

    /// Adds `latency` (± a uniformly random `jitter`) to everything the server sends back, so
    /// every request/response round trip through the proxy takes that much longer (a TLS
    /// handshake, several round trips, pays it several times). Toxic name: `name`.
    pub fn add_latency(&self, name: &str, latency: Duration, jitter: Duration) {
        self.add_toxic(
            name,
            "latency",
            Stream::Downstream,
            1.0,
            json!({ "latency": millis(latency), "jitter": millis(jitter) }),
        );
    }

    /// Resets (TCP RST) every connection `after` the toxic is in place or the connection is
    /// opened, whichever is later: connections "reset by peer" in the middle of requests.
    pub fn add_reset_peer(&self, name: &str, after: Duration) {
        self.add_toxic(
            name,
            "reset_peer",
            Stream::Downstream,
            1.0,
            json!({ "timeout": millis(after) }),
        );
    }

    /// Stops all data from reaching the client; with `after` non-zero the connection is closed
    /// after that time, with `after` zero it stays open and silent until the toxic is removed:
    /// a server that stops answering.
    pub fn add_timeout(&self, name: &str, after: Duration) {
        self.add_toxic(
            name,
            "timeout",
            Stream::Downstream,
            1.0,
            json!({ "timeout": millis(after) }),
        );
    }

    /// Removes toxic `name`.
    pub fn remove_toxic(&self, name: &str) {
        self.server.call(
            "DELETE",
            &format!("/proxies/{}/toxics/{name}", self.name),
            None,
            204,
        );
    }

    /// Names of the toxics in place.
    pub fn toxics(&self) -> Vec<String> {
        let list = self
            .server
            .call("GET", &format!("/proxies/{}/toxics", self.name), None, 200);
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Disabling closes every connection through the proxy and refuses new ones (a server
    /// that is down); enabling listens again on the same address.
    pub fn set_enabled(&self, enabled: bool) {
        let body = json!({ "enabled": enabled });
        self.server.call(
            "PATCH",
            &format!("/proxies/{}", self.name),
            Some(&body),
            200,
        );
    }

    /// Deletes the proxy (closing its connections).
    pub fn delete(self) {
        self.server
            .call("DELETE", &format!("/proxies/{}", self.name), None, 204);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("find a free port on 127.0.0.1: {e}"))
}

/// `(host, port)` of an `https://host[:port][/path]` URL; an IPv6 host comes without brackets.
fn https_host_port(url: &str) -> Option<(String, u16)> {
    let authority = url.strip_prefix("https://")?.split('/').next()?;
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => 443,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

fn write_private(dest: &Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dest)
        .unwrap_or_else(|e| panic!("write {}: {e}", dest.display()));
    file.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", dest.display()));
}

/// One HTTP/1.0 request to the local Toxiproxy API: HTTP/1.0 makes the server answer
/// without chunked encoding and close the connection, so the answer is everything read.
fn request(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect_timeout(&api, API_TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(API_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(API_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut head = String::new();
    let _ = write!(
        head,
        "{method} {path} HTTP/1.0\r\nHost: {api}\r\nUser-Agent: gitops-tools-tests\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::https_host_port;

    #[test]
    fn server_urls() {
        assert_eq!(
            https_host_port("https://127.0.0.1:6443"),
            Some(("127.0.0.1".into(), 6443))
        );
        assert_eq!(
            https_host_port("https://[::1]:6443/prefix"),
            Some(("::1".into(), 6443))
        );
        assert_eq!(
            https_host_port("https://example.com"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(https_host_port("http://127.0.0.1:80"), None);
    }
}
