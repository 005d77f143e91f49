//! The `ferry-hub` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    ferry_hub::main_with_args(std::env::args_os().collect())
}
