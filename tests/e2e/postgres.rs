//! A real PostgreSQL server for the history tests, started in a temp dir on a free loopback port and
//! stopped when dropped. PostgreSQL refuses to run as root, so under root (CI here) the data directory
//! belongs to the `postgres` system user and the server runs as that user.
//!
//! The server binaries are PostgreSQL 15's, at `/usr/lib/postgresql/15/bin` (Debian's postgresql-15;
//! `SMART_RERUN_TEST_PG_BIN` points elsewhere). Missing binaries fail the test with what to install:
//! these tests are never skipped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

/// `SMART_RERUN_TEST_PG_BIN`, else PostgreSQL 15's, else the newest installed (Ubuntu packages another
/// major version; the history schema needs nothing of 15's own).
fn bin_dir() -> PathBuf {
    let default = PathBuf::from("/usr/lib/postgresql/15/bin");
    let newest = || {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse().ok()?;
                Some((major, e.path().join("bin")))
            })
            .filter(|(_, bin)| bin.join("initdb").exists())
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    };
    let bin = match std::env::var_os("SMART_RERUN_TEST_PG_BIN") {
        Some(bin) => PathBuf::from(bin),
        None if default.exists() => default,
        None => newest().unwrap_or(default),
    };
    for tool in ["initdb", "pg_ctl", "postgres", "psql"] {
        assert!(
            bin.join(tool).exists(),
            "PostgreSQL's {tool} is not in {}: install the server, e.g. `apt-get install postgresql-15` \
             on Debian (scripts/bootstrap-postgres does it), or set SMART_RERUN_TEST_PG_BIN to its bin \
             directory",
            bin.display()
        );
    }
    bin
}

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("id runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("sr-pg-").tempdir().unwrap();
        let as_postgres = id(&["-u"]) == 0;
        if as_postgres {
            let (uid, gid) = (id(&["-u", "postgres"]), id(&["-g", "postgres"]));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut server = PgServer {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        let data = server.data();
        server.pg(&[
            server.bin.join("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        // A port can be taken between the probe and the bind: try a few.
        for _ in 0..5 {
            server.port = free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40",
                server.port,
                server.dir.path().display()
            );
            let log = server.dir.path().join("server.log");
            let started = server.try_pg(&[
                server.bin.join("pg_ctl").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ]);
            if started {
                return server;
            }
        }
        panic!(
            "PostgreSQL did not start:\n{}",
            std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).args(argv);
            c
        } else {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        };
        cmd.stdin(Stdio::null()).current_dir(self.dir.path());
        cmd
    }

    fn try_pg(&self, argv: &[&str]) -> bool {
        let out = self.command(argv).output().expect("runs");
        out.status.success()
    }

    fn pg(&self, argv: &[&str]) {
        let out = self.command(argv).output().expect("runs");
        assert!(
            out.status.success(),
            "{argv:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new, empty database on this server, and its URL.
    pub fn database(&self, name: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL with psql over TCP; returns its unaligned, tuples-only output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.try_pg(&[
            self.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }
}
