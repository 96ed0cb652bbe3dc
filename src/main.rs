use std::process::ExitCode;

fn main() -> ExitCode {
    opencarbon::cli::die_quietly_on_closed_pipe();
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
