//! Emulation of the GICv3 redistributors (`GICR_*`) and of `ICC_SGI1R_EL1` writes.
//!
//! Each vCPU has a 128 KiB redistributor: the `RD_base` frame (control, identification,
//! `GICR_WAKER`) and at +64 KiB the `SGI_base` frame with that vCPU's SGI and PPI registers.
//! The frames lie one after the other from [`super::REDISTRIBUTOR_IPA`]; any vCPU may access
//! any frame. There are no LPIs (`GICR_CTLR`, `GICR_PROPBASER`, `GICR_PENDBASER` are
//! RAZ/WI) and a single security state (`GICR_IGRPMODR0`, `GICR_NSACR` are RAZ/WI).
//!
//! vCPU `n` has affinity `0.0.0.n` (Aff3.Aff2.Aff1.Aff0), matching its `VMPIDR_EL2`.

use super::distributor::{
    check_size, truncate, BitRegister, BYTE_OR_WORD, WORD, WORD_OR_DOUBLEWORD,
};
use super::shape::REDISTRIBUTOR_FRAME;
use super::{AccessError, Effects, GicVersion, VcpuSet, Vgic};

/// `GICR_WAKER.ProcessorSleep`.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// `GICR_WAKER.ChildrenAsleep`.
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// `ICC_SGI1R_EL1.IRM`: all PEs but the sender.
const SGI1R_IRM: u64 = 1 << 40;

/// The SGI and targets a trapped `ICC_SGI1R_EL1` write names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sgi1rRequest {
    /// The SGI (0-15).
    pub intid: u32,
    /// The target vCPUs (only existing ones).
    pub targets: VcpuSet,
}

/// Decodes an `ICC_SGI1R_EL1` value written by vCPU `sender` of a domain with `vcpus` vCPUs
/// (affinity `0.0.0.n` for vCPU `n`): TargetList bits 15:0, Aff1 bits 23:16, INTID bits 27:24,
/// Aff2 bits 39:32, IRM bits 40, RS bits 47:44, Aff3 bits 55:48.
pub fn decode_sgi1r(value: u64, sender: usize, vcpus: usize) -> Sgi1rRequest {
    let intid = ((value >> 24) & 0xf) as u32;
    let existing = VcpuSet(((1u16 << vcpus.clamp(1, super::MAX_VCPUS)) - 1) as u8);
    let targets = if value & SGI1R_IRM != 0 {
        VcpuSet(existing.0 & !VcpuSet::only(sender).0)
    } else {
        let aff1 = (value >> 16) & 0xff;
        let aff2 = (value >> 32) & 0xff;
        let aff3 = (value >> 48) & 0xff;
        let range_selector = (value >> 44) & 0xf;
        if aff1 != 0 || aff2 != 0 || aff3 != 0 || range_selector != 0 {
            VcpuSet::EMPTY
        } else {
            // Aff0 = RS * 16 + bit; with RS = 0 the list's bits 0-7 are our vCPUs.
            VcpuSet((value & 0xff) as u8 & existing.0)
        }
    };
    Sgi1rRequest { intid, targets }
}

impl Vgic {
    /// Emulates a trapped `ICC_SGI1R_EL1` write by `sender` (GICv3; ignored on GICv2).
    pub fn write_sgi1r(&mut self, sender: usize, value: u64) -> Effects {
        if self.version != GicVersion::V3 {
            return Effects::NONE;
        }
        let request = decode_sgi1r(value, sender, self.vcpus);
        self.send_sgi(sender, request.intid, request.targets)
    }

    /// Reads a redistributor register; `offset` is from the first vCPU's `RD_base`.
    pub fn read_redistributor(&self, offset: u64, size: u8) -> Result<u64, AccessError> {
        let (vcpu, offset) = self.shape().redistributor_of(offset, size)?;
        if offset >= REDISTRIBUTOR_FRAME {
            return self.read_sgi_frame(vcpu, offset - REDISTRIBUTOR_FRAME, size);
        }
        let value: u64 = match offset {
            0x0000 | 0x0010 => {
                // CTLR (no LPIs: EnableLPIs RAZ, RWP 0), STATUSR.
                check_size(offset, size, WORD)?;
                0
            }
            0x0014 => {
                check_size(offset, size, WORD)?;
                if self.processor_sleep.get(vcpu).copied().unwrap_or(true) {
                    u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
                } else {
                    0
                }
            }
            0x0070..=0x007f => {
                // PROPBASER, PENDBASER.
                check_size(offset, size, WORD_OR_DOUBLEWORD)?;
                0
            }
            // IIDR, TYPER and the identification block; the rest is reserved (RAZ).
            _ => match self.shape().read_redistributor_identity(vcpu, offset, size) {
                Some(answer) => answer?,
                None => {
                    check_size(offset, size, WORD)?;
                    0
                }
            },
        };
        Ok(value)
    }

