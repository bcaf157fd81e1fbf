fn main() -> std::process::ExitCode {
    smart_rerun::cli::main(std::env::args_os()).into()
}
