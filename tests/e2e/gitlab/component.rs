//! The CI/CD component: its inputs, its script run as a runner would, the release it installs and
//! verifies.

use super::*;

fn component() -> (serde_yaml_ng::Mapping, String) {
    parse_component(
        &std::fs::read_to_string(repo_root().join("templates/smart-rerun.yml")).unwrap(),
    )
}

/// The component as the release commit has it: the dry run's stamped copy (scripts/release --stamp).
fn released_component() -> String {
    std::fs::read_to_string(https::dry_run().join("tree/templates/smart-rerun.yml")).unwrap()
}

fn parse_component(text: &str) -> (serde_yaml_ng::Mapping, String) {
    let (header, body) = text
        .split_once("\n---\n")
        .expect("a `---` after the spec header");
    let header: serde_yaml_ng::Value = serde_yaml_ng::from_str(header).unwrap();
    let inputs = header["spec"]["inputs"]
        .as_mapping()
        .expect("spec:inputs")
        .clone();
    (inputs, body.to_owned())
}

/// The body with each `$[[ inputs.x ]]` replaced as GitLab does: by `values`' entry, else the default.
fn interpolate(body: &str, inputs: &serde_yaml_ng::Mapping, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("$[[") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("]]").unwrap() + start + 2;
        let name = rest[start + 3..end - 2]
            .trim()
            .strip_prefix("inputs.")
            .unwrap();
        let value = match values.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => v.to_string(),
            None => match &inputs
                .get(name)
                .unwrap_or_else(|| panic!("unknown input {name}"))["default"]
            {
                serde_yaml_ng::Value::String(s) => s.clone(),
                serde_yaml_ng::Value::Bool(b) => b.to_string(),
                other => panic!("input {name} has no usable default: {other:?}"),
            },
        };
        out.push_str(&value);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Every line of the `script`, `before_script` and `after_script` blocks of the raw template.
fn raw_script_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut indent: Option<usize> = None;
    for line in text.lines() {
        let depth = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if let Some(d) = indent {
            if trimmed.is_empty() || depth > d {
                lines.push(line);
                continue;
            }
            indent = None;
        }
        if ["script:", "before_script:", "after_script:"]
            .iter()
            .any(|k| trimmed.starts_with(k))
        {
            indent = Some(depth);
            lines.push(line);
        }
    }
    lines
}

#[test]
fn the_component_uses_every_input_and_never_pastes_one_into_a_script() {
    let (inputs, body) = component();
    assert!(inputs.len() >= 15, "{inputs:?}");
    for (name, spec) in &inputs {
        let name = name.as_str().unwrap();
        assert!(
            body.contains(&format!("$[[ inputs.{name} ]]")),
            "input {name} is never used"
        );
        assert!(
            spec.get("description").is_some() && spec.get("default").is_some(),
            "input {name} needs a description and a default"
        );
    }
    let script = raw_script_lines(&body);
    assert!(script.len() > 20, "{script:?}");
    for line in &script {
        assert!(
            !line.contains("$[["),
            "an input pasted into a script: {line}"
        );
    }
    let job: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&interpolate(&body, &inputs, &[])).unwrap();
    let job = &job["pytest"];
    assert_eq!(job["stage"].as_str(), Some("test"));
    assert_eq!(job["artifacts"]["when"].as_str(), Some("always"));
    assert_eq!(
        job["artifacts"]["reports"]["junit"].as_str(),
        Some("smart-rerun-junit.xml")
    );
    // Every variable is a SMART_RERUN_* name, and every setting the script does not read is one the
    // binary reads (`smart-rerun config` lists them).
    let config = Command::new(bin())
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&config.stdout);
    for (name, _) in job["variables"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        assert!(name.starts_with("SMART_RERUN_"), "{name}");
        let flag = format!(
            "--{}",
            name["SMART_RERUN_".len()..]
                .to_ascii_lowercase()
                .replace('_', "-")
        );
        let script_reads = script
            .iter()
            .any(|l| l.contains(&format!("${name}")) || l.contains(&format!("${{{name}")));
        assert!(
            script_reads || help.contains(&flag),
            "{name} is read by neither the script nor smart-rerun ({flag})"
        );
    }
}

