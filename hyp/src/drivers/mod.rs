//! Device drivers the hypervisor owns. Each takes its base address from the device tree.

pub mod mini_uart;
pub mod pl011;

/// The console UART, whichever kind the device tree chose.
pub enum ConsoleUart {
    /// An Arm PL011 (QEMU virt; the Raspberry Pi 4's UART0).
    Pl011(pl011::Pl011),
    /// The BCM2835 mini UART (the Raspberry Pi 4's default console).
    Mini(mini_uart::MiniUart),
}

impl ConsoleUart {
    /// Sends one byte, waiting for room.
    pub fn write_byte(&mut self, byte: u8) {
        match self {
            Self::Pl011(uart) => uart.write_byte(byte),
            Self::Mini(uart) => uart.write_byte(byte),
        }
    }

    /// Sends every byte of `bytes`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_byte(*byte);
        }
    }

    /// Unmasks the receive interrupts (console input).
    pub fn enable_receive_interrupts(&mut self) {
        match self {
            Self::Pl011(uart) => uart.enable_receive_interrupts(),
            Self::Mini(uart) => uart.enable_receive_interrupts(),
        }
    }

    /// Clears latched receive interrupts before the FIFO is drained. The mini UART's
    /// interrupt is a level that falls when its FIFO is empty: nothing to clear.
    pub fn clear_receive_interrupts(&mut self) {
        if let Self::Pl011(uart) = self {
            uart.clear_receive_interrupts();
        }
    }

    /// A received byte, if one is waiting.
    pub fn read_byte(&mut self) -> Option<u8> {
        match self {
            Self::Pl011(uart) => uart.read_byte(),
            Self::Mini(uart) => uart.read_byte(),
        }
    }
}
