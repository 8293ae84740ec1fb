//! `cargo xtask`: builds the hypervisor and its guests, boots them under QEMU, and runs
//! every test. See `cargo xtask help` and the README.

mod args;
mod bench;
mod config;
mod debian;
mod dtb;
mod fuzz;
mod fuzz_guest;
mod images;
mod lifecycle_test;
mod linux;
mod run;
mod sdcard;
mod setup;
mod test;

use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&arguments) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        args::Command::Help => {
            print!("{}", args::USAGE);
            Ok(true)
        }
        args::Command::Build => images::build().map(|images| {
            for path in [
                images.hyp_img,
                images.hyp_elf,
                images.guest_img,
                images.guest_elf,
            ] {
                println!("{}", path.display());
            }
            true
        }),
        args::Command::Run(run) => run::run(&run),
        args::Command::Test(test) => test::test(&test),
        args::Command::Bench(bench) => bench::bench(&bench),
        args::Command::FuzzGuest(fuzz) => fuzz_guest::fuzz_guest(&fuzz),
        args::Command::FuzzHost(fuzz) => fuzz::fuzz_host(&fuzz),
        args::Command::Sdcard { dir, config } => {
            sdcard::sdcard(&dir, config.as_ref()).map(|()| true)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
