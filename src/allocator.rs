//! The binary's allocator, chosen by the program it runs. The engine answers many small
//! requests and spent about a fifth of its CPU in glibc's malloc and free (ingest benchmark,
//! perf): it runs on mimalloc (engine CPU per message 109 -> 86 µs, medians of 5 and 6 runs).
//! The operator keeps glibc's: with mimalloc its peak RSS at 1,000 Tenants rose from 61 to 90 MiB.
//!
//! The choice is made at the first allocation, before anything was allocated by either, from
//! `/proc/self/cmdline` read without allocating; every block is freed by the allocator that
//! made it because the choice never changes.

use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

/// The subcommand that runs on mimalloc.
const ON_MIMALLOC: &[u8] = b"engine";
/// Global options that take their value as the next argument (they come before the subcommand).
const OPTIONS_WITH_VALUE: &[&[u8]] = &[b"--log-format"];

pub struct ByProgram;

static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

fn mimalloc() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        MIMALLOC => true,
        SYSTEM => false,
        _ => {
            // Only the first allocation gets here, before main: the process has one thread.
            let mut cmdline = [0u8; 512];
            let read = read_cmdline(&mut cmdline);
            let chosen = subcommand(&cmdline[..read]) == Some(ON_MIMALLOC);
            CHOICE.store(if chosen { MIMALLOC } else { SYSTEM }, Ordering::Relaxed);
            chosen
        }
    }
}

/// Reads the start of the command line into `buf` with plain system calls (std's file API
/// may allocate); 0 when it cannot be read.
fn read_cmdline(buf: &mut [u8]) -> usize {
    // SAFETY: a NUL-terminated path, a buffer of the given length, and the descriptor closed.
    unsafe {
        let fd = libc::open(
            c"/proc/self/cmdline".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let read = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        usize::try_from(read).unwrap_or(0)
    }
}

/// The subcommand in a NUL-separated command line: the first argument after the program's
/// name that is neither an option nor an option's value.
fn subcommand(cmdline: &[u8]) -> Option<&[u8]> {
    // Each argument ends with a NUL: the split's last piece is empty.
    let mut arguments = cmdline.split(|b| *b == 0).skip(1).filter(|a| !a.is_empty());
    while let Some(argument) = arguments.next() {
        if OPTIONS_WITH_VALUE.contains(&argument) {
            arguments.next();
        } else if !argument.starts_with(b"-") {
            return Some(argument);
        }
    }
    None
}

/// The allocator this process chose.
fn chosen() -> &'static dyn GlobalAlloc {
    if mimalloc() { &MiMalloc } else { &System }
}

// SAFETY: every call goes to one of two allocators, always the same one for the process's life,
// so each block is freed or grown by the allocator that made it.
unsafe impl GlobalAlloc for ByProgram {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { chosen().alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { chosen().alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { chosen().dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { chosen().realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subcommand_is_the_first_argument_that_is_no_option_or_option_value() {
        assert_eq!(subcommand(b"flomastr\0engine\0"), Some(&b"engine"[..]));
        assert_eq!(
            subcommand(b"/usr/bin/flomastr\0--log-format\0json\0engine\0--listen\0x\0"),
            Some(&b"engine"[..])
        );
        assert_eq!(
            subcommand(b"flomastr\0--log-format=json\0operator\0"),
            Some(&b"operator"[..])
        );
        assert_eq!(subcommand(b"flomastr\0--help\0"), None);
        assert_eq!(subcommand(b""), None);
        // A value that looks like the subcommand is still the option's value.
        assert_eq!(
            subcommand(b"flomastr\0--log-format\0engine\0up\0"),
            Some(&b"up"[..])
        );
    }

    #[test]
    fn the_choice_was_made_once_from_this_process_command_line() {
        let cmdline = std::fs::read("/proc/self/cmdline").unwrap();
        let expected = if subcommand(&cmdline) == Some(ON_MIMALLOC) {
            MIMALLOC
        } else {
            SYSTEM
        };
        assert_eq!(CHOICE.load(Ordering::Relaxed), expected);
    }
}
