//! Board descriptions: which device-tree `compatible` string means which board, and the few
//! facts a device tree does not carry (memory the firmware keeps for itself, quirks).
//!
//! This crate is data only: no drivers, no dependencies, usable at EL2 and on the host.
#![no_std]
#![deny(missing_docs)]

/// What the hypervisor knows about one board beyond its device tree.
#[derive(Debug, PartialEq, Eq)]
pub struct Board {
    /// Human-readable board name.
    pub name: &'static str,
    /// Root-node `compatible` strings that identify this board (any one matches). Empty
    /// for the generic fallback, which matches nothing by itself.
    pub compatible: &'static [&'static str],
    /// Physical ranges `(start, size)` the firmware keeps that the device tree does not
    /// reserve.
    pub reserved: &'static [(u64, u64)],
    /// Free-text notes on quirks.
    pub notes: &'static str,
}

/// Every known board; the generic fallback ([`GENERIC_INDEX`]) is the last entry.
pub static BOARDS: &[Board] = &[
    Board {
        name: "QEMU virt",
        compatible: &["linux,dummy-virt"],
        reserved: &[],
        notes: "PSCI over SMC is answered by QEMU itself; the device tree describes everything.",
    },
    Board {
        name: "Raspberry Pi 4 Model B",
        compatible: &["raspberrypi,4-model-b", "brcm,bcm2711"],
        reserved: &[(0, 0x8_0000)],
        notes: "Secondary CPUs use spin-table; the firmware's stub and spin-table live below \
                0x80000. Device addresses are VideoCore bus addresses translated by /soc ranges.",
    },
    Board {
        name: "generic",
        compatible: &[],
        reserved: &[],
        notes: "Unknown board: only what the device tree says is used.",
    },
];

/// Index in [`BOARDS`] of the generic fallback.
pub const GENERIC_INDEX: usize = 2;

/// The generic fallback board: no extra reservations, no quirks.
pub fn generic() -> &'static Board {
    match BOARDS.get(GENERIC_INDEX) {
        Some(board) => board,
        None => &FALLBACK,
    }
}

/// Used only if [`BOARDS`] were ever edited without updating [`GENERIC_INDEX`].
static FALLBACK: Board = Board {
    name: "generic",
    compatible: &[],
    reserved: &[],
    notes: "Unknown board: only what the device tree says is used.",
};

/// The board whose `compatible` list contains one of the root node's `compatible`
/// strings, trying the root's strings in order (most specific first); the generic
/// fallback when none matches.
pub fn identify<'s>(root_compatible: impl Iterator<Item = &'s str>) -> &'static Board {
    for wanted in root_compatible {
        for board in BOARDS {
            if board.compatible.contains(&wanted) {
                return board;
            }
        }
    }
    generic()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_qemu_virt() {
        let board = identify(["linux,dummy-virt"].into_iter());
        assert_eq!(board.name, "QEMU virt");
        assert!(board.reserved.is_empty());
    }

    #[test]
    fn identifies_raspberry_pi_4_by_either_string() {
        let board = identify(["raspberrypi,4-model-b", "brcm,bcm2711"].into_iter());
        assert_eq!(board.name, "Raspberry Pi 4 Model B");
        assert_eq!(board.reserved, &[(0, 0x8_0000)]);
        let board = identify(["vendor,unknown", "brcm,bcm2711"].into_iter());
        assert_eq!(board.name, "Raspberry Pi 4 Model B");
    }

    #[test]
    fn unknown_board_is_generic() {
        assert_eq!(identify(["acme,board"].into_iter()).name, "generic");
        assert_eq!(identify(core::iter::empty()).name, "generic");
        assert!(core::ptr::eq(generic(), &BOARDS[GENERIC_INDEX]));
        assert!(generic().compatible.is_empty());
    }

    #[test]
    fn every_named_board_has_compatible_strings() {
        for (index, board) in BOARDS.iter().enumerate() {
            assert_eq!(board.compatible.is_empty(), index == GENERIC_INDEX);
            assert!(!board.name.is_empty());
        }
    }
}
