//! The settings as command-line flags of `run` and `config`: [`SettingArgs`] adds one clap argument per
//! row of [`KEYS`] and reads the given values back into a [`RawLayer`]. The flags are not a second list:
//! their names, value names, help and grouping in `--help` all come from the table.

use super::{KEYS, Key, Kind, RawLayer, Source};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use std::path::PathBuf;

/// The values given as flags, by setting, in the table's order.
#[derive(Debug, Clone, Default)]
pub(crate) struct SettingArgs {
    values: Vec<(&'static Key, String)>,
}

impl SettingArgs {
    /// The command-line layer: each flag given, from the command line or (`from_pytest`) handed over by
    /// the pytest plugin as `--smart-rerun-*` options.
    pub(crate) fn layer(&self, from_pytest: bool) -> RawLayer {
        let mut layer = RawLayer::default();
        for (k, value) in &self.values {
            let source = match from_pytest {
                true => Source::PytestOption(k.flag),
                false => Source::Flag(k.flag),
            };
            layer.set(k.ini, value.clone(), source);
        }
        layer
    }
}

/// The clap argument of a key; its id is the ini key.
fn arg(k: &'static Key) -> Arg {
    let long = k.flag.trim_start_matches("--");
    let arg = Arg::new(k.ini)
        .long(long)
        .value_name(k.value_name())
        .help(k.help_with_default())
        .help_heading(k.group.title())
        .action(ArgAction::Set);
    match k.kind {
        // A switch alone means true; `--early-stop false` turns it off.
        Kind::Bool => arg.num_args(0..=1).default_missing_value("true"),
        // `--max -1` is a value, rejected by validation with the key, source and what is allowed.
        Kind::Count(_) | Kind::Seconds => arg.allow_negative_numbers(true),
        Kind::Path => arg.value_parser(clap::value_parser!(PathBuf)),
        _ => arg,
    }
}

impl Args for SettingArgs {
    fn augment_args(cmd: Command) -> Command {
        KEYS.iter().fold(cmd, |cmd, k| cmd.arg(arg(k)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SettingArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = SettingArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for k in KEYS {
            let value = match k.kind {
                Kind::Path => matches
                    .get_one::<PathBuf>(k.ini)
                    .map(|p| p.display().to_string()),
                _ => matches.get_one::<String>(k.ini).cloned(),
            };
            if let Some(value) = value {
                self.values.retain(|(given, _)| given.ini != k.ini);
                self.values.push((k, value));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: SettingArgs,
    }

    fn parse(args: &[&str]) -> Result<RawLayer, clap::Error> {
        let args = std::iter::once("smart-rerun").chain(args.iter().copied());
        Cli::try_parse_from(args).map(|c| c.settings.layer(false))
    }

    #[test]
    fn a_switch_alone_is_true_and_takes_a_value() {
        let layer = parse(&["--fail-on-flaky", "--early-stop", "false"]).unwrap();
        assert_eq!(
            layer.get("smart_rerun_fail_on_flaky").unwrap().value,
            "true"
        );
        assert_eq!(layer.get("smart_rerun_early_stop").unwrap().value, "false");
        assert_eq!(layer.values.len(), 2);
    }

    #[test]
    fn negative_numbers_reach_validation_as_values() {
        let layer = parse(&["--max", "-1", "--delay=-0.5"]).unwrap();
        assert_eq!(layer.get("smart_rerun_max").unwrap().value, "-1");
        assert_eq!(layer.get("smart_rerun_delay").unwrap().value, "-0.5");
    }

    #[test]
    fn a_value_flag_without_its_value_is_a_usage_error() {
        let err = parse(&["--max"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(err.to_string().contains("--max <N>"), "{err}");
    }

    #[test]
    fn the_pytest_plugin_names_its_options_as_the_source() {
        let cli = Cli::try_parse_from(["smart-rerun", "--max=3"]).unwrap();
        let layer = cli.settings.layer(true);
        assert_eq!(
            layer.get("smart_rerun_max").unwrap().source.to_string(),
            "pytest option --smart-rerun-max"
        );
    }

    #[test]
    fn help_shows_each_setting_under_its_group_with_its_values_and_default() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for k in KEYS {
            let heading = help
                .find(&format!("{}:", k.group.title()))
                .unwrap_or_else(|| panic!("no {} heading: {help}", k.group.title()));
            let at = help
                .find(&format!("{} ", k.flag))
                .unwrap_or_else(|| panic!("{} is not in --help", k.flag));
            assert!(heading < at, "{} is not under {}", k.flag, k.group.title());
        }
        assert!(
            help.contains("--junit-compat <surefire|per-attempt|gitlab>"),
            "{help}"
        );
        assert!(help.contains("--backoff <none|linear|exp>"), "{help}");
        assert!(help.contains("[default: 2]"), "{help}");
    }
}
