//! The virtual GIC: a portable, host-testable model of one domain's interrupt controller.
//!
//! The model is split by concern:
//!
//! * [`state`]: the per-interrupt state of a domain ([`Vgic`]): SGIs and PPIs banked per
//!   vCPU, SPIs shared; the hypervisor's inputs (line levels, injected edges, SGIs) and the
//!   selection of deliverable interrupts in priority order.
//! * [`distributor`]: emulation of the GICv2 and GICv3 distributor registers (`GICD_*`).
//! * [`redistributor`]: emulation of the GICv3 redistributor frames (`GICR_*`) and the
//!   decoding of a trapped `ICC_SGI1R_EL1` write.
//! * [`shape`]: what the domain's build fixes ([`Shape`]: version, vCPU count), where the
//!   frames lie and the identification registers that follow from it.
//! * [`list_registers`]: the hardware-independent list-register manager
//!   ([`ListRegisters`]) and the bit layouts of `GICH_LR<n>` (v2) and `ICH_LR<n>_EL2` (v3).
//!
//! Nothing here touches hardware. Every offset, size, value and INTID the guest supplies is
//! checked; nothing panics on guest input.
//!
//! # Wiring (what the hypervisor does)
//!
//! * Stage-2 data abort at an IPA: [`Shape::decode_ipa`] tells whether it is the distributor or the
//!   redistributor region and the offset into it; then [`Vgic::read`] / [`Vgic::write`] with
//!   the access size from `esr::EmulatableAccess`. `Err(AccessError::BadSize)` or
//!   `Err(AccessError::OutOfRange)` end the guilty domain (the hypervisor does not inject
//!   aborts yet; Xen would inject one). The returned
//!   [`Effects`] names the vCPUs to kick (they re-run [`ListRegisters::populate`]).
//! * Trapped `ICC_SGI1R_EL1` write (GICv3): [`Vgic::write_sgi1r`].
//! * Before entering a vCPU: [`ListRegisters::populate`], then write the LRs that
//!   [`ListRegisters::write_back`] reports, and set the underflow maintenance enable when
//!   [`ListRegisters::needs_maintenance`] says so.
//! * After leaving a vCPU (any exit, including the maintenance interrupt): read back the
//!   LRs that were in use, decode them and call [`ListRegisters::sync_from_hardware`].

pub mod distributor;
pub mod list_registers;
pub mod redistributor;
pub mod shape;
pub mod state;

pub use list_registers::{
    decode_gicv2, decode_gicv3, encode_gicv2, encode_gicv3, ChangedLrs, ListRegisters, LrEntry,
    LrState, MAX_LIST_REGISTERS,
};
pub use redistributor::{decode_sgi1r, Sgi1rRequest};
pub use shape::Shape;
pub use state::{Candidate, Deliverable, IrqState, Vgic};

/// Most vCPUs one domain's virtual GIC serves.
pub const MAX_VCPUS: usize = 8;
/// Number of shared peripheral interrupts (SPIs) each domain has.
pub const NR_SPIS: usize = 32;
/// First SPI INTID.
pub const SPI_BASE: u32 = 32;
/// Number of INTIDs modelled: 16 SGIs, 16 PPIs, then the SPIs.
pub const NR_INTIDS: usize = 32 + NR_SPIS;
/// Number of software-generated interrupts (INTIDs 0-15).
pub const NR_SGIS: u32 = 16;

/// Guest IPA of the virtual distributor (both versions).
pub const DISTRIBUTOR_IPA: u64 = 0x0300_1000;
/// Size of the GICv2 distributor frame.
pub const DISTRIBUTOR_V2_SIZE: u64 = 0x1000;
/// Size of the GICv3 distributor frame.
pub const DISTRIBUTOR_V3_SIZE: u64 = 0x1_0000;
/// Guest IPA of the GICv2 CPU interface (the hardware GICV frame is mapped there).
pub const CPU_INTERFACE_V2_IPA: u64 = 0x0300_2000;
/// Guest IPA of the first GICv3 redistributor.
pub const REDISTRIBUTOR_IPA: u64 = 0x0302_0000;
/// Size of one vCPU's GICv3 redistributor (RD_base and SGI_base frames).
pub const REDISTRIBUTOR_STRIDE: u64 = 0x2_0000;

