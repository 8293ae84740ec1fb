//! Console output through `console_io(CONSOLEIO_write)`.
//!
//! [`print!`] and [`println!`] format into one 256-byte line buffer that is written with
//! one hypercall per line (on `'\n'`, or when full): the hypervisor prefixes every line
//! it receives with the domain's name, so a line must arrive whole.
//!
//! Interrupt handlers never print, and secondary vCPUs print nothing in normal runs, so
//! the buffer is re-entered only by an exception taken while printing, or by another
//! vCPU printing at the same time: then the `busy` flag routes the text to
//! [`emergency_print`] (also used by the exception handler), which never touches the
//! buffer.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::abi::guest::console_write;

/// Bytes in the line buffer.
const LINE_CAPACITY: usize = 256;

struct LineBuffer {
    bytes: [u8; LINE_CAPACITY],
    length: usize,
}

/// Base of the SBSA UART the device tree gives us, used instead of `CONSOLEIO_write`;
/// 0 when there is none.
static SBSA_UART: AtomicU64 = AtomicU64::new(0);

/// Makes the device tree's SBSA UART (`arm,sbsa-uart`), if any, the console.
pub fn set_fallback_uart(base: Option<u64>) {
    SBSA_UART.store(base.unwrap_or(0), Ordering::Relaxed);
}

/// Writes `bytes` to the SBSA UART at `base` (polled; UARTDR at 0, UARTFR at 0x18 with
/// TXFF at bit 5). Plain 32-bit loads and stores, which a hypervisor can emulate.
fn uart_write(base: u64, bytes: &[u8]) {
    let data = base as *mut u32;
    let flags = (base + 0x18) as *const u32;
    for &byte in bytes {
        // SAFETY: `base` is the device tree's UART, mapped as Device memory below 4 GiB
        // (`mmu`); its registers are 32 bits wide.
        unsafe {
            while flags.read_volatile() & (1 << 5) != 0 {}
            data.write_volatile(u32::from(byte));
        }
    }
}

impl LineBuffer {
    fn flush(&mut self) {
        if self.length > 0 {
            let line = &self.bytes[..self.length];
            // A UART in our tree is the console we were given (Xen's vpl011 for a dom0less
            // domU, whose CONSOLEIO_write output Xen filters); otherwise the hypervisor's
            // console. Failures are ignored: the console is the error channel.
            match SBSA_UART.load(Ordering::Relaxed) {
                0 => {
                    let _ = console_write(line);
                }
                base => uart_write(base, line),
            }
            self.length = 0;
        }
    }
}

impl Write for LineBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            self.bytes[self.length] = byte;
            self.length += 1;
            if byte == b'\n' || self.length == LINE_CAPACITY {
                self.flush();
            }
        }
        Ok(())
    }
}

struct Console {
    busy: AtomicBool,
    line: UnsafeCell<LineBuffer>,
}

// SAFETY: `line` is only reached while `busy` is held (see `print`), so there is never
// more than one reference to it.
unsafe impl Sync for Console {}

static CONSOLE: Console = Console {
    busy: AtomicBool::new(false),
    line: UnsafeCell::new(LineBuffer {
        bytes: [0; LINE_CAPACITY],
        length: 0,
    }),
};

/// Formats `arguments` into the line buffer (the engine behind [`print!`]).
pub fn print(arguments: fmt::Arguments<'_>) {
    if CONSOLE.busy.swap(true, Ordering::Acquire) {
        // Re-entered (an exception while printing): do not touch the buffer.
        emergency_print(arguments);
        return;
    }
    // SAFETY: `busy` was false and is now ours, so this is the only reference.
    let line = unsafe { &mut *CONSOLE.line.get() };
    let _ = line.write_fmt(arguments);
    CONSOLE.busy.store(false, Ordering::Release);
}

/// Writes out a partial line left in the buffer (before shutting down).
pub fn flush() {
    if CONSOLE.busy.swap(true, Ordering::Acquire) {
        return;
    }
    // SAFETY: as in `print`.
    let line = unsafe { &mut *CONSOLE.line.get() };
    line.flush();
    CONSOLE.busy.store(false, Ordering::Release);
}

/// Formats into a buffer on the stack and writes it at once, bypassing the line buffer.
pub fn emergency_print(arguments: fmt::Arguments<'_>) {
    let mut line = LineBuffer {
        bytes: [0; LINE_CAPACITY],
        length: 0,
    };
    let _ = line.write_fmt(arguments);
    line.flush();
}

/// Prints to the hypervisor console.
#[macro_export]
macro_rules! print {
    ($($argument:tt)*) => {
        $crate::console::print(format_args!($($argument)*))
    };
}

/// Prints a line to the hypervisor console.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::print(format_args!("\n"))
    };
    ($($argument:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($argument)*)))
    };
}
