//! Real third-party proxies and TLS terminators for the network-edge tests:
//! tinyproxy (HTTP CONNECT), microsocks (SOCKS5) and nginx (TLS in front of
//! a WebSocket server), each started from a config generated in a temp dir,
//! bound to 127.0.0.1, and killed when dropped. Plus [`SocksRecorder`], a
//! small in-process SOCKS5 relay that records what each client asked for,
//! for the one thing no real proxy reports: whether it got a name or an
//! address.
//!
//! A missing binary is installed with apt-get when the tests run as root (a
//! fresh CI machine); otherwise the test fails naming the Debian package to
//! install. These tests are part of the suite, never silently skipped.

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::tls::TestPkiFiles;
use super::{free_port, kill_and_reap};

/// How long a daemon may take to listen before the test fails.
const STARTUP: Duration = Duration::from_secs(10);
/// Fresh ports to try when the one picked was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// A third-party server process with its own temp dir; killed on drop.
struct Daemon {
    child: Child,
    name: &'static str,
    output: PathBuf,
    port: u16,
    // Dropped after the process is gone.
    _dir: TempDir,
}

impl Daemon {
    /// Starts `binary` with the args `configure` writes for a free port, and
    /// waits until the port accepts connections.
    fn start(
        binary: &'static str,
        package: &'static str,
        configure: impl Fn(u16, &Path) -> Vec<OsString>,
    ) -> Daemon {
        let program = find_binary(binary, package);
        let mut last_output = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let args = configure(port, dir.path());
            let output = dir.path().join("output.log");
            let log = File::create(&output).expect("creating the output log");
            let child = Command::new(&program)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cloning the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|err| panic!("starting {}: {err}", program.display()));
            let mut daemon = Daemon {
                child,
                name: binary,
                output,
                port,
                _dir: dir,
            };
            if daemon.wait_until_listening() {
                return daemon;
            }
            last_output = daemon.output();
            if !last_output.contains("in use") {
                break;
            }
        }
        panic!("{binary} did not start listening within {STARTUP:?}; its output:\n{last_output}");
    }

    /// True once the port accepts connections; false if the process exits.
    fn wait_until_listening(&mut self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        while started.elapsed() < STARTUP {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // The port could belong to someone else if ours failed to bind.
                return matches!(self.child.try_wait(), Ok(None));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Everything the process wrote to stdout and stderr so far.
    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.output());
        }
    }
}

