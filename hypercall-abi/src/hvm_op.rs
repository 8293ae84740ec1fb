//! `hvm_op` sub-ops and HVM parameters (`public/hvm/hvm_op.h`, `public/hvm/params.h`).
//!
//! Arguments: `x0` = op (Xen takes the full 64 bits as `unsigned long`), `x1` = guest
//! virtual address of the argument.

/// `HVMOP_set_param`: argument [`HvmParam`]. A guest may not set its own parameters
/// (`-EPERM` for the five below, `-EINVAL` for others).
pub const SET_PARAM: u64 = 0;
/// `HVMOP_get_param`: argument [`HvmParam`]; fills `value`. An unset parameter reads
/// as 0 with result 0.
pub const GET_PARAM: u64 = 1;
/// `HVMOP_guest_request_vm_event`: monitor hook (not on this project).
pub const GUEST_REQUEST_VM_EVENT: u64 = 24;

/// `HVM_PARAM_CALLBACK_IRQ`: how events are signalled; on ARM
/// `2 << 56 | flags << 8 | ppi`, see [`callback_via_ppi`].
pub const PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN`: guest frame of the xenstore ring (0 = none).
pub const PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`: port of the xenstore ring (0 = none).
pub const PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_CONSOLE_PFN`: guest frame of the PV console ring (0 = none).
pub const PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`: port of the PV console ring (0 = none).
pub const PARAM_CONSOLE_EVTCHN: u32 = 18;
/// `HVM_NR_PARAMS`: parameter indices are below this.
pub const NR_PARAMS: u32 = 39;

/// `HVM_PARAM_CALLBACK_TYPE_PPI`: the callback type in bits 63:56 of
/// [`PARAM_CALLBACK_IRQ`] on ARM.
pub const CALLBACK_TYPE_PPI: u64 = 2;
/// `HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_LOW_LEVEL` (bit 9 of the value; bit 8 is edge).
pub const CALLBACK_PPI_FLAG_LOW_LEVEL: u64 = 1 << 9;
/// `HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_EDGE` (bit 8 of the value).
pub const CALLBACK_PPI_FLAG_EDGE: u64 = 1 << 8;

/// The [`PARAM_CALLBACK_IRQ`] value Xen stores for an event PPI. Xen uses active-low
/// level: PPI 31 gives `0x0200_0000_0000_021f`.
pub const fn callback_via_ppi(ppi: u8) -> u64 {
    (CALLBACK_TYPE_PPI << 56) | CALLBACK_PPI_FLAG_LOW_LEVEL | ppi as u64
}

/// Argument of [`SET_PARAM`] / [`GET_PARAM`] (`struct xen_hvm_param`, 16 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HvmParam {
    /// IN: the domain; [`crate::shared::DOMID_SELF`].
    pub domid: u16,
    /// Padding.
    pub pad: u16,
    /// IN: a `PARAM_*` index.
    pub index: u32,
    /// IN (set) / OUT (get): the value.
    pub value: u64,
}
assert_layout!(HvmParam, 16, { domid: 0, pad: 2, index: 4, value: 8 });

#[cfg(test)]
mod tests {
    #[test]
    fn callback_value_matches_xen_dom0() {
        assert_eq!(super::callback_via_ppi(31), 0x0200_0000_0000_021f);
    }
}
