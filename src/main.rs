use std::process::ExitCode;

fn main() -> ExitCode {
    opencarbon::nn::reuse_large_allocations();
    match opencarbon::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The one place errors are printed.
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
