//! What a domain's virtual GIC is fixed at when the domain is built: its version and its
//! number of vCPUs ([`Shape`]).
//!
//! Where the emulated frames lie and what the identification registers say (`GICD_TYPER`,
//! `GICD_IIDR`, `GICR_TYPER`, `GICR_IIDR` and the `PIDR`/`CIDR` blocks) follow from those
//! two alone. So each physical CPU keeps a copy of its running vCPU's shape
//! (`CpuState::vgic_shape`) and answers loads of those registers from it without the
//! hypervisor lock, as Xen and KVM answer them without taking their vGIC locks. The
//! model's register reads ([`super::Vgic::read`]) come here for the same registers, so the
//! two answers cannot differ.

use super::distributor::{check_size, id_register, IIDR, WORD, WORD_OR_DOUBLEWORD};
use super::{
    AccessError, Frame, GicVersion, DISTRIBUTOR_IPA, DISTRIBUTOR_V2_SIZE, DISTRIBUTOR_V3_SIZE,
    MAX_VCPUS, NR_INTIDS, REDISTRIBUTOR_IPA, REDISTRIBUTOR_STRIDE,
};

/// Size of one redistributor frame (`RD_base` or `SGI_base`).
pub(crate) const REDISTRIBUTOR_FRAME: u64 = 0x1_0000;
/// `GICD_TYPER.ITLinesNumber`: 32 * (N + 1) INTIDs.
const IT_LINES_NUMBER: u32 = (NR_INTIDS as u32 / 32) - 1;
/// GICv3 `GICD_TYPER.IDbits` without LPIs: 10 INTID bits.
const TYPER_ID_BITS: u32 = 9 << 19;
/// `GICR_TYPER.Last`.
const REDISTRIBUTOR_TYPER_LAST: u64 = 1 << 4;
/// Offset of the identification block (`PIDR4` .. `CIDR3`) in a GICv2 distributor.
const ID_BLOCK_V2: u64 = 0xfd0;
/// Offset of the identification block in a GICv3 distributor or `RD_base` frame.
const ID_BLOCK_V3: u64 = 0xffd0;

/// A vGIC's version and vCPU count.
///
/// The vCPU count is held less one, so that the all-zero value is a real shape (GICv2, one
/// vCPU): the per-CPU blocks that hold a copy start in `.bss`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub(super) version: GicVersion,
    pub(super) last_vcpu: u8,
}

impl Shape {
    /// The shape of a vGIC for `vcpus` vCPUs (clamped to 1..=[`MAX_VCPUS`]).
    pub const fn new(version: GicVersion, vcpus: usize) -> Shape {
        let vcpus = if vcpus == 0 {
            1
        } else if vcpus > MAX_VCPUS {
            MAX_VCPUS
        } else {
            vcpus
        };
        Shape {
            version,
            last_vcpu: (vcpus - 1) as u8,
        }
    }

    /// The GIC version the domain sees.
    pub const fn version(self) -> GicVersion {
        self.version
    }

    /// The number of vCPUs (1..=[`MAX_VCPUS`]).
    pub const fn vcpus(self) -> usize {
        self.last_vcpu as usize + 1
    }

    /// Which emulated frame, if any, a guest IPA falls into, and the offset into it. The
    /// GICv2 CPU interface is not emulated (the hardware GICV frame is mapped there) and so
    /// is not claimed.
    #[inline]
    pub fn decode_ipa(self, ipa: u64) -> Option<(Frame, u64)> {
        let distributor_size = match self.version {
            GicVersion::V2 => DISTRIBUTOR_V2_SIZE,
            GicVersion::V3 => DISTRIBUTOR_V3_SIZE,
        };
        if let Some(offset) = ipa.checked_sub(DISTRIBUTOR_IPA) {
            if offset < distributor_size {
                return Some((Frame::Distributor, offset));
            }
        }
        if self.version == GicVersion::V3 {
            if let Some(offset) = ipa.checked_sub(REDISTRIBUTOR_IPA) {
                if offset < self.vcpus() as u64 * REDISTRIBUTOR_STRIDE {
                    return Some((Frame::Redistributors, offset));
                }
            }
        }
        None
    }

