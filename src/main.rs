//! The `consort` command: one binary for operators, members and developers.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
