//! `mpass-guard`: the native companion tool (`check`, `explain`, `mint`,
//! `jwks`). Everything lives in [`mpass_guard::cli`]; see `--help`.

fn main() -> std::process::ExitCode {
    mpass_guard::cli::main()
}
