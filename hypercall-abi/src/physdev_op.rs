//! `physdev_op` sub-op numbers (`public/physdev.h`).
//!
//! Xen/ARM implements only the PCI device add/remove calls, and only when built with
//! PCI support (otherwise `-ENOSYS`, `xen/arch/arm/physdev.c`). A hypervisor built on
//! this crate answers `-ENOSYS` to every `physdev_op`; Linux only warns.

/// `PHYSDEVOP_eoi`.
pub const EOI: u32 = 12;
/// `PHYSDEVOP_map_pirq`.
pub const MAP_PIRQ: u32 = 13;
/// `PHYSDEVOP_unmap_pirq`.
pub const UNMAP_PIRQ: u32 = 14;
/// `PHYSDEVOP_manage_pci_add`.
pub const MANAGE_PCI_ADD: u32 = 15;
/// `PHYSDEVOP_manage_pci_remove`.
pub const MANAGE_PCI_REMOVE: u32 = 16;
/// `PHYSDEVOP_pci_device_add`: Linux dom0 reports each PCI device.
pub const PCI_DEVICE_ADD: u32 = 25;
/// `PHYSDEVOP_pci_device_remove`.
pub const PCI_DEVICE_REMOVE: u32 = 26;
