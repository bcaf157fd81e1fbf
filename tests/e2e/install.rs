//! The action's installer (dist/install.sh) end to end, as a runner runs it for `uses:
//! aki-07/smart-rerun@v1`: the release dry run's archive, wheel and checksums served over real HTTPS on
//! 127.0.0.1, the action's tree at `.../_actions/aki-07/smart-rerun/v1` carrying the dry run's
//! dist/checksums.txt, real curl, real pip. `cargo` is a stub that fails (and leaves a mark), so a case
//! that should never compile proves it did not.

use crate::common;
use crate::https::{self, Server, Tls};
use std::path::{Path, PathBuf};
use std::process::Command;

const ARCHIVE: &str = "smart-rerun-v1.0.0-x86_64-unknown-linux-musl.tar.gz";

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn version_in_cargo_toml() -> String {
    let text = std::fs::read_to_string(common::repo_root().join("Cargo.toml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned()
}

/// A runner: the action's tree, a release and a package index behind one HTTPS server, a tool cache.
struct Runner {
    dir: tempfile::TempDir,
    action: PathBuf,
    tls: Tls,
    server: Server,
    /// Extra environment for the next runs.
    env: Vec<(String, String)>,
    /// A `cargo` that records its call and installs a stub, instead of the failing one.
    cargo_builds: bool,
}

impl Runner {
    /// The action at `reference`, its tree holding the dry run's checksums (`tree_checksums` edits them);
    /// the release v1.0.0 holds the dry run's archive and SHA256SUMS, the index its wheel.
    fn new(reference: &str, tree_checksums: impl Fn(&str) -> String) -> Runner {
        assert_eq!(
            version_in_cargo_toml(),
            "1.0.0",
            "these tests name the 1.0.0 files"
        );
        let dry = https::dry_run();
        let dir = tempfile::tempdir().unwrap();
        let action = dir
            .path()
            .join("_actions/aki-07/smart-rerun")
            .join(reference);
        std::fs::create_dir_all(action.join("dist")).unwrap();
        std::fs::create_dir_all(action.join("install")).unwrap();
        let root = common::repo_root();
        for f in [
            "Cargo.toml",
            "action.yml",
            "install/action.yml",
            "dist/install.sh",
            "dist/run.sh",
        ] {
            std::fs::copy(root.join(f), action.join(f)).unwrap();
        }
        let sums = std::fs::read_to_string(dry.join("checksums.txt")).unwrap();
        std::fs::write(action.join("dist/checksums.txt"), tree_checksums(&sums)).unwrap();

        let site = dir.path().join("site");
        let release = site.join("releases/v1.0.0");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::copy(dry.join(ARCHIVE), release.join(ARCHIVE)).unwrap();
        std::fs::write(release.join("SHA256SUMS"), &sums).unwrap();
        let wheel = https::dry_run_file("pytest_smart_rerun-1.0.0-", ".whl");
        https::python_index(
            &site,
            &[(&wheel, &std::fs::read(dry.join(&wheel)).unwrap())],
        );

        let tls = Tls::new();
        let server = Server::https(&site, &tls);
        std::fs::create_dir_all(dir.path().join("temp")).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("stubs")).unwrap();
        Runner {
            dir,
            action,
            tls,
            server,
            env: Vec::new(),
            cargo_builds: false,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn site(&self, rel: &str) -> PathBuf {
        self.path("site").join(rel)
    }

    fn set(&mut self, name: &str, value: &str) {
        self.env.push((name.to_owned(), value.to_owned()));
    }

    fn cargo_ran(&self) -> bool {
        self.path("cargo.log").exists()
    }

    /// install.sh as the main action's install step runs it; (exit code, log, step outputs).
    fn run(&self, os: &str, arch: &str) -> (i32, String, String) {
        self.run_as(&self.action, os, arch)
    }

    fn run_as(&self, action_path: &Path, os: &str, arch: &str) -> (i32, String, String) {
        let outputs = self.path("outputs");
        let _ = std::fs::remove_file(&outputs);
        let stubs = self.path("stubs");
        let cargo = stubs.join("cargo");
        let log = self.path("cargo.log");
        let body = if self.cargo_builds {
            "while [ \"$1\" != --root ]; do shift; done\nmkdir -p \"$2/bin\"\n\
             for f in smart-rerun smart-rerun.exe; do printf '#!/bin/sh\\necho built\\n' > \"$2/bin/$f\"; \
             chmod +x \"$2/bin/$f\"; done\n"
        } else {
            "echo 'cargo must not run here' >&2\nexit 1\n"
        };
        std::fs::write(
            &cargo,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n{body}", log.display()),
        )
        .unwrap();
        make_executable(&cargo);
        // The runner's Python: the test venv's, which has pip.
        let python3 = stubs.join("python3");
        std::fs::write(
            &python3,
            format!("#!/bin/sh\nexec '{}' \"$@\"\n", common::python().display()),
        )
        .unwrap();
        make_executable(&python3);
        let path = format!(
            "{}:{}",
            stubs.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg(self.action.join("dist/install.sh"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.path("home"))
            .env("GITHUB_ACTION_PATH", action_path)
            .env("GITHUB_OUTPUT", &outputs)
            .env("GITHUB_PATH", self.path("path"))
            .env("GITHUB_JOB", "test")
            .env("GITHUB_RUN_ATTEMPT", "2")
            .env(
                "SMART_RERUN_GITHUB_MATRIX",
                "{\n  \"python\": \"3.12\",\n  \"os\": \"ubuntu-latest\"\n}",
            )
            .env("RUNNER_OS", os)
            .env("RUNNER_ARCH", arch)
            .env("RUNNER_TEMP", self.path("temp"))
            .env("RUNNER_TOOL_CACHE", self.path("toolcache"))
            .env(
                "SMART_RERUN_DOWNLOAD_URL",
                format!("{}/releases", self.server.https_url()),
            )
            .env("CURL_CA_BUNDLE", &self.tls.ca)
            .env("PIP_CERT", &self.tls.ca)
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env(
                "PIP_INDEX_URL",
                format!("{}/simple/", self.server.https_url()),
            )
            .env("SR_CARGO", &cargo);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            std::fs::read_to_string(&outputs).unwrap_or_default(),
        )
    }
}

fn output<'a>(outputs: &'a str, name: &str) -> &'a str {
    outputs
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no output {name} in {outputs}"))
}

/// What `BIN --version` prints.
fn version_of(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn tarball(dir: &Path, name: &str, script: &str) -> PathBuf {
    let stage = dir.join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(stage.join("smart-rerun"), script).unwrap();
    make_executable(&stage.join("smart-rerun"));
    let archive = dir.join(name);
    assert!(
        Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&stage)
            .arg("smart-rerun")
            .status()
            .unwrap()
            .success()
    );
    archive
}

#[test]
fn the_action_at_v1_installs_the_archive_its_tree_verifies_and_rechecks_the_tool_cache() {
    let r = Runner::new("v1", |s| s.to_owned());
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 0, "{log}");
    let bin = PathBuf::from(output(&outputs, "bin"));
    let cached = r.path("toolcache/smart-rerun/1.0.0/X64");
    assert_eq!(bin, cached.join("smart-rerun"));
    assert!(r.path("toolcache/smart-rerun/1.0.0/X64.complete").exists());
    assert_eq!(version_of(&bin), "smart-rerun 1.0.0");
    assert_eq!(
        std::fs::read_to_string(r.path("path")).unwrap().trim(),
        cached.display().to_string()
    );
    assert_eq!(
        output(&outputs, "artifact"),
        "smart-rerun-test-3.12-ubuntu-latest-2"
    );
    // Only the archive was fetched: the release's SHA256SUMS is never read, pip never ran.
    assert_eq!(
        r.server.requests(),
        [format!("/releases/v1.0.0/{ARCHIVE}")],
        "{log}"
    );
    assert!(!r.cargo_ran(), "{log}");

    // Cached: no download; the archive is checked again.
    let (code, log, _) = r.run("Linux", "X64");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("smart-rerun: 1.0.0: cached in") && log.contains("archive verified"),
        "{log}"
    );
    assert_eq!(r.server.requests().len(), 1);

    // A binary changed in the tool cache (a shared self-hosted runner) is put back from the archive.
    std::fs::write(&bin, "#!/bin/sh\necho pwned\n").unwrap();
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("differs from the verified archive; replaced it"),
        "{log}"
    );
    assert_eq!(
        version_of(Path::new(output(&outputs, "bin"))),
        "smart-rerun 1.0.0"
    );
    assert_eq!(r.server.requests().len(), 1, "no download needed");

    // A changed archive in the cache (and a changed binary with it) is downloaded again.
    let kept = cached.join(ARCHIVE);
    let evil = tarball(&r.path("evil"), ARCHIVE, "#!/bin/sh\necho pwned\n");
    std::fs::copy(&evil, &kept).unwrap();
    std::fs::write(&bin, "#!/bin/sh\necho pwned\n").unwrap();
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("does not match the action's checksum; downloading it again"),
        "{log}"
    );
    assert_eq!(
        version_of(Path::new(output(&outputs, "bin"))),
        "smart-rerun 1.0.0"
    );
    assert_eq!(r.server.requests().len(), 2, "{:?}", r.server.requests());

    // The install-only action, one directory down, finds the same tree and the cache.
    let (code, log, outputs) = r.run_as(&r.action.join("install"), "Linux", "X64");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("1.0.0: cached in"), "{log}");
    assert_eq!(Path::new(output(&outputs, "bin")), bin);
    assert!(!r.cargo_ran());
}

