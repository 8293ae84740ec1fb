//! The BCM2835 auxiliary "mini UART" (Raspberry Pi 4's `serial1`, the console its firmware's
//! device tree chooses): transmit polled, receive polled or by interrupt.
//!
//! The firmware has set the baud rate (with `enable_uart=1` it fixes the core clock the
//! baud divisor depends on); the hypervisor only enables the transmitter and receiver.
//! Register offsets are from the device tree's `reg`, which points at `AUX_MU_IO_REG`
//! (BCM2711 ARM Peripherals, 2.2.2).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

register_bitfields! [u32,
    LineStatus [
        TransmitterEmpty OFFSET(5) NUMBITS(1) [],
        DataReady OFFSET(0) NUMBITS(1) []
    ],
    InterruptEnable [
        /// "Enable receive interrupts" (the BCM2835 datasheet's erratum: bit 0 is receive).
        Receive OFFSET(0) NUMBITS(1) []
    ],
    ExtraControl [
        TransmitterEnable OFFSET(1) NUMBITS(1) [],
        ReceiverEnable OFFSET(0) NUMBITS(1) []
    ]
];

register_structs! {
    /// The mini UART's registers, from `AUX_MU_IO_REG`.
    pub Registers {
        (0x00 => io: ReadWrite<u32>),
        (0x04 => interrupt_enable: ReadWrite<u32, InterruptEnable::Register>),
        (0x08 => _interrupt_identify: ReadWrite<u32>),
        (0x0c => _line_control: ReadWrite<u32>),
        (0x10 => _modem_control: ReadWrite<u32>),
        (0x14 => line_status: ReadWrite<u32, LineStatus::Register>),
        (0x18 => _modem_status: ReadWrite<u32>),
        (0x1c => _scratch: ReadWrite<u32>),
        (0x20 => extra_control: ReadWrite<u32, ExtraControl::Register>),
        (0x24 => @END),
    }
}

/// A mini UART at a fixed (identity-mapped) address.
pub struct MiniUart {
    registers: *const Registers,
}

// SAFETY: the register block is device memory; every access is a single volatile load or
// store, and the owner serialises users behind the console lock.
unsafe impl Send for MiniUart {}

impl MiniUart {
    /// Takes over the mini UART whose `AUX_MU_IO_REG` is at `base`.
    ///
    /// # Safety
    /// `base` must be the mapped address of the mini UART's registers, which nothing else
    /// drives.
    pub unsafe fn new(base: usize) -> Self {
        let uart = Self {
            registers: base as *const Registers,
        };
        let registers = uart.registers();
        registers
            .extra_control
            .write(ExtraControl::TransmitterEnable::SET + ExtraControl::ReceiverEnable::SET);
        registers.interrupt_enable.set(0);
        uart
    }

    fn registers(&self) -> &Registers {
        // SAFETY: `new`'s contract: the pointer is a live, mapped register block.
        unsafe { &*self.registers }
    }

    /// Sends one byte, waiting until the transmitter can take it.
    pub fn write_byte(&mut self, byte: u8) {
        let registers = self.registers();
        while !registers.line_status.is_set(LineStatus::TransmitterEmpty) {
            core::hint::spin_loop();
        }
        registers.io.set(u32::from(byte));
    }

    /// Raises the AUX interrupt while received data waits (console input).
    pub fn enable_receive_interrupts(&mut self) {
        self.registers()
            .interrupt_enable
            .write(InterruptEnable::Receive::SET);
    }

    /// A received byte, if one is waiting.
    pub fn read_byte(&mut self) -> Option<u8> {
        let registers = self.registers();
        registers
            .line_status
            .is_set(LineStatus::DataReady)
            .then(|| (registers.io.get() & 0xff) as u8)
    }
}