#[test]
fn the_plain_gitlab_ci_example_uploads_the_junit_file_it_writes() {
    let text = std::fs::read_to_string(repo_root().join("examples/gitlab-ci.yml")).unwrap();
    let ci: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let job = &ci["pytest"];
    let junit = job["variables"]["SMART_RERUN_JUNIT_XML"].as_str().unwrap();
    assert_eq!(job["artifacts"]["reports"]["junit"].as_str(), Some(junit));
    assert_eq!(job["artifacts"]["when"].as_str(), Some("always"));
    let script: Vec<&str> = job["script"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        script.iter().any(|l| l.contains("sha256sum -c")),
        "{script:?}"
    );
    assert!(script.last().unwrap().starts_with("smart-rerun run"));
    // docs/gitlab.md shows the same job.
    let docs = std::fs::read_to_string(repo_root().join("docs/gitlab.md")).unwrap();
    for line in &script {
        assert!(docs.contains(line), "docs/gitlab.md lacks {line}");
    }
}

/// The job's machine for the component: the release site (the dry run's archive, SHA256SUMS and a pip
/// index with its wheel) over real HTTPS, a CA the downloaders trust, and a directory of stubs put first
/// on PATH: `python3` (the test venv's), a `cargo` that must never run, and a `curl` that records whether
/// a GitLab token was in its environment before running the real one.
struct Job {
    dir: tempfile::TempDir,
    tls: Tls,
    server: Server,
}

const ARCHIVE: &str = "smart-rerun-v1.0.0-x86_64-unknown-linux-musl.tar.gz";

#[cfg(unix)]
fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(unix)]
impl Job {
    fn new() -> Job {
        let dry = https::dry_run();
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        let release = site.join("releases/v1.0.0");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::copy(dry.join(ARCHIVE), release.join(ARCHIVE)).unwrap();
        std::fs::copy(dry.join("checksums.txt"), release.join("SHA256SUMS")).unwrap();
        let wheel = https::dry_run_file("pytest_smart_rerun-1.0.0-", ".whl");
        https::python_index(
            &site,
            &[(&wheel, &std::fs::read(dry.join(&wheel)).unwrap())],
        );
        let tls = Tls::new();
        let server = Server::https(&site, &tls);
        let stubs = dir.path().join("stubs");
        std::fs::create_dir_all(&stubs).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        executable(
            &stubs.join("python3"),
            &format!("#!/bin/sh\nexec '{}' \"$@\"\n", python().display()),
        );
        executable(
            &stubs.join("cargo"),
            &format!(
                "#!/bin/sh\necho cargo >> '{}'\nexit 1\n",
                dir.path().join("cargo.log").display()
            ),
        );
        let curl = which::which("curl").expect("curl");
        executable(
            &stubs.join("curl"),
            &format!(
                "#!/bin/sh\necho \"token:${{SMART_RERUN_GITLAB_TOKEN:-none}}:${{CI_JOB_TOKEN:-none}}\" >> '{}'\nexec '{}' \"$@\"\n",
                dir.path().join("curl.log").display(),
                curl.display()
            ),
        );
        Job { dir, tls, server }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn release_url(&self) -> String {
        format!("{}/releases", self.server.https_url())
    }

    /// The environment a job in this machine has, PATH aside.
    fn env(&self) -> Vec<(String, String)> {
        let ca = self.tls.ca.display().to_string();
        vec![
            ("CURL_CA_BUNDLE".into(), ca.clone()),
            ("SSL_CERT_FILE".into(), ca.clone()),
            ("PIP_CERT".into(), ca),
            ("PIP_CONFIG_FILE".into(), "/dev/null".into()),
            ("PIP_NO_CACHE_DIR".into(), "1".into()),
            (
                "PIP_INDEX_URL".into(),
                format!("{}/simple/", self.server.https_url()),
            ),
            ("TMPDIR".into(), self.path("tmp").display().to_string()),
        ]
    }

    fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.path("stubs").display(),
            std::env::var("PATH").unwrap()
        )
    }

    /// The job's script for `template` (the stamped one unless given), as a runner runs it.
    fn run(&self, p: &Project, template: Option<&str>, values: &[(&str, &str)]) -> (i32, String) {
        self.run_with(p, template, values, &[])
    }

    fn run_with(
        &self,
        p: &Project,
        template: Option<&str>,
        values: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> (i32, String) {
        let text = template.map_or_else(released_component, str::to_owned);
        let mut values = values.to_vec();
        let release_url = self.release_url();
        if !values.iter().any(|(k, _)| *k == "release-url") {
            values.push(("release-url", &release_url));
        }
        let mut env = self.env();
        env.push(("PATH".into(), self.path_var()));
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        let out = run_component(&text, p, &values, &env);
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn cargo_ran(&self) -> bool {
        self.path("cargo.log").exists()
    }

    /// The smart-rerun install directories the job left in its TMPDIR.
    fn leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("smart-rerun.")
            })
            .collect()
    }
}

