//! `hvm_op`: HVMOP_get_param / HVMOP_set_param, with Xen/ARM's semantics (`do_hvm_op`):
//! every index below `HVM_NR_PARAMS` holds a per-domain value, 0 until set. The hypervisor
//! sets the console ring's frame and event channel itself; guests may not change those
//! (nor the xenstore ones, which stay 0: there is no xenstore).

use super::{errno, Outcome};
use crate::addr::GuestVirtAddr;
use crate::domain::Domain;
use crate::guest_memory::GuestMemory;
use hypercall_abi::errno::Errno;
use hypercall_abi::hvm_op::{self, HvmParam};
use hypercall_abi::shared::DOMID_SELF;

/// Parameters only the hypervisor sets.
const READ_ONLY: [u32; 4] = [
    hvm_op::PARAM_STORE_PFN,
    hvm_op::PARAM_STORE_EVTCHN,
    hvm_op::PARAM_CONSOLE_PFN,
    hvm_op::PARAM_CONSOLE_EVTCHN,
];

/// Handles `hvm_op(op, arg)` from a vCPU of `domain`.
pub fn hvm_op(
    domain: &mut Domain,
    memory: &GuestMemory<'_>,
    op: u64,
    arg: GuestVirtAddr,
) -> Outcome {
    let mut parameter = match memory.read_value::<HvmParam>(arg) {
        Ok(parameter) => parameter,
        Err(error) => return errno(error),
    };
    if parameter.index >= hvm_op::NR_PARAMS {
        return errno(Errno::EINVAL);
    }
    if parameter.domid != DOMID_SELF && usize::from(parameter.domid) != domain.slot {
        return errno(Errno::EPERM);
    }
    let Some(slot) = domain.hvm_params.get_mut(parameter.index as usize) else {
        return errno(Errno::EINVAL);
    };
    if op == hvm_op::SET_PARAM {
        if READ_ONLY.contains(&parameter.index) {
            return errno(Errno::EPERM);
        }
        *slot = parameter.value;
        return Outcome::Return(0);
    }
    parameter.value = *slot;
    match memory.write_value(arg, &parameter) {
        Ok(()) => Outcome::Return(0),
        Err(error) => errno(error),
    }
}

// SAFETY: #[repr(C)] u16, u16, u32, u64 with no implicit padding (the ABI crate checks the
// layout: 16 bytes, fields at 0, 2, 4, 8).
unsafe impl crate::guest_memory::Pod for HvmParam {}