    /// The redistributor `offset` (from the first vCPU's `RD_base`) falls in: the vCPU and
    /// the offset inside that vCPU's 128 KiB. GICv3 only.
    pub(crate) fn redistributor_of(
        self,
        offset: u64,
        size: u8,
    ) -> Result<(usize, u64), AccessError> {
        if self.version != GicVersion::V3 {
            return Err(AccessError::OutOfRange);
        }
        let vcpus = self.vcpus() as u64;
        let vcpu = offset / REDISTRIBUTOR_STRIDE;
        let end = offset
            .checked_add(u64::from(size))
            .ok_or(AccessError::OutOfRange)?;
        if vcpu >= vcpus || end > vcpus * REDISTRIBUTOR_STRIDE {
            return Err(AccessError::OutOfRange);
        }
        Ok((vcpu as usize, offset % REDISTRIBUTOR_STRIDE))
    }

    /// Reads an identification register: `None` when `offset` in `frame` is not one (the
    /// model answers it), an error when it is one but the access is not allowed.
    #[inline]
    pub fn read_identity(
        self,
        frame: Frame,
        offset: u64,
        size: u8,
    ) -> Option<Result<u64, AccessError>> {
        match frame {
            Frame::Distributor => self.read_distributor_identity(offset, size),
            Frame::Redistributors => match self.redistributor_of(offset, size) {
                Ok((vcpu, offset)) => self.read_redistributor_identity(vcpu, offset, size),
                Err(error) => Some(Err(error)),
            },
        }
    }

    /// [`Shape::read_identity`] for a distributor register.
    #[inline]
    pub(crate) fn read_distributor_identity(
        self,
        offset: u64,
        size: u8,
    ) -> Option<Result<u64, AccessError>> {
        let value = match (self.version, offset) {
            (GicVersion::V2, 0x004) => IT_LINES_NUMBER | (u32::from(self.last_vcpu) << 5),
            (GicVersion::V3, 0x004) => IT_LINES_NUMBER | TYPER_ID_BITS,
            (_, 0x008) => IIDR,
            (GicVersion::V2, ID_BLOCK_V2..DISTRIBUTOR_V2_SIZE) => {
                id_register(offset - ID_BLOCK_V2, 2)
            }
            (GicVersion::V3, ID_BLOCK_V3..DISTRIBUTOR_V3_SIZE) => {
                id_register(offset - ID_BLOCK_V3, 3)
            }
            _ => return None,
        };
        Some(check_size(offset, size, WORD).map(|()| u64::from(value)))
    }

    /// [`Shape::read_identity`] for a register at `offset` in `vcpu`'s redistributor.
    #[inline]
    pub(crate) fn read_redistributor_identity(
        self,
        vcpu: usize,
        offset: u64,
        size: u8,
    ) -> Option<Result<u64, AccessError>> {
        let answer = match offset {
            0x0004 => check_size(offset, size, WORD).map(|()| u64::from(IIDR)),
            0x0008..=0x000f => check_size(offset, size, WORD_OR_DOUBLEWORD).map(|()| {
                let typer = self.redistributor_typer(vcpu);
                match (size, offset) {
                    (8, _) => typer,
                    (_, 0x0008) => typer & 0xffff_ffff,
                    _ => typer >> 32,
                }
            }),
            ID_BLOCK_V3..REDISTRIBUTOR_FRAME => check_size(offset, size, WORD)
                .map(|()| u64::from(id_register(offset - ID_BLOCK_V3, 3))),
            _ => return None,
        };
        Some(answer)
    }