/// The path of `name`, installing its Debian package first when it is
/// missing and we are root on a machine with apt-get (as on a fresh CI
/// machine); otherwise a failure that names the package.
fn find_binary(name: &str, package: &str) -> PathBuf {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let search = || {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    };
    if let Some(found) = search() {
        return found;
    }
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = search() {
        return found;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let mut tried = String::new();
    if root && Path::new("/usr/bin/apt-get").exists() {
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .map(|out| String::from_utf8_lossy(&out.stderr).into_owned())
                .unwrap_or_else(|e| e.to_string())
        };
        tried.push_str(&apt(&["update", "-qq"]));
        tried.push_str(&apt(&[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "-o",
            "DPkg::Lock::Timeout=120",
            package,
        ]));
        if let Some(found) = search() {
            return found;
        }
    }
    panic!(
        "{name} is not installed; these tests need the Debian package {package} \
         (apt-get install -y {package}, as .ci/run does){}",
        if tried.is_empty() {
            String::new()
        } else {
            format!("; installing it failed:\n{tried}")
        }
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// tinyproxy, an HTTP proxy that tunnels with CONNECT.
pub struct Tinyproxy {
    daemon: Daemon,
}

impl Tinyproxy {
    /// A proxy that opens tunnels to `connect_ports` only (others get 403).
    pub fn start(connect_ports: &[u16]) -> Tinyproxy {
        Self::launch(connect_ports, None)
    }

    /// The same, answering 407 without credentials and 401 with wrong ones.
    pub fn with_auth(connect_ports: &[u16], user: &str, pass: &str) -> Tinyproxy {
        Self::launch(connect_ports, Some((user, pass)))
    }

    fn launch(connect_ports: &[u16], auth: Option<(&str, &str)>) -> Tinyproxy {
        let daemon = Daemon::start("tinyproxy", "tinyproxy", |port, dir| {
            let mut conf = format!(
                "Listen 127.0.0.1\nPort {port}\nTimeout 60\nMaxClients 50\nLogLevel Connect\n"
            );
            for allowed in connect_ports {
                conf.push_str(&format!("ConnectPort {allowed}\n"));
            }
            if let Some((user, pass)) = auth {
                conf.push_str(&format!("BasicAuth {user} {pass}\n"));
            }
            let conf = write(dir, "tinyproxy.conf", &conf);
            vec!["-d".into(), "-c".into(), conf.into()]
        });
        Tinyproxy { daemon }
    }

    pub fn port(&self) -> u16 {
        self.daemon.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@127.0.0.1:{}", self.port())
    }

    /// tinyproxy's log; it logs every request line, CONNECTs included.
    pub fn log(&self) -> String {
        self.daemon.output()
    }

    /// The `host:port`s it was asked to CONNECT to, in order.
    pub fn connects(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| line.split("): CONNECT ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

/// microsocks, a SOCKS5 proxy.
pub struct Microsocks {
    daemon: Daemon,
}

impl Microsocks {
    pub fn start() -> Microsocks {
        Self::launch(None)
    }

    /// The same, requiring this user name and password.
    pub fn with_auth(user: &str, pass: &str) -> Microsocks {
        Self::launch(Some((user, pass)))
    }

    fn launch(auth: Option<(&str, &str)>) -> Microsocks {
        let daemon = Daemon::start("microsocks", "microsocks", |port, _| {
            let mut args: Vec<OsString> = vec![
                "-i".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string().into(),
            ];
            if let Some((user, pass)) = auth {
                args.extend(["-u".into(), user.into(), "-P".into(), pass.into()]);
            }
            args
        });
        Microsocks { daemon }
    }

    pub fn port(&self) -> u16 {
        self.daemon.port
    }

    /// `scheme://127.0.0.1:PORT`, for `socks5` or `socks5h`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port())
    }

    pub fn url_with(&self, scheme: &str, user: &str, pass: &str) -> String {
        format!("{scheme}://{user}:{pass}@127.0.0.1:{}", self.port())
    }
}

/// nginx terminating TLS with the test PKI's server certificate, and
/// proxying WebSocket upgrades to a plain `ws://` server on 127.0.0.1.
pub struct Nginx {
    daemon: Daemon,
}

/// What [`Nginx`] should do, before it starts.
pub struct NginxTls {
    pki: TestPkiFiles,
    upstream: u16,
    verify_clients: bool,
    locations: Vec<(String, String)>,
}

impl Nginx {
    /// nginx on `wss://localhost:PORT` in front of `ws://127.0.0.1:upstream`.
    pub fn tls(pki: &TestPkiFiles, upstream: u16) -> NginxTls {
        NginxTls {
            pki: pki.clone(),
            upstream,
            verify_clients: false,
            locations: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.daemon.port
    }

    /// The name the test certificate is for, so verification can succeed.
    pub fn wss_url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.port())
    }
}

impl NginxTls {
    /// Require a client certificate signed by the test CA. The upstream
    /// gets its subject in an `X-Client-Subject` header.
    pub fn verify_clients(mut self) -> NginxTls {
        self.verify_clients = true;
        self
    }

    /// An extra `location PATH { BODY }`, e.g. a `return 302 ...;`.
    pub fn location(mut self, path: &str, body: &str) -> NginxTls {
        self.locations.push((path.to_owned(), body.to_owned()));
        self
    }

    pub fn start(self) -> Nginx {
        let daemon = Daemon::start("nginx", "nginx-light", |port, dir| {
            let d = dir.display();
            let verify = if self.verify_clients {
                format!(
                    "ssl_verify_client on;\n        ssl_client_certificate {};",
                    self.pki.ca.display()
                )
            } else {
                String::new()
            };
            let locations: String = self
                .locations
                .iter()
                .map(|(path, body)| format!("        location = {path} {{ {body} }}\n"))
                .collect();
            let conf = format!(
                r#"
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {verify}
{locations}
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-Client-Subject $ssl_client_s_dn;
            proxy_read_timeout 60s;
        }}
    }}
}}
"#,
                cert = self.pki.server_cert.display(),
                key = self.pki.server_key.display(),
                upstream = self.upstream,
            );
            let conf = write(dir, "nginx.conf", &conf);
            // One process, in the foreground, so killing it leaves nothing
            // behind; `-e` keeps nginx from opening /var/log/nginx first.
            vec![
                "-p".into(),
                dir.into(),
                "-e".into(),
                "stderr".into(),
                "-c".into(),
                conf.into(),
                "-g".into(),
                "daemon off; master_process off;".into(),
            ]
        });
        Nginx { daemon }
    }
}