#[test]
fn an_archive_replaced_in_the_release_with_a_matching_sha256sums_is_refused() {
    let r = Runner::new("v1", |s| s.to_owned());
    // Whoever can replace a release asset can replace SHA256SUMS beside it.
    let evil = tarball(&r.path("evil"), ARCHIVE, "#!/bin/sh\necho pwned\n");
    std::fs::copy(&evil, r.site(&format!("releases/v1.0.0/{ARCHIVE}"))).unwrap();
    std::fs::write(
        r.site("releases/v1.0.0/SHA256SUMS"),
        format!("{}  {ARCHIVE}\n", https::sha256(&evil)),
    )
    .unwrap();
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(&format!(
            "::error title=smart-rerun install::checksum mismatch for {ARCHIVE}: the action's tree lists"
        )),
        "{log}"
    );
    assert!(!outputs.contains("bin="), "{outputs}");
    assert!(!r.path("toolcache/smart-rerun/1.0.0/X64.complete").exists());
    assert!(
        !r.path("toolcache/smart-rerun/1.0.0/X64/smart-rerun")
            .exists()
    );
    assert!(!r.path("path").exists(), "nothing joined PATH");
    assert_eq!(
        r.server.requests(),
        [format!("/releases/v1.0.0/{ARCHIVE}")],
        "no SHA256SUMS, no wheel, no fallback"
    );
    assert!(!r.cargo_ran(), "{log}");
}