/// Runs the component's job script with `sh`, as a runner would: the job's variables (inputs
/// interpolated, `${CI_PROJECT_DIR}` expanded), in the project directory, with `env` on top.
fn run_component(
    text: &str,
    p: &Project,
    values: &[(&str, &str)],
    env: &[(String, String)],
) -> std::process::Output {
    let (inputs, body) = parse_component(text);
    let job: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&interpolate(&body, &inputs, values)).unwrap();
    let job = job.as_mapping().unwrap().values().next().unwrap().clone();
    let script: Vec<&str> = job["script"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let dir = p.path().display().to_string();
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script.join("\n")).current_dir(p.path());
    for key in [
        "GITLAB_TOKEN",
        "SMART_RERUN_GITLAB_TOKEN",
        "CI_JOB_TOKEN",
        "PYTEST_ADDOPTS",
        "PYTEST_PLUGINS",
        "VIRTUAL_ENV",
    ] {
        cmd.env_remove(key);
    }
    // This machine's own pip and TLS settings (a find-links directory, a CA bundle that wins over
    // PIP_CERT) are not the job's: the tests give their own.
    for (key, _) in std::env::vars() {
        if key.starts_with("PIP_")
            || [
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
                "SSL_CERT_FILE",
                "SSL_CERT_DIR",
            ]
            .contains(&key.as_str())
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("GITLAB_CI", "true")
        .env("CI_PROJECT_DIR", &dir)
        .env("CI_JOB_NAME", "pytest")
        .env("COUNTER_DIR", p.counters())
        .env("NO_COLOR", "1");
    for (name, value) in job["variables"].as_mapping().unwrap() {
        let (value, expand) = match value {
            serde_yaml_ng::Value::Mapping(m) => (
                m.get("value").and_then(|v| v.as_str()).unwrap().to_owned(),
                m.get("expand").and_then(|v| v.as_bool()).unwrap_or(true),
            ),
            v => (v.as_str().unwrap().to_owned(), true),
        };
        let value = if expand {
            value.replace("${CI_PROJECT_DIR}", &dir)
        } else {
            value
        };
        cmd.env(name.as_str().unwrap(), value);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[cfg(unix)]
#[test]
fn the_component_installs_the_release_it_vouches_for_outside_the_project_and_runs_the_suite() {
    let job = Job::new();
    let p = flaky_project();
    // Tools committed in the project, where the component used to put its PATH entry and at the top:
    // none of them may run (the job's token is in the environment while installing).
    let pwned = p.path().join("pwned");
    let fake = format!("#!/bin/sh\necho \"$0\" >> '{}'\nexit 0\n", pwned.display());
    std::fs::create_dir_all(p.path().join(".smart-rerun/bin")).unwrap();
    for f in [
        ".smart-rerun/bin/curl",
        ".smart-rerun/bin/tar",
        ".smart-rerun/bin/smart-rerun",
        "curl",
        "tar",
    ] {
        executable(&p.path().join(f), &fake);
    }
    let command = format!("{} -m pytest", python().display());
    let (code, log) = job.run_with(
        &p,
        None,
        &[("command", &command), ("max", "3"), ("mr-note", "false")],
        &[
            ("SMART_RERUN_GITLAB_TOKEN", TOKEN),
            ("CI_JOB_TOKEN", "job-token"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(
        !pwned.exists(),
        "ran: {:?}",
        std::fs::read_to_string(&pwned)
    );
    assert!(log.contains("smart-rerun 1.0.0"), "{log}");
    assert!(log.contains("FLAKY"), "{log}");
    assert_eq!(
        job.server.requests(),
        [format!("/releases/v1.0.0/{ARCHIVE}")],
        "the archive only: no SHA256SUMS"
    );
    assert_eq!(
        std::fs::read_to_string(job.path("curl.log")).unwrap(),
        "token:none:none\n",
        "curl ran once, without the GitLab tokens"
    );
    assert!(!job.cargo_ran());
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
    // The defaults: reports in the project directory, the GitLab JUnit layout.
    let report = common::read_report(&p.path().join("smart-rerun.json"));
    assert_eq!(report["run"]["policy"]["max_attempts"], 3);
    let junit = std::fs::read_to_string(p.path().join("smart-rerun-junit.xml")).unwrap();
    assert!(junit.contains("test_flaky [flaky]"), "{junit}");
    assert!(p.path().join("smart-rerun.md").exists());

    // With the note on and no token, the note is skipped in one line and the job goes on.
    std::fs::remove_file(p.path().join("smart-rerun.json")).unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command)]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("merge request note skipped: no GitLab token"),
        "{log}"
    );

    // An input that looks like shell stays data: the command is split, never evaluated.
    let marker = p.path().join("evaluated");
    let hostile = format!(
        "{} -m pytest $(touch {}) ;touch {}",
        python().display(),
        marker.display(),
        marker.display()
    );
    let (_, log) = job.run(&p, None, &[("command", &hostile)]);
    assert!(!marker.exists(), "{log}");
}

#[cfg(unix)]
#[test]
fn the_component_refuses_a_replaced_archive_an_unvouched_version_and_plain_http() {
    let job = Job::new();
    let p = flaky_project();
    let command = format!("{} -m pytest", python().display());
    let stage = tempfile::tempdir().unwrap();
    executable(&stage.path().join("smart-rerun"), "#!/bin/sh\necho pwned\n");
    let evil = stage.path().join(ARCHIVE);
    assert!(
        Command::new("tar")
            .arg("-czf")
            .arg(&evil)
            .arg("-C")
            .arg(stage.path())
            .arg("smart-rerun")
            .status()
            .unwrap()
            .success()
    );

    // A replaced archive with a SHA256SUMS to match: never runs, and nothing else is tried.
    let site_archive = job.path(&format!("site/releases/v1.0.0/{ARCHIVE}"));
    let good = std::fs::read(&site_archive).unwrap();
    std::fs::copy(&evil, &site_archive).unwrap();
    std::fs::write(
        job.path("site/releases/v1.0.0/SHA256SUMS"),
        format!("{}  {ARCHIVE}\n", https::sha256(&evil)),
    )
    .unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command)]);
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains(&format!("checksum mismatch for {ARCHIVE}")),
        "{log}"
    );
    assert!(!log.contains("pwned"), "{log}");
    assert!(!p.path().join("smart-rerun.json").exists(), "nothing ran");
    assert!(!job.cargo_ran());
    std::fs::write(&site_archive, good).unwrap();

    // A version this component release carries no checksums for, unless its sha256 is given.
    std::fs::create_dir_all(job.path("site/releases/v0.9.0")).unwrap();
    std::fs::copy(
        &evil,
        job.path("site/releases/v0.9.0/smart-rerun-v0.9.0-x86_64-unknown-linux-musl.tar.gz"),
    )
    .unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command), ("version", "0.9.0")]);
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("this component lists no checksums for smart-rerun 0.9.0"),
        "{log}"
    );
    let (code, log) = job.run(
        &p,
        None,
        &[
            ("command", &command),
            ("version", "0.9.0"),
            ("sha256", &https::sha256(&evil)),
        ],
    );
    assert_eq!(code, 0, "the user's own pin is honoured: {log}");
    assert!(log.contains("pwned"), "{log}");

    // The unstamped template (a branch, not a release) vouches for nothing.
    let unstamped = std::fs::read_to_string(repo_root().join("templates/smart-rerun.yml")).unwrap();
    let (code, log) = job.run(&p, Some(&unstamped), &[("command", &command)]);
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("this component ref is not a release"), "{log}");

    // Plain http: GitLab refuses the input by its regex; the script refuses it too, before a request.
    let (inputs, _) = component();
    let regex = inputs["release-url"]["regex"].as_str().unwrap();
    assert_eq!(regex, r"^https://[^\s]+$");
    let plain = Server::http(&job.path("site"));
    let (code, log) = job.run(
        &p,
        None,
        &[
            ("command", &command),
            ("release-url", &format!("{}/releases", plain.http_url())),
        ],
    );
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("https only"), "{log}");
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
    // An https release that redirects to http is refused by curl, and by Python's downloader.
    let redirecting = Server::https_redirecting_to(&job.path("site"), &job.tls, plain.port);
    let url = format!("{}/to-http/releases", redirecting.https_url());
    let plain_index = format!("{}/simple/", plain.http_url());
    for path in [job.path_var(), no_curl_path(&job)] {
        let (code, log) = job.run_with(
            &p,
            None,
            &[("command", &command), ("release-url", &url)],
            &[("PATH", &path), ("PIP_INDEX_URL", &plain_index)],
        );
        assert_eq!(code, 3, "{log}");
        assert!(log.contains("could not download"), "{log}");
    }
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
    assert!(!job.cargo_ran());
}

