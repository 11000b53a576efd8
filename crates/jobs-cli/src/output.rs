//! What the command line writes. Its reader may stop early (`offload submit … | head`):
//! the pipe is then closed and writing fails with `BrokenPipe`. `println!` panics on that,
//! with a backtrace; here the failure becomes [`Closed`], which `main` recognises
//! ([`is_closed_pipe`]) and ends the command quietly on, as other Unix tools do. Notes
//! on standard error are best effort: a closed standard error never fails a command.

use std::fmt;
use std::io::{self, Write};

/// Standard output, as every command writes to it: a closed pipe comes back as an error
/// carrying [`Closed`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().write(buf).map_err(closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush().map_err(closed)
    }
}

/// The reader of standard output went away.
#[derive(Debug)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the reader of standard output went away")
    }
}

impl std::error::Error for Closed {}

/// Marks a broken pipe on standard output as [`Closed`], so it is told apart from a broken
/// pipe anywhere else (the API closing a connection is a real failure).
fn closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, Closed)
    } else {
        e
    }
}

/// The command failed only because its output's reader went away: exit quietly.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<Closed>()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(|inner| inner.is::<Closed>())
    })
}

/// A line on standard output (`println!` that returns a closed pipe as an error instead of
/// panicking): `say!("…")?`.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::output::Stdout, $($arg)*)
    }};
}

/// A note on standard error (`eprintln!` that never panics): lost if standard error is
/// closed, which is no reason to fail a command.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub(crate) use {note, say};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_standard_output_is_a_quiet_exit() {
        let ours = anyhow::Error::new(closed(io::Error::from(io::ErrorKind::BrokenPipe)))
            .context("printing the job");
        assert!(is_closed_pipe(&ours));
        let elsewhere = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("sending the upload");
        assert!(!is_closed_pipe(&elsewhere));
        let other = anyhow::Error::new(closed(io::Error::from(io::ErrorKind::PermissionDenied)));
        assert!(!is_closed_pipe(&other));
    }
}