    /// Writes a redistributor register; `offset` is from the first vCPU's `RD_base`.
    pub fn write_redistributor(
        &mut self,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, AccessError> {
        let (vcpu, offset) = self.shape().redistributor_of(offset, size)?;
        let value = truncate(value, size);
        if offset >= REDISTRIBUTOR_FRAME {
            return self.write_sgi_frame(vcpu, offset - REDISTRIBUTOR_FRAME, size, value as u32);
        }
        match offset {
            0x0008..=0x000f | 0x0070..=0x007f => {
                check_size(offset, size, WORD_OR_DOUBLEWORD)?;
            }
            0x0014 => {
                check_size(offset, size, WORD)?;
                if let Some(sleep) = self.processor_sleep.get_mut(vcpu) {
                    *sleep = value as u32 & WAKER_PROCESSOR_SLEEP != 0;
                }
            }
            _ => check_size(offset, size, WORD)?,
        }
        Ok(Effects::NONE)
    }

    fn read_sgi_frame(&self, vcpu: usize, offset: u64, size: u8) -> Result<u64, AccessError> {
        let value = match offset {
            0x0080..=0x03ff => {
                check_size(offset, size, WORD)?;
                match BitRegister::decode(offset) {
                    Some((register, 0)) => self.read_bits(vcpu, 0, register),
                    _ => 0,
                }
            }
            0x0400..=0x041f => {
                check_size(offset, size, BYTE_OR_WORD)?;
                self.read_priorities(vcpu, (offset - 0x400) as u32, size)
            }
            0x0c00 | 0x0c04 => {
                check_size(offset, size, WORD)?;
                self.read_config(vcpu, ((offset - 0xc00) * 4) as u32)
            }
            _ => {
                // IGRPMODR0, NSACR and reserved space.
                check_size(offset, size, WORD)?;
                0
            }
        };
        Ok(u64::from(value))
    }

    fn write_sgi_frame(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u32,
    ) -> Result<Effects, AccessError> {
        let effects = match offset {
            0x0080..=0x03ff => {
                check_size(offset, size, WORD)?;
                match BitRegister::decode(offset) {
                    Some((register, 0)) => self.write_bits(vcpu, 0, register, value),
                    _ => Effects::NONE,
                }
            }
            0x0400..=0x041f => {
                check_size(offset, size, BYTE_OR_WORD)?;
                self.write_priorities(vcpu, (offset - 0x400) as u32, size, value)
            }
            0x0c00 | 0x0c04 => {
                check_size(offset, size, WORD)?;
                self.write_config(vcpu, ((offset - 0xc00) * 4) as u32, value)
            }
            _ => {
                check_size(offset, size, WORD)?;
                Effects::NONE
            }
        };
        Ok(effects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vgic: &mut Vgic, offset: u64, size: u8) -> u64 {
        vgic.read_redistributor(offset, size).unwrap_or(0xdead)
    }

    fn write(vgic: &mut Vgic, offset: u64, size: u8, value: u64) -> Effects {
        vgic.write_redistributor(offset, size, value)
            .unwrap_or(Effects::NONE)
    }

    const SGI_BASE: u64 = 0x1_0000;

    #[test]
    fn typer_and_identification() {
        let mut vgic = Vgic::new(GicVersion::V3, 3);
        assert_eq!(read(&mut vgic, 0x0008, 8), 0);
        assert_eq!(read(&mut vgic, 0x2_0008, 8), 0x1_0000_0100);
        assert_eq!(read(&mut vgic, 0x4_0008, 8), 0x2_0000_0210);
        assert_eq!(read(&mut vgic, 0x4_0008, 4), 0x210);
        assert_eq!(read(&mut vgic, 0x4_000c, 4), 0x2);
        assert_eq!(
            vgic.read_redistributor(0x4_000c, 8),
            Err(AccessError::BadSize)
        );
        assert_eq!(read(&mut vgic, 0x4_0004, 4), 0x43b);
        assert_eq!(read(&mut vgic, 0x2_ffe8, 4) >> 4 & 0xf, 3);
        assert_eq!(
            vgic.read_redistributor(0x6_0000, 4),
            Err(AccessError::OutOfRange)
        );
        assert_eq!(vgic.read_redistributor(0x0, 2), Err(AccessError::BadSize));
        let v2 = Vgic::new(GicVersion::V2, 1);
        assert_eq!(v2.read_redistributor(0x8, 8), Err(AccessError::OutOfRange));
    }

    #[test]
    fn waker_handshake() {
        let mut vgic = Vgic::new(GicVersion::V3, 2);
        assert_eq!(read(&mut vgic, 0x2_0014, 4), 0x6);
        write(&mut vgic, 0x2_0014, 4, 0);
        assert_eq!(read(&mut vgic, 0x2_0014, 4), 0);
        assert_eq!(read(&mut vgic, 0x0014, 4), 0x6);
        write(&mut vgic, 0x2_0014, 4, 0x4);
        assert_eq!(read(&mut vgic, 0x2_0014, 4), 0);
        write(&mut vgic, 0x2_0014, 4, 0x2);
        assert_eq!(read(&mut vgic, 0x2_0014, 4), 0x6);
    }

    #[test]
    fn sgi_frame_is_banked() {
        let mut vgic = Vgic::new(GicVersion::V3, 2);
        let effects = write(&mut vgic, 0x2_0000 + SGI_BASE + 0x100, 4, 0x0800_0002);
        assert_eq!(effects.kick, VcpuSet::only(1));
        assert_eq!(read(&mut vgic, 0x2_0000 + SGI_BASE + 0x100, 4), 0x0800_0002);
        assert_eq!(read(&mut vgic, SGI_BASE + 0x100, 4), 0);
        assert!(vgic.irq(1, 27).is_some_and(|irq| irq.enabled()));
        write(&mut vgic, SGI_BASE + 0x41b, 1, 0x5f);
        assert_eq!(read(&mut vgic, SGI_BASE + 0x418, 4), 0x5800_0000);
        assert_eq!(read(&mut vgic, SGI_BASE + 0xc00, 4), 0xaaaa_aaaa);
        write(&mut vgic, SGI_BASE + 0xc04, 4, 0x0080_0000);
        assert_eq!(read(&mut vgic, SGI_BASE + 0xc04, 4), 0x0080_0000);
        // Group default is 1 on GICv3; IGRPMODR0 RAZ/WI.
        assert_eq!(read(&mut vgic, SGI_BASE + 0x080, 4), 0xffff_ffff);
        write(&mut vgic, SGI_BASE + 0xd00, 4, 0xffff_ffff);
        assert_eq!(read(&mut vgic, SGI_BASE + 0xd00, 4), 0);
        // ISPENDR0 works for SGIs on GICv3 (no per-source state).
        write(&mut vgic, SGI_BASE + 0x200, 4, 0x1);
        assert_eq!(read(&mut vgic, SGI_BASE + 0x200, 4), 0x1);
        write(&mut vgic, SGI_BASE + 0x280, 4, 0x1);
        assert_eq!(read(&mut vgic, SGI_BASE + 0x200, 4), 0x0);
        // Only word 0 exists.
        write(&mut vgic, SGI_BASE + 0x104, 4, 0xffff_ffff);
        assert_eq!(read(&mut vgic, SGI_BASE + 0x104, 4), 0);
        assert_eq!(
            vgic.read_redistributor(SGI_BASE + 0x420, 1),
            Err(AccessError::BadSize)
        );
    }

    #[test]
    fn sgi1r_decoding() {
        // TargetList {1, 3}, INTID 7.
        assert_eq!(
            decode_sgi1r(0x0700_000a, 0, 4),
            Sgi1rRequest {
                intid: 7,
                targets: VcpuSet(0b1010)
            }
        );
        // Targets beyond the domain are dropped.
        assert_eq!(decode_sgi1r(0x0100_00f0, 0, 6).targets, VcpuSet(0b11_0000));
        // IRM: everyone else.
        assert_eq!(
            decode_sgi1r((1 << 40) | 0x0200_0000, 2, 4),
            Sgi1rRequest {
                intid: 2,
                targets: VcpuSet(0b1011)
            }
        );
        // Aff1, Aff2, Aff3 or RS non-zero name no vCPU of ours.
        assert!(decode_sgi1r(0x0001_0001, 0, 4).targets.is_empty());
        assert!(decode_sgi1r((1 << 32) | 1, 0, 4).targets.is_empty());
        assert!(decode_sgi1r((1 << 48) | 1, 0, 4).targets.is_empty());
        assert!(decode_sgi1r((1 << 44) | 1, 0, 4).targets.is_empty());

        let mut vgic = Vgic::new(GicVersion::V3, 2);
        let effects = vgic.write_sgi1r(0, 0x0300_0002);
        assert_eq!(effects.kick, VcpuSet::only(1));
        assert!(vgic.irq(1, 3).is_some_and(|irq| irq.pending()));
        let mut v2 = Vgic::new(GicVersion::V2, 2);
        assert!(v2.write_sgi1r(0, 0x0300_0002).is_empty());
    }
}
