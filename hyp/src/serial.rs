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
    use crate::drivers::pl011::Pl011;
    use core::sync::atomic::{AtomicBool, Ordering};

    /// The serial port, once the device tree has named it.
    static SERIAL: spin::mutex::SpinMutex<Option<Pl011>> = spin::mutex::SpinMutex::new(None);
    /// The defmt encoder state of the frame being written (only touched under `SERIAL`).
    static mut ENCODER: defmt::Encoder = defmt::Encoder::new();
    /// Set while a defmt frame holds `SERIAL`.
    static IN_FRAME: AtomicBool = AtomicBool::new(false);

    /// Starts using `uart` for all output.
    pub fn install(uart: Pl011) {
        *SERIAL.lock() = Some(uart);
    }

    /// Writes one guest console line as `(name) line`.
    pub fn write_console_line(name: &str, line: &[u8]) {
        let mut serial = SERIAL.lock();
        if let Some(uart) = serial.as_mut() {
            write_prefixed_line(name, line, |bytes| uart.write_bytes(bytes));
        }
    }

    /// Releases the serial port after a panic interrupted a frame on this CPU.
    ///
    /// # Safety
    /// Only for the panic path: the caller must be sure no other CPU is mid-frame.
    pub unsafe fn force_release() {
        if IN_FRAME.swap(false, Ordering::Acquire) {
            // SAFETY: per the caller's contract the holder is the panicking frame.
            unsafe { SERIAL.force_unlock() };
        }
    }

    #[defmt::global_logger]
    struct SerialLogger;

    fn with_uart(action: impl FnOnce(&mut Pl011)) {
        // SAFETY: only called between `acquire` and `release`, which hold `SERIAL`.
        let serial = unsafe { &mut *SERIAL.as_mut_ptr() };
        if let Some(uart) = serial.as_mut() {
            action(uart);
        }
    }

    // SAFETY: `acquire` takes `SERIAL` (a spin lock; the hypervisor never runs with
    // interrupts unmasked, so no handler on this CPU can re-enter) and `release` gives it
    // back; `write` and `flush` run only in between.
    unsafe impl defmt::Logger for SerialLogger {
        fn acquire() {
            core::mem::forget(SERIAL.lock());
            IN_FRAME.store(true, Ordering::Relaxed);
            with_uart(|uart| uart.write_byte(FRAME_MARKER));
            // SAFETY: ENCODER is only used under SERIAL, which we now hold.
            let encoder = unsafe { &mut *core::ptr::addr_of_mut!(ENCODER) };
            with_uart(|uart| encoder.start_frame(|bytes| uart.write_bytes(bytes)));
        }

        unsafe fn flush() {}

        unsafe fn release() {
            // SAFETY: as in `acquire`.
            let encoder = unsafe { &mut *core::ptr::addr_of_mut!(ENCODER) };
            with_uart(|uart| encoder.end_frame(|bytes| uart.write_bytes(bytes)));
            IN_FRAME.store(false, Ordering::Relaxed);
            // SAFETY: `acquire` left SERIAL locked for this frame.
            unsafe { SERIAL.force_unlock() };
        }

        unsafe fn write(bytes: &[u8]) {
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