#[test]
fn a_version_the_actions_tree_has_no_checksums_for_is_refused_unless_its_sha256_is_given() {
    // `version: 0.9.0` with the action at v1 (1.0.0): the tree vouches for nothing of 0.9.0.
    let mut r = Runner::new("v1", |s| s.to_owned());
    let old = "smart-rerun-v0.9.0-x86_64-unknown-linux-musl.tar.gz";
    std::fs::create_dir_all(r.site("releases/v0.9.0")).unwrap();
    let archive = tarball(&r.path("old"), old, "#!/bin/sh\necho smart-rerun 0.9.0\n");
    std::fs::copy(&archive, r.site(&format!("releases/v0.9.0/{old}"))).unwrap();
    std::fs::write(
        r.site("releases/v0.9.0/SHA256SUMS"),
        format!("{}  {old}\n", https::sha256(&archive)),
    )
    .unwrap();
    r.set("SR_VERSION", "0.9.0");
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("::error title=smart-rerun install::the action's tree at 'v1' lists no checksums for smart-rerun 0.9.0"),
        "{log}"
    );
    assert!(!outputs.contains("bin="));
    assert!(r.server.requests().is_empty(), "{:?}", r.server.requests());

    // The user's own pin: accepted, and checked.
    r.set("SR_SHA256", &"0".repeat(64));
    let (code, log, _) = r.run("Linux", "X64");
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("checksum mismatch"), "{log}");
    r.set("SR_SHA256", &https::sha256(&archive));
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        version_of(Path::new(output(&outputs, "bin"))),
        "smart-rerun 0.9.0"
    );

    // A tree without dist/checksums.txt at a release tag installs nothing either.
    let r = Runner::new("v1.0.0", |_| String::new());
    std::fs::remove_file(r.action.join("dist/checksums.txt")).unwrap();
    let (code, log, _) = r.run("Linux", "X64");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("lists no checksums for smart-rerun 1.0.0"),
        "{log}"
    );
    assert!(r.server.requests().is_empty());
    assert!(!r.cargo_ran());
}

