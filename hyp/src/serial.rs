//! The serial port: guest console lines and the hypervisor's `defmt` frames share it.
//!
//! One lock (`SERIAL`) serialises whole lines and whole frames, so output from different
//! CPUs and domains never interleaves inside a line or a frame. On the host (unit tests)
//! console lines are collected in memory instead, so tests can check what a guest printed.
//!
//! Lock order: `hypervisor::HYPERVISOR` may be held when `SERIAL` is taken, never the
//! reverse.

#[cfg(target_os = "none")]
pub use target::*;

#[cfg(target_os = "none")]
mod target {
    use crate::console::{write_prefixed_line, FRAME_MARKER};
    use crate::drivers::ConsoleUart;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// The serial port, once the device tree has named it.
    static SERIAL: spin::mutex::SpinMutex<Option<ConsoleUart>> = spin::mutex::SpinMutex::new(None);
    /// The defmt encoder state of the frame being written (only touched under `SERIAL`).
    static mut ENCODER: defmt::Encoder = defmt::Encoder::new();
    /// Which CPU holds `SERIAL` (its MPIDR affinity + 1; 0 = nobody), so a panicking CPU
    /// can tell whether the lock it needs is its own.
    static HOLDER: AtomicU64 = AtomicU64::new(0);
    /// Set while a defmt frame holds `SERIAL`.
    static IN_FRAME: AtomicBool = AtomicBool::new(false);
    /// Set when a panicking CPU could not get the port: output is dropped from then on
    /// rather than waiting for ever.
    static SILENCED: AtomicBool = AtomicBool::new(false);

    fn this_cpu() -> u64 {
        (crate::arch::aarch64::cpu::read_mpidr() & 0xff_00ff_ffff) + 1
    }

    /// Starts using `uart` for all output.
    pub fn install(uart: ConsoleUart) {
        *SERIAL.lock() = Some(uart);
    }

    /// Unmasks the UART's receive interrupts (console input).
    pub fn enable_input() {
        let mut serial = SERIAL.lock();
        if let Some(uart) = serial.as_mut() {
            uart.enable_receive_interrupts();
        }
    }

    /// Reads received bytes into `buffer` (at most its length) and returns how many. The
    /// receive interrupts are cleared first, so a byte arriving after the last read raises
    /// them again.
    pub fn read_input(buffer: &mut [u8]) -> usize {
        let mut serial = SERIAL.lock();
        HOLDER.store(this_cpu(), Ordering::Relaxed);
        let mut count = 0;
        if let Some(uart) = serial.as_mut() {
            uart.clear_receive_interrupts();
            for slot in buffer.iter_mut() {
                let Some(byte) = uart.read_byte() else {
                    break;
                };
                *slot = byte;
                count += 1;
            }
        }
        HOLDER.store(0, Ordering::Relaxed);
        count
    }

    /// Writes one guest console line as `(name) line`.
    pub fn write_console_line(name: &str, line: &[u8]) {
        if SILENCED.load(Ordering::Relaxed) {
            return;
        }
        let mut serial = SERIAL.lock();
        HOLDER.store(this_cpu(), Ordering::Relaxed);
        if let Some(uart) = serial.as_mut() {
            write_prefixed_line(name, line, |bytes| uart.write_bytes(bytes));
        }
        HOLDER.store(0, Ordering::Relaxed);
    }

    /// Makes the serial port usable by a panicking CPU: if this CPU holds it (the panic
    /// interrupted a line or a frame), it is released, ending a broken frame; if another
    /// CPU holds it, the port is waited for a bounded time and otherwise output is dropped.
    pub fn prepare_for_panic() {
        if HOLDER.load(Ordering::Acquire) == this_cpu() {
            HOLDER.store(0, Ordering::Relaxed);
            if IN_FRAME.swap(false, Ordering::Acquire) {
                // SAFETY: this CPU holds the port; the frame it was writing is ended with
                // the delimiter so the host decoder resynchronises.
                let serial = unsafe { &mut *SERIAL.as_mut_ptr() };
                if let Some(uart) = serial.as_mut() {
                    uart.write_byte(0);
                }
            }
            // SAFETY: the holder is this CPU, which is not coming back to release it.
            unsafe { SERIAL.force_unlock() };
            return;
        }
        for _ in 0..10_000_000 {
            if !SERIAL.is_locked() {
                return;
            }
            core::hint::spin_loop();
        }
        SILENCED.store(true, Ordering::Release);
    }

