//! What the commands print on stdout goes through [`write`] (`out!`, `outln!`), never `print!`:
//! `print!` panics when stdout is a pipe whose reader has gone (`remedyd simulate … | head -1`).
//! A reader that stops early has what it wanted, so a closed pipe ends the command at once with
//! exit 0 and no message; any other write error (a full disk behind a redirect) ends it with 1,
//! named on stderr.

use std::io::Write;

/// Writes to stdout, or ends the process (see the module).
pub fn write(args: std::fmt::Arguments<'_>) {
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        stop(&e)
    }
}

/// Writes a line to stdout, or ends the process (see the module).
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        stop(&e)
    }
}

/// The exit of a command whose stdout cannot be written.
fn stop(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("remedyd: writing to stdout: {e}");
    std::process::exit(1)
}

/// `print!` that ends quietly on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::app::cli::out::write(format_args!($($arg)*))
    };
}

/// `println!` that ends quietly on a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::app::cli::out::write_line(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