/// Which GIC architecture the domain sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GicVersion {
    #[default]
    /// GICv2: memory-mapped distributor with `GICD_ITARGETSR`, CPU interface via GICV.
    V2,
    /// GICv3 with affinity routing: distributor, one redistributor per vCPU, system registers.
    V3,
}

/// The emulated register frames a guest can access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The distributor (`GICD_*`).
    Distributor,
    /// The GICv3 redistributor region (`GICR_*`), all vCPUs' frames one after the other.
    Redistributors,
}

/// Why an emulated access was refused; the hypervisor injects an abort into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// An access size (or alignment) the architecture does not allow for this register.
    BadSize,
    /// The offset lies beyond the frame (or beyond the last vCPU's redistributor).
    OutOfRange,
}

/// A set of vCPUs of one domain (bit `n` = vCPU `n`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSet(pub u8);

impl VcpuSet {
    /// The empty set.
    pub const EMPTY: VcpuSet = VcpuSet(0);

    /// The set holding only `vcpu` (empty if `vcpu` is not below [`MAX_VCPUS`]).
    pub const fn only(vcpu: usize) -> VcpuSet {
        if vcpu < MAX_VCPUS {
            VcpuSet(1 << vcpu)
        } else {
            VcpuSet(0)
        }
    }

    /// Whether `vcpu` is in the set.
    pub const fn contains(self, vcpu: usize) -> bool {
        vcpu < MAX_VCPUS && self.0 & (1 << vcpu) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set without `vcpu`.
    #[must_use]
    pub const fn without(self, vcpu: usize) -> VcpuSet {
        VcpuSet(self.0 & !VcpuSet::only(vcpu).0)
    }

    /// Adds `vcpu` (ignored if not below [`MAX_VCPUS`]).
    pub fn insert(&mut self, vcpu: usize) {
        self.0 |= VcpuSet::only(vcpu).0;
    }

    /// The vCPUs in the set, lowest first: one step per member, not per possible vCPU
    /// (every interrupt delivery walks a set).
    pub fn iter(self) -> impl Iterator<Item = usize> {
        crate::bits::ones(u64::from(self.0))
    }
}

/// What an emulated access or an injected event changed that the hypervisor must act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// vCPUs whose set of deliverable (or in-flight) interrupts may have changed: each must
    /// re-run [`ListRegisters::populate`] before it next runs (kick it if it is running on
    /// another physical CPU, wake it if it waits in WFI).
    pub kick: VcpuSet,
}

impl Effects {
    /// No effect.
    pub const NONE: Effects = Effects {
        kick: VcpuSet::EMPTY,
    };

    /// Union of two effects.
    #[must_use]
    pub const fn merge(self, other: Effects) -> Effects {
        Effects {
            kick: VcpuSet(self.kick.0 | other.kick.0),
        }
    }

    /// Whether nothing needs doing.
    pub const fn is_empty(self) -> bool {
        self.kick.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_set_operations() {
        let mut set = VcpuSet::EMPTY;
        set.insert(3);
        set.insert(0);
        set.insert(9);
        assert!(set.contains(3) && set.contains(0) && !set.contains(9));
        let mut seen = [0usize; 2];
        for (slot, vcpu) in seen.iter_mut().zip(set.iter()) {
            *slot = vcpu;
        }
        assert_eq!(seen, [0, 3]);
        assert!(Effects::NONE.merge(Effects { kick: set }).kick.contains(3));
    }

    #[test]
    fn a_set_yields_exactly_its_members_in_order() {
        for bits in 0..=u8::MAX {
            let set = VcpuSet(bits);
            let members: std::vec::Vec<usize> = set.iter().collect();
            let expected: std::vec::Vec<usize> =
                (0..MAX_VCPUS).filter(|vcpu| set.contains(*vcpu)).collect();
            assert_eq!(members, expected, "{bits:#010b}");
        }
    }
}