/// A PATH with what the job script needs and no curl (as in python:3.12-slim), the stubs first.
#[cfg(unix)]
fn no_curl_path(job: &Job) -> String {
    let dir = job.path("no-curl");
    if !dir.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        for tool in [
            "sh",
            "env",
            "mktemp",
            "uname",
            "awk",
            "tar",
            "gzip",
            "mkdir",
            "mv",
            "chmod",
            "rm",
            "cat",
            "grep",
            "sha256sum",
            "cut",
            "dirname",
        ] {
            let found = which::which(tool).unwrap_or_else(|_| panic!("{tool}"));
            std::os::unix::fs::symlink(found, dir.join(tool)).unwrap();
        }
        for stub in ["python3", "cargo"] {
            std::os::unix::fs::symlink(job.path("stubs").join(stub), dir.join(stub)).unwrap();
        }
    }
    dir.display().to_string()
}

#[cfg(unix)]
#[test]
fn without_curl_or_the_archive_the_component_still_installs_verified_bits() {
    let job = Job::new();
    let p = flaky_project();
    let command = format!("{} -m pytest", python().display());

    // No curl in the image: Python's downloader, https only, the same checksum.
    let (code, log) = job.run_with(
        &p,
        None,
        &[("command", &command)],
        &[("PATH", &no_curl_path(&job))],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("smart-rerun 1.0.0"), "{log}");
    assert_eq!(
        job.server.requests(),
        [format!("/releases/v1.0.0/{ARCHIVE}")]
    );
    assert!(!job.path("curl.log").exists());

    // The mirror lacks the archive: the wheel, with pip --require-hashes; never cargo.
    std::fs::remove_file(job.path(&format!("site/releases/v1.0.0/{ARCHIVE}"))).unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("with pip --require-hashes"), "{log}");
    assert!(log.contains("smart-rerun 1.0.0"), "{log}");
    let wheel = https::dry_run_file("pytest_smart_rerun-1.0.0-", ".whl");
    assert!(
        job.server.requests().contains(&format!("/files/{wheel}")),
        "{:?}",
        job.server.requests()
    );
    assert!(!job.cargo_ran(), "{log}");

    // A wheel replaced on the index: refused.
    let mut bytes = std::fs::read(job.path(&format!("site/files/{wheel}"))).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(job.path(&format!("site/files/{wheel}")), bytes).unwrap();
    let (code, log) = job.run(&p, None, &[("command", &command)]);
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("does not match this component's sha256"),
        "{log}"
    );
    assert!(!job.cargo_ran(), "{log}");
}

#[test]
fn a_redirect_to_another_server_is_not_followed_with_the_token() {
    // GitLab's token is a header of its own (`PRIVATE-TOKEN`), which an HTTP client's usual redirect
    // rules do not know to drop: a 302 to another origin must not take it there.
    let elsewhere = FakeGitLab::start();
    let server = FakeGitLab::start();
    server.state().redirect_to = Some(format!("http://127.0.0.1:{}", elsewhere.port));
    let out = run_job(&flaky_project(), &server, &[], &[]);
    out.assert_code(0);
    assert!(
        !server.requests().is_empty(),
        "the first server was asked: {}",
        out.dump()
    );
    let leaked: Vec<Request> = elsewhere
        .requests()
        .into_iter()
        .filter(|r| r.token.is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "the token went to the other server: {leaked:?}"
    );
    let lines = note_lines(&out);
    assert_eq!(lines.len(), 1, "{}", out.dump());
    assert!(
        lines[0].starts_with("smart-rerun: warning: merge request note not posted")
            && lines[0].contains(&format!(
                "a redirect to http://127.0.0.1:{}, which is not followed",
                elsewhere.port
            )),
        "{}",
        lines[0]
    );
}