/// What a SOCKS5 client asked the [`SocksRecorder`] for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksTarget {
    Ip(SocketAddr),
    Domain(String, u16),
}

/// An in-process SOCKS5 relay (no authentication) that records every
/// CONNECT request, then relays to the target.
pub struct SocksRecorder {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<SocksTarget>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SocksRecorder {
    pub fn start() -> SocksRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, stop) = oneshot::channel::<()>();
        let log = Arc::clone(&requests);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(relay(stream, Arc::clone(&log)));
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stop => {}
                }
            });
        });
        SocksRecorder {
            addr,
            requests,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `scheme://127.0.0.1:PORT`, for `socks5` or `socks5h`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<SocksTarget> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for SocksRecorder {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn relay(mut client: tokio::net::TcpStream, log: Arc<Mutex<Vec<SocksTarget>>>) {
    let Some(target) = socks_request(&mut client).await else {
        return;
    };
    log.lock().unwrap().push(target.clone());
    let upstream = match &target {
        SocksTarget::Ip(addr) => tokio::net::TcpStream::connect(addr).await.ok(),
        SocksTarget::Domain(host, port) => {
            let mut found = None;
            if let Ok(addrs) = tokio::net::lookup_host((host.as_str(), *port)).await {
                for addr in addrs {
                    if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
                        found = Some(stream);
                        break;
                    }
                }
            }
            found
        }
    };
    // Success or "connection refused", with an empty bound address.
    let status = if upstream.is_some() { 0 } else { 5 };
    if client
        .write_all(&[5, status, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
        .is_err()
    {
        return;
    }
    if let Some(mut upstream) = upstream {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// Reads a SOCKS5 greeting and CONNECT request; `None` if it is not one.
async fn socks_request(client: &mut tokio::net::TcpStream) -> Option<SocksTarget> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await.ok()?;
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await.ok()?;
    if head[0] != 5 || !methods.contains(&0) {
        let _ = client.write_all(&[5, 0xff]).await;
        return None;
    }
    client.write_all(&[5, 0]).await.ok()?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await.ok()?;
    if request[..2] != [5, 1] {
        return None;
    }
    let target = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await.ok()?;
            SocksTarget::Ip(SocketAddr::from((ip, client.read_u16().await.ok()?)))
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await.ok()?;
            SocksTarget::Ip(SocketAddr::from((ip, client.read_u16().await.ok()?)))
        }
        3 => {
            let len = client.read_u8().await.ok()?;
            let mut name = vec![0u8; usize::from(len)];
            client.read_exact(&mut name).await.ok()?;
            let name = String::from_utf8(name).ok()?;
            SocksTarget::Domain(name, client.read_u16().await.ok()?)
        }
        _ => return None,
    };
    Some(target)
}
