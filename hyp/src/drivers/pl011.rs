//! Arm PL011 UART: transmit polled, receive polled or by interrupt.
//!
//! The firmware (or QEMU) has already set the baud rate; the hypervisor only makes sure the
//! UART, its transmitter and its receiver are enabled, so it works at whatever clock the
//! board feeds it. [`Pl011::enable_receive_interrupts`] unmasks the receive and
//! receive-timeout interrupts (console input); nothing else ever interrupts.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [u32,
    Flags [
        TransmitFifoFull OFFSET(5) NUMBITS(1) [],
        ReceiveFifoEmpty OFFSET(4) NUMBITS(1) [],
        Busy OFFSET(3) NUMBITS(1) []
    ],
    Control [
        ReceiveEnable OFFSET(9) NUMBITS(1) [],
        TransmitEnable OFFSET(8) NUMBITS(1) [],
        UartEnable OFFSET(0) NUMBITS(1) []
    ]
];

register_structs! {
    /// The PL011 register block (Arm PrimeCell UART TRM, 3.2).
    pub Registers {
        (0x00 => data: ReadWrite<u32>),
        (0x04 => _receive_status: ReadWrite<u32>),
        (0x08 => _reserved0),
        (0x18 => flags: ReadOnly<u32, Flags::Register>),
        (0x1c => _reserved1),
        (0x30 => control: ReadWrite<u32, Control::Register>),
        (0x34 => _reserved2),
        (0x38 => interrupt_mask: ReadWrite<u32>),
        (0x3c => _reserved3),
        (0x44 => interrupt_clear: WriteOnly<u32>),
        (0x48 => @END),
    }
}

/// `UARTIMSC` / `UARTICR` bit 4: receive interrupt (RXIM / RXIC).
const INTERRUPT_RECEIVE: u32 = 1 << 4;
/// `UARTIMSC` / `UARTICR` bit 6: receive timeout interrupt (RTIM / RTIC).
const INTERRUPT_RECEIVE_TIMEOUT: u32 = 1 << 6;

/// A PL011 at a fixed (identity-mapped) address.
pub struct Pl011 {
    registers: *const Registers,
}

// SAFETY: the register block is device memory; every access is a single volatile load or
// store, and the owner serialises users behind the console lock.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// Takes over the PL011 at `base`.
    ///
    /// # Safety
    /// `base` must be the mapped address of a PL011 register block that nothing else
    /// drives.
    pub unsafe fn new(base: usize) -> Self {
        let uart = Self {
            registers: base as *const Registers,
        };
        let registers = uart.registers();
        let control = registers.control.get();
        registers.control.set(control | (1 << 9) | (1 << 8) | 1);
        registers.interrupt_mask.set(0);
        uart
    }

    fn registers(&self) -> &Registers {
        // SAFETY: `new`'s contract: the pointer is a live, mapped PL011 register block.
        unsafe { &*self.registers }
    }

    /// Sends one byte, waiting for room in the transmit FIFO.
    pub fn write_byte(&mut self, byte: u8) {
        let registers = self.registers();
        while registers.flags.is_set(Flags::TransmitFifoFull) {
            core::hint::spin_loop();
        }
        registers.data.set(u32::from(byte));
    }

    /// Sends every byte of `bytes`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_byte(*byte);
        }
    }

    /// Unmasks the receive and receive-timeout interrupts (`UARTIMSC`).
    pub fn enable_receive_interrupts(&mut self) {
        self.registers()
            .interrupt_mask
            .set(INTERRUPT_RECEIVE | INTERRUPT_RECEIVE_TIMEOUT);
    }

    /// Clears the receive and receive-timeout interrupts (`UARTICR`). Clear before
    /// draining the FIFO, so a byte arriving after the drain raises the interrupt again.
    pub fn clear_receive_interrupts(&mut self) {
        self.registers()
            .interrupt_clear
            .set(INTERRUPT_RECEIVE | INTERRUPT_RECEIVE_TIMEOUT);
    }

    /// A received byte, if one is waiting.
    pub fn read_byte(&mut self) -> Option<u8> {
        let registers = self.registers();
        if registers.flags.is_set(Flags::ReceiveFifoEmpty) {
            None
        } else {
            Some((registers.data.get() & 0xff) as u8)
        }
    }
}
