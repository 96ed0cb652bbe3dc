use std::process::ExitCode;

fn main() -> ExitCode {
    opencarbon::nn::reuse_large_allocations();
    match opencarbon::nn::use_thread_setting().and_then(|()| opencarbon::cli::main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The one place errors are printed.
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
