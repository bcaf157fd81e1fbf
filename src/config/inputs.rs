//! The GitHub Action's inputs (action.yml, turned into flags by dist/run.sh) and the GitLab component's
//! inputs (templates/smart-rerun.yml, turned into variables) against the settings table: every setting
//! that is an input is the input the table names, and every input is a setting or one of the few that
//! only install and start smart-rerun. Every action input is described and has its row in
//! docs/github.md, and reaches the run script as `SR_IN_<INPUT>`; a token never on its command line.

use super::{Group, KEYS, Key};
use serde_yaml_ng::Value;

/// Action inputs that are not settings: how smart-rerun is installed, started and its files uploaded.
const ACTION_ONLY: &[&str] = &[
    "command",
    "pytest-args",
    "working-directory",
    "python",
    "version",
    "sha256",
    "download-url",
    "upload-artifacts",
    "artifact-name",
    "dashboard",
];

/// Component inputs that are not settings.
const COMPONENT_ONLY: &[&str] = &[
    "name",
    "stage",
    "image",
    "command",
    "working-directory",
    "version",
    "install",
    "sha256",
    "release-url",
    "artifacts-expire-in",
    "dashboard",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The variable the action's run step hands an input to dist/run.sh in.
fn env_name(input: &str) -> String {
    format!("SR_IN_{}", input.to_ascii_uppercase().replace('-', "_"))
}

fn inputs(spec: &Value) -> Vec<(String, Value)> {
    spec.as_mapping()
        .expect("inputs")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

/// An enumerated setting's input says which values it takes: the same as the setting's.
fn names_every_value(k: &Key, input: &str, description: &str) {
    for value in k.kind.values() {
        assert!(
            description.contains(value),
            "input {input} ({}) does not name the value {value}: {description}",
            k.ini
        );
    }
}

#[test]
fn every_setting_but_gitlab_s_is_an_action_input_passed_on_as_its_flag() {
    let action: Value = serde_yaml_ng::from_str(&read("action.yml")).unwrap();
    let inputs = inputs(&action["inputs"]);
    let run_sh = read("dist/run.sh");
    let steps = action["runs"]["steps"].as_sequence().unwrap();
    let run = steps
        .iter()
        .find(|s| s["id"].as_str() == Some("run"))
        .expect("the run step");
    for k in KEYS {
        let Some(input) = k.action_input else {
            assert_eq!(k.group, Group::Gitlab, "{} is no action input", k.ini);
            continue;
        };
        let spec = inputs
            .iter()
            .find(|(name, _)| name == input)
            .map(|(_, spec)| spec)
            .unwrap_or_else(|| panic!("action.yml has no input {input} for {}", k.ini));
        let description = spec["description"].as_str().unwrap_or_default();
        names_every_value(k, input, description);
        let expression = format!("${{{{ inputs.{input} }}}}");
        let (variable, _) = run["env"]
            .as_mapping()
            .unwrap()
            .iter()
            .find(|(_, v)| v.as_str() == Some(expression.as_str()))
            .unwrap_or_else(|| panic!("the run step does not pass {input} in its env"));
        let variable = variable.as_str().unwrap();
        assert_eq!(
            variable,
            env_name(input),
            "the run step's variable for {input}"
        );
        if k.is_sensitive() {
            assert!(
                !run_sh.contains(&format!("{variable} {}", k.flag)),
                "dist/run.sh puts the token {input} on the command line"
            );
        }
        let passed = if k.is_sensitive() {
            // Never on a command line: handed over as the setting's variable.
            run_sh.contains(&format!("export {}=\"${variable}\"", k.env))
        } else {
            run_sh
                .lines()
                .any(|l| l == format!("{variable} {}", k.flag))
        };
        assert!(passed, "dist/run.sh does not pass {variable} as {}", k.flag);
    }
    let docs = read("docs/github.md");
    for (name, spec) in &inputs {
        assert!(
            KEYS.iter().any(|k| k.action_input == Some(name.as_str()))
                || ACTION_ONLY.contains(&name.as_str()),
            "action input {name} is neither a setting of src/config/keys.rs nor an action-only input"
        );
        assert!(
            !spec["description"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .is_empty(),
            "action input {name} has no description"
        );
        assert!(
            docs.contains(&format!("| `{name}` |")),
            "docs/github.md's inputs table has no row for `{name}`"
        );
    }
}

#[test]
fn component_inputs_are_the_settings_the_table_names() {
    let template = read("templates/smart-rerun.yml");
    let (spec, body) = template
        .split_once("\n---\n")
        .expect("a spec, then the job");
    let spec: Value = serde_yaml_ng::from_str(spec).unwrap();
    let inputs = inputs(&spec["spec"]["inputs"]);
    let body: Value = serde_yaml_ng::from_str(body).unwrap();
    let (_, job) = body.as_mapping().unwrap().iter().next().expect("one job");
    let variables = job["variables"].as_mapping().expect("variables");
    for k in KEYS {
        let variable = variables.get(k.env).and_then(Value::as_str);
        let Some(input) = k.component_input else {
            assert!(
                variable.is_none(),
                "the component sets {} but the table names no component input for {}",
                k.env,
                k.ini
            );
            continue;
        };
        let (_, spec) = inputs
            .iter()
            .find(|(name, _)| name == input)
            .unwrap_or_else(|| panic!("the component has no input {input} for {}", k.ini));
        assert!(
            variable.is_some_and(|v| v.contains(&format!("$[[ inputs.{input} ]]"))),
            "the component does not pass {input} as {}",
            k.env
        );
        names_every_value(k, input, spec["description"].as_str().unwrap_or_default());
        if let Some(options) = spec["options"].as_sequence() {
            let mut options: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
            let mut values = k.kind.values().to_vec();
            options.sort_unstable();
            values.sort_unstable();
            assert_eq!(options, values, "the options of {input}");
        }
        if let Some(regex) = spec["regex"].as_str() {
            for value in k.kind.values() {
                assert!(
                    regex.contains(value),
                    "{input}'s regex {regex} rejects {value}"
                );
            }
        }
    }
    for (name, _) in &inputs {
        assert!(
            KEYS.iter()
                .any(|k| k.component_input == Some(name.as_str()))
                || COMPONENT_ONLY.contains(&name.as_str()),
            "component input {name} is neither a setting of src/config/keys.rs nor a component-only input"
        );
    }
}