    /// `GICR_TYPER` of `vcpu`: its processor number and affinity `0.0.0.vcpu`, and `Last`
    /// on the last redistributor.
    fn redistributor_typer(self, vcpu: usize) -> u64 {
        let vcpu_number = vcpu as u64;
        let mut value = (vcpu_number << 32) | (vcpu_number << 8);
        if vcpu == usize::from(self.last_vcpu) {
            value |= REDISTRIBUTOR_TYPER_LAST;
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_ipa_claims_the_frames() {
        let v2 = Shape::new(GicVersion::V2, 2);
        let v3 = Shape::new(GicVersion::V3, 2);
        assert_eq!(v2.decode_ipa(0x0300_1004), Some((Frame::Distributor, 4)));
        assert_eq!(v2.decode_ipa(0x0300_2000), None);
        assert_eq!(v2.decode_ipa(0x0302_0000), None);
        assert_eq!(
            v3.decode_ipa(0x0300_f000),
            Some((Frame::Distributor, 0xe000))
        );
        assert_eq!(
            v3.decode_ipa(0x0305_0008),
            Some((Frame::Redistributors, 0x3_0008))
        );
        assert_eq!(v3.decode_ipa(0x0306_0000), None);
        assert_eq!(v3.decode_ipa(0x0300_0fff), None);
    }

    #[test]
    fn the_zero_shape_is_one_vcpu_of_gicv2() {
        assert_eq!(Shape::default(), Shape::new(GicVersion::V2, 1));
        assert_eq!(Shape::new(GicVersion::V3, 0).vcpus(), 1);
        assert_eq!(Shape::new(GicVersion::V3, 99).vcpus(), MAX_VCPUS);
    }

    /// Exactly these registers are identification registers: anything else a shape claimed
    /// would be answered without the lock from a copy that cannot see the model's state.
    #[test]
    fn identity_registers_are_exactly_the_constant_ones() {
        let claimed = |shape: Shape, frame: Frame, end: u64| -> std::vec::Vec<u64> {
            (0..end)
                .step_by(4)
                .filter(|offset| shape.read_identity(frame, *offset, 4).is_some())
                .collect()
        };
        let ids = |base: u64| (base..base + 0x30).step_by(4);
        let v2 = Shape::new(GicVersion::V2, 2);
        let expected: std::vec::Vec<u64> = [4, 8].into_iter().chain(ids(0xfd0)).collect();
        assert_eq!(claimed(v2, Frame::Distributor, 0x1000), expected);
        let v3 = Shape::new(GicVersion::V3, 2);
        let expected: std::vec::Vec<u64> = [4, 8].into_iter().chain(ids(0xffd0)).collect();
        assert_eq!(claimed(v3, Frame::Distributor, 0x1_0000), expected);
        let expected: std::vec::Vec<u64> = [4, 8, 0xc]
            .into_iter()
            .chain(ids(0xffd0))
            .flat_map(|offset| [offset, offset + REDISTRIBUTOR_STRIDE])
            .collect::<std::collections::BTreeSet<u64>>()
            .into_iter()
            .collect();
        assert_eq!(
            claimed(v3, Frame::Redistributors, 2 * REDISTRIBUTOR_STRIDE),
            expected
        );
    }

    #[test]
    fn redistributor_typer_names_each_vcpu_and_the_last() {
        let shape = Shape::new(GicVersion::V3, 3);
        let typer = |vcpu: u64| {
            shape
                .read_identity(Frame::Redistributors, vcpu * REDISTRIBUTOR_STRIDE + 8, 8)
                .and_then(Result::ok)
        };
        assert_eq!(typer(0), Some(0));
        assert_eq!(typer(1), Some((1 << 32) | (1 << 8)));
        assert_eq!(
            typer(2),
            Some((2 << 32) | (2 << 8) | REDISTRIBUTOR_TYPER_LAST)
        );
        assert_eq!(
            shape.read_identity(Frame::Redistributors, 0xc, 4),
            Some(Ok(0))
        );
        assert_eq!(
            shape.read_identity(Frame::Redistributors, 3 * REDISTRIBUTOR_STRIDE, 4),
            Some(Err(AccessError::OutOfRange))
        );
        assert_eq!(
            shape.read_identity(Frame::Distributor, 4, 1),
            Some(Err(AccessError::BadSize))
        );
    }
}
