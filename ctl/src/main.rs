fn main() -> std::process::ExitCode {
    egressctl::run()
}
