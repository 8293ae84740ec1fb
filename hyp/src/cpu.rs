//! Per-physical-CPU state that portable code sees.

use crate::vcpu::GuestRegisters;

/// Names one vCPU of one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuId {
    /// Slot of the domain in the domain table.
    pub domain: usize,
    /// Index of the vCPU in its domain.
    pub vcpu: usize,
}

/// What a physical CPU holds while it runs guests.
///
/// `frame` must stay the first field: the exception vectors save and restore the running
/// vCPU's general registers there (see `arch::aarch64::exceptions`).
#[repr(C)]
pub struct CpuState {
    /// The running vCPU's general registers while it is trapped; loaded on switch-in.
    pub frame: GuestRegisters,
    /// This CPU's index (0 = the boot CPU).
    pub index: usize,
    /// The vCPU on this CPU, if any.
    pub current: Option<VcpuId>,
    /// The shape of the running vCPU's vGIC, set with `current` when a vCPU is loaded:
    /// what its identification registers say, answered from here without the lock.
    pub vgic_shape: crate::vgic::Shape,
    /// The vCPU whose state the virtual CPU interface last held.
    pub last: Option<VcpuId>,
    /// Every list register of this CPU is known to be invalid: the last vCPU to use them
    /// wrote them so when it left. A vCPU arriving then writes only the LRs it fills,
    /// not all of them.
    pub list_registers_clear: bool,
    /// The running vCPU's model had no LR in use at its last entry (false: in use, or not
    /// known). An exit then skips the fold-back without looking up the vCPU. (False, not
    /// a mask with an "unknown" value, so that the per-CPU blocks stay zero, in .bss.)
    pub list_registers_idle: bool,
    /// The running vCPU's vGIC generation when it was last entered: with
    /// `list_registers_idle`, an entry that finds it unchanged has nothing to do.
    pub entered_generation: u64,
    /// A physical interrupt the vectors acknowledged and left to the full exit path,
    /// which handles it before any other.
    pub taken: Option<crate::arch::Acknowledged>,
}

impl CpuState {
    /// A CPU with nothing running yet.
    pub const fn new(index: usize) -> Self {
        Self {
            frame: GuestRegisters {
                x: [0; 31],
                pc: 0,
                pstate: 0,
            },
            index,
            current: None,
            vgic_shape: crate::vgic::Shape::new(crate::vgic::GicVersion::V2, 1),
            last: None,
            list_registers_clear: false,
            list_registers_idle: false,
            entered_generation: 0,
            taken: None,
        }
    }
}
