fn main() -> std::process::ExitCode {
    incentives::cli::main()
}
