//! Real HTTPS on 127.0.0.1 for the installer tests: a throwaway CA and a server certificate for 127.0.0.1
//! made with the `openssl` CLI, Python's `http.server` behind `ssl` serving a directory (curl trusts the
//! CA through `CURL_CA_BUNDLE`, pip through `PIP_CERT`), and the release dry run
//! (`scripts/release --dry-run`) whose archive, wheel and checksums they serve.

use crate::common;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A CA and a certificate for 127.0.0.1 and localhost that it signed.
pub struct Tls {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI makes the test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Tls {
    pub fn new() -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("ca.cnf"),
            "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
             subjectKeyIdentifier = hash\n",
        )
        .unwrap();
        std::fs::write(
            d.join("server.cnf"),
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        )
        .unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            d,
            &[
                &["req", "-new", "-nodes"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.csr",
                    "-subj",
                    "/CN=smart-rerun test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                "x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "2", "-extfile",
                "ca.cnf", "-out", "ca.pem",
            ],
        );
        openssl(
            d,
            &[
                &["req", "-new", "-nodes"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.cnf",
                "-out",
                "server.pem",
            ],
        );
        Tls {
            ca: d.join("ca.pem"),
            cert: d.join("server.pem"),
            key: d.join("server.key"),
            _dir: dir,
        }
    }
}

/// Serves ROOT; logs each request's path; `/to-http/REST` answers 302 to `http://127.0.0.1:PORT/REST`
/// (PORT given), to check that a redirect cannot leave https. Stops when its stdin closes (the test's
/// `Server` is dropped) or after 5 minutes, whichever is first.
const SERVER: &str = r#"
import functools, http.server, ssl, sys, threading
root, log, cert, key, redirect_port = sys.argv[1:6]

class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(log, "a") as f:
            f.write(self.path + "\n")
        if self.path.startswith("/to-http/"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%s/%s" % (redirect_port, self.path[len("/to-http/"):]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
if cert:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)

def stop_when_stdin_closes():
    sys.stdin.read()
    server.shutdown()

threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
threading.Timer(300, server.shutdown).start()
server.serve_forever()
"#;

/// A static file server on 127.0.0.1 (Python's http.server), over HTTPS or plain HTTP.
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Server {
    pub fn https(root: &Path, tls: &Tls) -> Server {
        Server::start(root, Some(tls), 0)
    }

    pub fn http(root: &Path) -> Server {
        Server::start(root, None, 0)
    }

    /// HTTPS whose `/to-http/…` redirects to plain HTTP on `http_port`.
    pub fn https_redirecting_to(root: &Path, tls: &Tls, http_port: u16) -> Server {
        Server::start(root, Some(tls), http_port)
    }

    fn start(root: &Path, tls: Option<&Tls>, redirect_port: u16) -> Server {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("requests.log");
        let (cert, key) = match tls {
            Some(t) => (t.cert.display().to_string(), t.key.display().to_string()),
            None => (String::new(), String::new()),
        };
        let mut child = Command::new(common::python())
            .arg("-c")
            .arg(SERVER)
            .arg(root)
            .arg(&log)
            .arg(cert)
            .arg(key)
            .arg(redirect_port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the file server did not start: {line:?}"));
        Server {
            child,
            port,
            log,
            _log_dir: log_dir,
        }
    }

    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The output of `scripts/release --dry-run target/release-dry-run`, made once per test process (cargo
/// makes it quick when the release build is up to date; scripts/test runs it before the tests).
pub fn dry_run() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = common::repo_root().join("target/release-dry-run");
        let mut cmd = Command::new("bash");
        cmd.arg(common::repo_root().join("scripts/release"))
            .arg("--dry-run")
            .arg(&out);
        // The environment cargo gives a test (CARGO_*, the library path) would make cargo rebuild the
        // release's dependencies whose build scripts watch it; scripts/test runs the same dry run
        // outside the tests first.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("CARGO") || k == "LD_LIBRARY_PATH" || k == "RUST_TEST_THREADS" {
                cmd.env_remove(k);
            }
        }
        let run = cmd.output().unwrap();
        assert!(
            run.status.success(),
            "scripts/release --dry-run: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        out
    })
}

/// The dry run's checksums.txt as (sha256, file) pairs.
pub fn dry_run_checksums() -> Vec<(String, String)> {
    std::fs::read_to_string(dry_run().join("checksums.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (sum, file) = l.split_once("  ").expect("`SHA256  FILE`");
            (sum.to_owned(), file.to_owned())
        })
        .collect()
}

/// The dry run's file whose name starts with `prefix` and ends with `suffix`.
pub fn dry_run_file(prefix: &str, suffix: &str) -> String {
    dry_run_checksums()
        .into_iter()
        .map(|(_, f)| f)
        .find(|f| f.starts_with(prefix) && f.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {prefix}*{suffix} in the dry run"))
}

pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A PEP 503 simple index for pytest-smart-rerun under ROOT/simple, with the given wheels in ROOT/files.
pub fn python_index(root: &Path, wheels: &[(&str, &[u8])]) {
    let files = root.join("files");
    let project = root.join("simple/pytest-smart-rerun");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&project).unwrap();
    let mut links = String::new();
    for (name, bytes) in wheels {
        std::fs::write(files.join(name), bytes).unwrap();
        links.push_str(&format!("<a href=\"/files/{name}\">{name}</a>\n"));
    }
    std::fs::write(
        project.join("index.html"),
        format!("<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n"),
    )
    .unwrap();
}