#[test]
fn download_urls_that_are_not_https_are_refused_even_through_a_redirect() {
    let mut r = Runner::new("v1", |s| s.to_owned());
    // The same release over plain HTTP: were it accepted, the install would succeed.
    let plain = Server::http(&r.path("site"));
    for (var, url) in [
        ("SR_DOWNLOAD_URL", format!("{}/releases", plain.http_url())),
        (
            "SMART_RERUN_DOWNLOAD_URL",
            format!("{}/releases", plain.http_url()),
        ),
        (
            "SR_DOWNLOAD_URL",
            format!("file://{}", r.path("site/releases").display()),
        ),
    ] {
        let mut r2_env = r.env.clone();
        r2_env.push((var.to_owned(), url.clone()));
        let saved = std::mem::replace(&mut r.env, r2_env);
        let (code, log, outputs) = r.run("Linux", "X64");
        r.env = saved;
        assert_eq!(code, 1, "{var}={url}: {log}");
        assert!(
            log.contains("::error title=smart-rerun install::download-url must be an https:// URL"),
            "{log}"
        );
        assert!(!outputs.contains("bin="));
    }
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());

    // An https URL that redirects to http: curl refuses to follow (and the wheel path refuses an
    // http index), so nothing is installed and the plain server is never asked.
    let redirecting = Server::https_redirecting_to(&r.path("site"), &r.tls, plain.port);
    r.set(
        "SR_DOWNLOAD_URL",
        &format!("{}/to-http/releases", redirecting.https_url()),
    );
    r.set("PIP_INDEX_URL", &format!("{}/simple/", plain.http_url()));
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 1, "{log}");
    assert!(
        redirecting.requests() == [format!("/to-http/releases/v1.0.0/{ARCHIVE}")],
        "{:?}",
        redirecting.requests()
    );
    assert!(log.contains("could not download"), "{log}");
    assert!(log.contains("is not https"), "{log}");
    assert!(!outputs.contains("bin="));
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
    assert!(!r.cargo_ran());
}

#[test]
fn without_an_archive_the_wheel_installs_with_pip_require_hashes_and_never_cargo() {
    let wheel = https::dry_run_file("pytest_smart_rerun-1.0.0-", ".whl");
    // A platform the tree lists no archive for (here: the archive's line taken out).
    let r = Runner::new("v1", |s| {
        s.lines()
            .filter(|l| !l.ends_with(ARCHIVE))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 0, "{log}");
    let bin = PathBuf::from(output(&outputs, "bin"));
    assert_eq!(bin, r.path("temp/smart-rerun-wheel/bin/smart-rerun"));
    assert_eq!(version_of(&bin), "smart-rerun 1.0.0");
    assert!(log.contains("--require-hashes"), "{log}");
    let requests = r.server.requests();
    assert!(
        requests.contains(&"/simple/pytest-smart-rerun/".to_owned())
            && requests.contains(&format!("/files/{wheel}")),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|p| p.starts_with("/releases/")),
        "{requests:?}"
    );
    assert!(!r.cargo_ran(), "{log}");

    // The tree lists the archive, the mirror lacks it: the wheel stands in, cargo still never runs.
    let r = Runner::new("v1", |s| s.to_owned());
    std::fs::remove_file(r.site(&format!("releases/v1.0.0/{ARCHIVE}"))).unwrap();
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("could not download"), "{log}");
    assert_eq!(
        version_of(Path::new(output(&outputs, "bin"))),
        "smart-rerun 1.0.0"
    );
    assert!(!r.cargo_ran(), "{log}");

    // A wheel replaced on the index does not match the tree's hashes: refused, nothing else tried.
    let r = Runner::new("v1", |s| {
        s.lines()
            .filter(|l| !l.ends_with(ARCHIVE))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let mut bytes = std::fs::read(r.site(&format!("files/{wheel}"))).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(r.site(&format!("files/{wheel}")), bytes).unwrap();
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("wheel from the package index does not match the sha256 in the action's tree"),
        "{log}"
    );
    assert!(!outputs.contains("bin="));
    assert!(!r.path("temp/smart-rerun-wheel/bin/smart-rerun").exists());
    assert!(!r.cargo_ran(), "{log}");
}

#[test]
fn cargo_builds_the_actions_tree_only_without_a_release_or_any_archive_or_wheel() {
    // Windows on ARM: no archive, and the index has no wheel for it.
    let mut r = Runner::new("v1", |s| s.to_owned());
    r.cargo_builds = true;
    std::fs::remove_dir_all(r.site("files")).unwrap();
    std::fs::remove_dir_all(r.site("simple")).unwrap();
    let (code, log, outputs) = r.run("Windows", "ARM64");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("no release archive for Windows/ARM64"),
        "{log}"
    );
    assert!(log.contains("pip could not install"), "{log}");
    let calls = std::fs::read_to_string(r.path("cargo.log")).unwrap();
    assert!(
        calls.starts_with(&format!(
            "install --locked --quiet --path {}",
            r.action.display()
        )),
        "{calls}"
    );
    assert!(
        output(&outputs, "bin").ends_with("smart-rerun-build/bin/smart-rerun.exe"),
        "{outputs}"
    );

    // A branch is not a release: its tree is the source, nothing is downloaded.
    let mut r = Runner::new("main", |s| s.to_owned());
    r.cargo_builds = true;
    let (code, log, outputs) = r.run("Linux", "X64");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("ref 'main' is not a release"), "{log}");
    assert!(output(&outputs, "bin").ends_with("smart-rerun-build/bin/smart-rerun"));
    assert!(r.server.requests().is_empty());
}
