//! The `handoff` binary: the command line is the library's `cli` room
//! (`src/cli/`), the work its `app` room.

fn main() -> std::process::ExitCode {
    handoff::cli::main()
}