    #[defmt::global_logger]
    struct SerialLogger;

    fn with_uart(action: impl FnOnce(&mut ConsoleUart)) {
        // SAFETY: only called between `acquire` and `release`, which hold `SERIAL`.
        let serial = unsafe { &mut *SERIAL.as_mut_ptr() };
        if let Some(uart) = serial.as_mut() {
            action(uart);
        }
    }

    // SAFETY: `acquire` takes `SERIAL` (a spin lock; the hypervisor never runs with
    // interrupts unmasked, so no handler on this CPU can re-enter) and records this CPU as
    // its holder; `write` and `release` act only while this CPU is the holder, and
    // `release` gives the lock back.
    unsafe impl defmt::Logger for SerialLogger {
        fn acquire() {
            if SILENCED.load(Ordering::Relaxed) {
                return;
            }
            core::mem::forget(SERIAL.lock());
            HOLDER.store(this_cpu(), Ordering::Relaxed);
            IN_FRAME.store(true, Ordering::Relaxed);
            with_uart(|uart| uart.write_byte(FRAME_MARKER));
            // SAFETY: ENCODER is only used under SERIAL, which we now hold.
            let encoder = unsafe { &mut *core::ptr::addr_of_mut!(ENCODER) };
            with_uart(|uart| encoder.start_frame(|bytes| uart.write_bytes(bytes)));
        }

        unsafe fn flush() {}

        unsafe fn release() {
            if HOLDER.load(Ordering::Relaxed) != this_cpu() {
                return; // silenced: `acquire` took nothing
            }
            // SAFETY: as in `acquire`.
            let encoder = unsafe { &mut *core::ptr::addr_of_mut!(ENCODER) };
            with_uart(|uart| encoder.end_frame(|bytes| uart.write_bytes(bytes)));
            IN_FRAME.store(false, Ordering::Relaxed);
            HOLDER.store(0, Ordering::Relaxed);
            // SAFETY: `acquire` left SERIAL locked for this frame, held by this CPU.
            unsafe { SERIAL.force_unlock() };
        }

        unsafe fn write(bytes: &[u8]) {
            if HOLDER.load(Ordering::Relaxed) != this_cpu() {
                return; // silenced: `acquire` took nothing
            }
            // SAFETY: as in `acquire`.
            let encoder = unsafe { &mut *core::ptr::addr_of_mut!(ENCODER) };
            with_uart(|uart| encoder.write(bytes, |encoded| uart.write_bytes(encoded)));
        }
    }
}

#[cfg(not(target_os = "none"))]
pub use host::*;

#[cfg(not(target_os = "none"))]
mod host {
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    std::thread_local! {
        static LINES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
        static INPUT: std::cell::RefCell<std::collections::VecDeque<u8>> = const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
    }

    /// Nothing to enable on the host.
    pub fn enable_input() {}

    /// Queues bytes as if typed on the UART (host tests).
    pub fn type_input(bytes: &[u8]) {
        INPUT.with(|input| input.borrow_mut().extend(bytes.iter().copied()));
    }

    /// Takes bytes typed with [`type_input`], at most `buffer.len()`.
    pub fn read_input(buffer: &mut [u8]) -> usize {
        INPUT.with(|input| {
            let mut input = input.borrow_mut();
            let count = buffer.len().min(input.len());
            for (slot, byte) in buffer.iter_mut().zip(input.drain(..count)) {
                *slot = byte;
            }
            count
        })
    }

    /// Records one guest console line as `(name) line`, without its newline (host tests).
    pub fn write_console_line(name: &str, line: &[u8]) {
        let mut text = Vec::new();
        crate::console::write_prefixed_line(name, line, |bytes| text.extend_from_slice(bytes));
        let text = String::from_utf8_lossy(&text).trim_end_matches('\n').into();
        LINES.with(|lines| lines.borrow_mut().push(text));
    }

    /// Takes the console lines recorded so far on this thread.
    pub fn take_console_lines() -> Vec<String> {
        LINES.with(|lines| core::mem::take(&mut *lines.borrow_mut()))
    }
}
