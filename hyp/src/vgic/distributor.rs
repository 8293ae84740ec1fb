//! Emulation of the distributor registers (`GICD_*`) of GICv2 and GICv3.
//!
//! Access sizes follow the architecture (GICv2 IHI 0048B §4.1.4, GICv3 IHI 0069 §12.1.3):
//! every register allows 32-bit accesses; `GICD_IPRIORITYR`, `GICD_ITARGETSR`,
//! `GICD_CPENDSGIR` and `GICD_SPENDSGIR` also allow byte accesses; the 64-bit
//! `GICD_IROUTER<n>` allows 64-bit accesses and 32-bit accesses to either half. Any other
//! size, or a misaligned access, is [`AccessError::BadSize`]. Reserved offsets inside the
//! frame read as zero and ignore writes; offsets beyond it are [`AccessError::OutOfRange`].
//!
//! The GICv2 model has no Security Extensions: `GICD_CTLR` has `EnableGrp0` (bit 0) and
//! `EnableGrp1` (bit 1). The GICv3 model is the single-security-state view with affinity
//! routing always on (`ARE` and `DS` read as one, writes ignored), so the SGI and PPI
//! registers of the distributor are RAZ/WI (the redistributors hold them).

use super::state::{IROUTER_MASK, PRIORITY_MASK};
use super::{
    AccessError, Effects, Frame, GicVersion, VcpuSet, Vgic, DISTRIBUTOR_V2_SIZE,
    DISTRIBUTOR_V3_SIZE, NR_SGIS, SPI_BASE,
};

/// `GICD_CTLR` / `GICR_*`: `EnableGrp0`.
const CTLR_ENABLE_GROUP0: u32 = 1 << 0;
/// `GICD_CTLR`: `EnableGrp1`.
const CTLR_ENABLE_GROUP1: u32 = 1 << 1;
/// GICv3 `GICD_CTLR.ARE` (`ARE_NS` in the two-security-state view): RAO/WI.
const CTLR_ARE: u32 = 1 << 4;
/// GICv3 `GICD_CTLR.DS`: single security state, RAO/WI.
const CTLR_DS: u32 = 1 << 6;
/// `GICD_IIDR` / `GICR_IIDR`: implementer Arm (0x43B), product 0, revision 0.
pub const IIDR: u32 = 0x0000_043b;

/// The eight `GICD_SGIR` / `GICD_*SGIR` offsets and friends (GICv2).
const SGIR: u64 = 0xf00;

/// The set/clear register pairs that hold one bit per INTID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitRegister {
    /// `IGROUPR`.
    Group,
    /// `ISENABLER`.
    SetEnable,
    /// `ICENABLER`.
    ClearEnable,
    /// `ISPENDR`.
    SetPending,
    /// `ICPENDR`.
    ClearPending,
    /// `ISACTIVER`.
    SetActive,
    /// `ICACTIVER`.
    ClearActive,
}

impl BitRegister {
    /// The register at `offset` in the 0x080..0x400 block, and the first INTID it covers.
    pub(crate) fn decode(offset: u64) -> Option<(BitRegister, u32)> {
        let register = match offset & !0x7f {
            0x080 => BitRegister::Group,
            0x100 => BitRegister::SetEnable,
            0x180 => BitRegister::ClearEnable,
            0x200 => BitRegister::SetPending,
            0x280 => BitRegister::ClearPending,
            0x300 => BitRegister::SetActive,
            0x380 => BitRegister::ClearActive,
            _ => return None,
        };
        let first = u32::try_from((offset & 0x7f) / 4 * 32).ok()?;
        Some((register, first))
    }
}

/// The value of an identification register (`PIDR*`, `CIDR*`) at `offset` from the start of
/// the identification block (`0xFD0` from the end of a 64 KiB or 4 KiB frame).
pub(crate) fn id_register(offset: u64, architecture_revision: u32) -> u32 {
    match offset {
        0x00 => 0x04,                               // PIDR4
        0x10 => 0x90,                               // PIDR0
        0x14 => 0xb4,                               // PIDR1
        0x18 => (architecture_revision << 4) | 0xb, // PIDR2: ArchRev, JEDEC, JEP106
        0x20 => 0x0d,                               // CIDR0
        0x24 => 0xf0,                               // CIDR1
        0x28 => 0x05,                               // CIDR2
        0x2c => 0xb1,                               // CIDR3
        _ => 0,
    }
}

/// Checks that `size` is one of `allowed` and `offset` is aligned to it.
pub(crate) fn check_size(offset: u64, size: u8, allowed: &[u8]) -> Result<(), AccessError> {
    if allowed.contains(&size) && offset.is_multiple_of(u64::from(size)) {
        Ok(())
    } else {
        Err(AccessError::BadSize)
    }
}

/// Sizes of a 32-bit-only register.
pub(crate) const WORD: &[u8] = &[4];
/// Sizes of a byte-accessible register.
pub(crate) const BYTE_OR_WORD: &[u8] = &[1, 4];
/// Sizes of a 64-bit register.
pub(crate) const WORD_OR_DOUBLEWORD: &[u8] = &[4, 8];

impl Vgic {
    /// Reads `size` bytes at `offset` in `frame`, accessed by `vcpu`.
    pub fn read(
        &self,
        frame: Frame,
        vcpu: usize,
        offset: u64,
        size: u8,
    ) -> Result<u64, AccessError> {
        match frame {
            Frame::Distributor => self.read_distributor(vcpu, offset, size),
            Frame::Redistributors => self.read_redistributor(offset, size),
        }
    }

    /// Writes the low `size` bytes of `value` at `offset` in `frame`, accessed by `vcpu`.
    pub fn write(
        &mut self,
        frame: Frame,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, AccessError> {
        match frame {
            Frame::Distributor => self.write_distributor(vcpu, offset, size, value),
            Frame::Redistributors => self.write_redistributor(offset, size, value),
        }
    }

    /// Reads a distributor register (`offset` from the frame base) as `vcpu` sees it.
    pub fn read_distributor(&self, vcpu: usize, offset: u64, size: u8) -> Result<u64, AccessError> {
        if vcpu >= self.vcpus {
            return Err(AccessError::OutOfRange);
        }
        match self.version {
            GicVersion::V2 => self.read_distributor_v2(vcpu, offset, size),
            GicVersion::V3 => self.read_distributor_v3(vcpu, offset, size),
        }
    }

    /// Writes a distributor register (`offset` from the frame base) as `vcpu`.
    pub fn write_distributor(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, AccessError> {
        if vcpu >= self.vcpus {
            return Err(AccessError::OutOfRange);
        }
        let value = truncate(value, size);
        match self.version {
            GicVersion::V2 => self.write_distributor_v2(vcpu, offset, size, value as u32),
            GicVersion::V3 => self.write_distributor_v3(vcpu, offset, size, value),
        }
    }

    fn ctlr(&self) -> u32 {
        let mut value = 0;
        if self.enable_group0 {
            value |= CTLR_ENABLE_GROUP0;
        }
        if self.enable_group1 {
            value |= CTLR_ENABLE_GROUP1;
        }
        if self.version == GicVersion::V3 {
            value |= CTLR_ARE | CTLR_DS;
        }
        value
    }

    fn write_ctlr(&mut self, value: u32) -> Effects {
        let group0 = value & CTLR_ENABLE_GROUP0 != 0;
        let group1 = value & CTLR_ENABLE_GROUP1 != 0;
        if group0 == self.enable_group0 && group1 == self.enable_group1 {
            return Effects::NONE;
        }
        self.enable_group0 = group0;
        self.enable_group1 = group1;
        self.changed();
        self.all_vcpus()
    }

    /// A distributor register the state arms do not claim: an identification register
    /// ([`super::Shape::read_distributor_identity`]), else reserved (RAZ).
    fn read_identity_or_zero(&self, offset: u64, size: u8) -> Result<u64, AccessError> {
        match self.shape().read_distributor_identity(offset, size) {
            Some(answer) => answer,
            None => check_size(offset, size, WORD).map(|()| 0),
        }
    }

    fn read_distributor_v2(&self, vcpu: usize, offset: u64, size: u8) -> Result<u64, AccessError> {
        if offset >= DISTRIBUTOR_V2_SIZE {
            return Err(AccessError::OutOfRange);
        }
        let value = match offset {
            0x000 => {
                check_size(offset, size, WORD)?;
                self.ctlr()
            }
            0x080..=0x3ff => {
                check_size(offset, size, WORD)?;
                match BitRegister::decode(offset) {
                    Some((register, first)) => self.read_bits(vcpu, first, register),
                    None => 0,
                }
            }
            0x400..=0x7ff => {
                check_size(offset, size, BYTE_OR_WORD)?;
                self.read_priorities(vcpu, (offset - 0x400) as u32, size)
            }
            0x800..=0xbff => {
                check_size(offset, size, BYTE_OR_WORD)?;
                self.read_targets(vcpu, (offset - 0x800) as u32, size)
            }
            0xc00..=0xcff => {
                check_size(offset, size, WORD)?;
                self.read_config(vcpu, ((offset - 0xc00) * 4) as u32)
            }
            SGIR => {
                // Write-only.
                check_size(offset, size, WORD)?;
                0
            }
            0xf10..=0xf2f => {
                check_size(offset, size, BYTE_OR_WORD)?;
                self.read_sgi_sources(vcpu, ((offset - 0xf10) & 0xf) as u32, size)
            }
            _ => return self.read_identity_or_zero(offset, size),
        };
        Ok(u64::from(value))
    }

    fn write_distributor_v2(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u32,
    ) -> Result<Effects, AccessError> {
        if offset >= DISTRIBUTOR_V2_SIZE {
            return Err(AccessError::OutOfRange);
        }
        let effects = match offset {
            0x000 => {
                check_size(offset, size, WORD)?;
                self.write_ctlr(value)
            }
            0x080..=0x3ff => {
                check_size(offset, size, WORD)?;
                match BitRegister::decode(offset) {
                    Some((register, first)) => self.write_bits(vcpu, first, register, value),
                    None => Effects::NONE,
                }
            }
            0x400..=0x7ff => {
                check_size(offset, size, BYTE_OR_WORD)?;
                self.write_priorities(vcpu, (offset - 0x400) as u32, size, value)
            }
            0x800..=0xbff => {
                check_size(offset, size, BYTE_OR_WORD)?;
                self.write_targets(vcpu, (offset - 0x800) as u32, size, value)
            }
            0xc00..=0xcff => {
                check_size(offset, size, WORD)?;
                self.write_config(vcpu, ((offset - 0xc00) * 4) as u32, value)
            }
            SGIR => {
                check_size(offset, size, WORD)?;
                self.write_sgir(vcpu, value)
            }
            0xf10..=0xf2f => {
                check_size(offset, size, BYTE_OR_WORD)?;
                let set = offset >= 0xf20;
                self.write_sgi_sources(vcpu, ((offset - 0xf10) & 0xf) as u32, size, value, set)
            }
            _ => {
                // TYPER, IIDR and the identification registers are read-only; the rest is
                // reserved.
                check_size(offset, size, WORD)?;
                Effects::NONE
            }
        };
        Ok(effects)
    }

    fn read_distributor_v3(&self, vcpu: usize, offset: u64, size: u8) -> Result<u64, AccessError> {
        if offset >= DISTRIBUTOR_V3_SIZE {
            return Err(AccessError::OutOfRange);
        }
        let value: u64 = match offset {
            0x0000 => {
                check_size(offset, size, WORD)?;
                u64::from(self.ctlr())
            }
            0x0080..=0x03ff => {
                check_size(offset, size, WORD)?;
                match BitRegister::decode(offset) {
                    Some((register, first)) if first >= SPI_BASE => {
                        u64::from(self.read_bits(vcpu, first, register))
                    }
                    _ => 0,
                }
            }
            0x0400..=0x07ff => {
                check_size(offset, size, BYTE_OR_WORD)?;
                let first = (offset - 0x400) as u32;
                if first >= SPI_BASE {
                    u64::from(self.read_priorities(vcpu, first, size))
                } else {
                    0
                }
            }
            0x0800..=0x0bff | 0x0f10..=0x0f2f => {
                // ITARGETSR, CPENDSGIR, SPENDSGIR: RAZ/WI with affinity routing.
                check_size(offset, size, BYTE_OR_WORD)?;
                0
            }
            0x0c00..=0x0cff => {
                check_size(offset, size, WORD)?;
                let first = ((offset - 0xc00) * 4) as u32;
                if first >= SPI_BASE {
                    u64::from(self.read_config(vcpu, first))
                } else {
                    0
                }
            }
            0x6000..=0x7fdf => {
                check_size(offset, size, WORD_OR_DOUBLEWORD)?;
                let intid = ((offset - 0x6000) / 8) as u32;
                let route = if intid >= SPI_BASE {
                    self.irq(vcpu, intid).map_or(0, |irq| irq.route)
                } else {
                    0
                };
                if size == 8 {
                    route
                } else if offset & 4 == 0 {
                    route & 0xffff_ffff
                } else {
                    route >> 32
                }
            }
            // TYPER2, STATUSR, IGRPMODR, NSACR, SGIR and reserved space: RAZ.
            _ => return self.read_identity_or_zero(offset, size),
        };
        Ok(value)
    }

    fn write_distributor_v3(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, AccessError> {
        if offset >= DISTRIBUTOR_V3_SIZE {
            return Err(AccessError::OutOfRange);
        }
        let word = value as u32;
        let effects = match offset {
            0x0000 => {
                check_size(offset, size, WORD)?;
                self.write_ctlr(word)
            }
            0x0080..=0x03ff => {
                check_size(offset, size, WORD)?;
                match BitRegister::decode(offset) {
                    Some((register, first)) if first >= SPI_BASE => {
                        self.write_bits(vcpu, first, register, word)
                    }
                    _ => Effects::NONE,
                }
            }
            0x0400..=0x07ff => {
                check_size(offset, size, BYTE_OR_WORD)?;
                let first = (offset - 0x400) as u32;
                if first >= SPI_BASE {
                    self.write_priorities(vcpu, first, size, word)
                } else {
                    Effects::NONE
                }
            }
            0x0800..=0x0bff | 0x0f10..=0x0f2f => {
                check_size(offset, size, BYTE_OR_WORD)?;
                Effects::NONE
            }
            0x0c00..=0x0cff => {
                check_size(offset, size, WORD)?;
                let first = ((offset - 0xc00) * 4) as u32;
                if first >= SPI_BASE {
                    self.write_config(vcpu, first, word)
                } else {
                    Effects::NONE
                }
            }
            0x6000..=0x7fdf => {
                check_size(offset, size, WORD_OR_DOUBLEWORD)?;
                let intid = ((offset - 0x6000) / 8) as u32;
                if intid < SPI_BASE {
                    Effects::NONE
                } else {
                    let high_half = size == 4 && offset & 4 != 0;
                    let full = size == 8;
                    self.touch(vcpu, intid, |irq| {
                        let route = if full {
                            value
                        } else if high_half {
                            (irq.route & 0xffff_ffff) | (value << 32)
                        } else {
                            (irq.route & !0xffff_ffff) | value
                        };
                        irq.route = route & IROUTER_MASK;
                    })
                }
            }
            _ => {
                check_size(offset, size, WORD)?;
                Effects::NONE
            }
        };
        Ok(effects)
    }

    /// Reads 32 bits of a set/clear register pair starting at INTID `first` (banked part as
    /// `vcpu` sees it).
    pub(crate) fn read_bits(&self, vcpu: usize, first: u32, register: BitRegister) -> u32 {
        let mut value = 0;
        for bit in 0..32u32 {
            let Some(irq) = first
                .checked_add(bit)
                .and_then(|intid| self.irq(vcpu, intid))
            else {
                continue;
            };
            let set = match register {
                BitRegister::Group => irq.group1,
                BitRegister::SetEnable | BitRegister::ClearEnable => irq.enabled,
                BitRegister::SetPending | BitRegister::ClearPending => irq.pending(),
                BitRegister::SetActive | BitRegister::ClearActive => irq.active,
            };
            if set {
                value |= 1 << bit;
            }
        }
        value
    }

    /// Writes 32 bits of a set/clear register pair starting at INTID `first`.
    pub(crate) fn write_bits(
        &mut self,
        vcpu: usize,
        first: u32,
        register: BitRegister,
        value: u32,
    ) -> Effects {
        let mut effects = Effects::NONE;
        for bit in 0..32u32 {
            let one = value & (1 << bit) != 0;
            if register != BitRegister::Group && !one {
                continue;
            }
            let Some(intid) = first.checked_add(bit) else {
                continue;
            };
            // GICv2 SGIs are made pending per source through GICD_SPENDSGIR only.
            let sgi_v2 = intid < NR_SGIS && self.version == GicVersion::V2;
            effects = effects.merge(self.touch(vcpu, intid, |irq| match register {
                BitRegister::Group => irq.group1 = one,
                BitRegister::SetEnable => irq.enabled = true,
                BitRegister::ClearEnable => irq.enabled = false,
                BitRegister::SetPending => {
                    if !sgi_v2 {
                        irq.pending_latch = true;
                    }
                }
                BitRegister::ClearPending => {
                    // A level-sensitive interrupt whose line is asserted stays pending.
                    if !sgi_v2 {
                        irq.pending_latch = false;
                    }
                }
                BitRegister::SetActive => irq.active = true,
                BitRegister::ClearActive => irq.active = false,
            }));
        }
        effects
    }

    /// Reads `size` priority bytes starting at INTID `first`.
    pub(crate) fn read_priorities(&self, vcpu: usize, first: u32, size: u8) -> u32 {
        let mut value = 0;
        for byte in 0..u32::from(size) {
            let priority = first
                .checked_add(byte)
                .and_then(|intid| self.irq(vcpu, intid))
                .map_or(0, |irq| irq.priority);
            value |= u32::from(priority) << (8 * byte);
        }
        value
    }

    /// Writes `size` priority bytes starting at INTID `first` (unimplemented bits ignored).
    pub(crate) fn write_priorities(
        &mut self,
        vcpu: usize,
        first: u32,
        size: u8,
        value: u32,
    ) -> Effects {
        let mut effects = Effects::NONE;
        for byte in 0..u32::from(size) {
            let Some(intid) = first.checked_add(byte) else {
                continue;
            };
            let priority = ((value >> (8 * byte)) & 0xff) as u8 & PRIORITY_MASK;
            effects = effects.merge(self.touch(vcpu, intid, |irq| irq.priority = priority));
        }
        effects
    }

    /// Reads `GICD_ICFGR` bits for the 16 INTIDs starting at `first`.
    pub(crate) fn read_config(&self, vcpu: usize, first: u32) -> u32 {
        let mut value = 0;
        for index in 0..16u32 {
            let edge = first
                .checked_add(index)
                .and_then(|intid| self.irq(vcpu, intid))
                .is_some_and(|irq| irq.edge);
            if edge {
                value |= 2 << (2 * index);
            }
        }
        value
    }

    /// Writes `GICD_ICFGR` bits for the 16 INTIDs starting at `first` (SGIs stay edge).
    pub(crate) fn write_config(&mut self, vcpu: usize, first: u32, value: u32) -> Effects {
        let mut effects = Effects::NONE;
        for index in 0..16u32 {
            let Some(intid) = first.checked_add(index) else {
                continue;
            };
            if intid < NR_SGIS {
                continue;
            }
            let edge = value & (2 << (2 * index)) != 0;
            effects = effects.merge(self.touch(vcpu, intid, |irq| irq.edge = edge));
        }
        effects
    }

    /// Reads `size` `GICD_ITARGETSR` bytes starting at INTID `first`: SGIs and PPIs read as
    /// the accessing vCPU's own bit, missing INTIDs as zero.
    fn read_targets(&self, vcpu: usize, first: u32, size: u8) -> u32 {
        let mut value = 0;
        for byte in 0..u32::from(size) {
            let Some(intid) = first.checked_add(byte) else {
                continue;
            };
            let mask = match self.irq(vcpu, intid) {
                None => 0,
                Some(_) if intid < SPI_BASE => VcpuSet::only(vcpu).0,
                Some(irq) => irq.targets,
            };
            value |= u32::from(mask) << (8 * byte);
        }
        value
    }

    /// Writes `size` `GICD_ITARGETSR` bytes starting at INTID `first` (SPIs only; bits of
    /// missing vCPUs are ignored).
    fn write_targets(&mut self, vcpu: usize, first: u32, size: u8, value: u32) -> Effects {
        let mut effects = Effects::NONE;
        let valid = self.vcpu_mask();
        for byte in 0..u32::from(size) {
            let Some(intid) = first.checked_add(byte) else {
                continue;
            };
            if intid < SPI_BASE {
                continue;
            }
            let mask = ((value >> (8 * byte)) & 0xff) as u8 & valid;
            effects = effects.merge(self.touch(vcpu, intid, |irq| irq.targets = mask));
        }
        effects
    }

    /// GICv2 `GICD_SGIR` write from `sender`.
    fn write_sgir(&mut self, sender: usize, value: u32) -> Effects {
        let intid = value & 0xf;
        let list = ((value >> 16) & 0xff) as u8;
        let targets = match (value >> 24) & 0x3 {
            0 => VcpuSet(list & self.vcpu_mask()),
            1 => VcpuSet(self.vcpu_mask() & !VcpuSet::only(sender).0),
            2 => VcpuSet::only(sender),
            _ => VcpuSet::EMPTY,
        };
        self.send_sgi(sender, intid, targets)
    }

    /// Reads `GICD_CPENDSGIR`/`GICD_SPENDSGIR` bytes: one byte per SGI, one bit per source.
    fn read_sgi_sources(&self, vcpu: usize, first: u32, size: u8) -> u32 {
        let mut value = 0;
        for byte in 0..u32::from(size) {
            let sources = first
                .checked_add(byte)
                .filter(|intid| *intid < NR_SGIS)
                .and_then(|intid| self.irq(vcpu, intid))
                .map_or(0, |irq| irq.sgi_sources);
            value |= u32::from(sources) << (8 * byte);
        }
        value
    }

    /// Writes `GICD_CPENDSGIR` (`set` false) or `GICD_SPENDSGIR` (`set` true) bytes.
    fn write_sgi_sources(
        &mut self,
        vcpu: usize,
        first: u32,
        size: u8,
        value: u32,
        set: bool,
    ) -> Effects {
        let mut effects = Effects::NONE;
        let valid = self.vcpu_mask();
        for byte in 0..u32::from(size) {
            let Some(intid) = first.checked_add(byte).filter(|intid| *intid < NR_SGIS) else {
                continue;
            };
            let bits = ((value >> (8 * byte)) & 0xff) as u8 & valid;
            effects = effects.merge(self.touch(vcpu, intid, |irq| {
                if set {
                    irq.sgi_sources |= bits;
                } else {
                    irq.sgi_sources &= !bits;
                }
            }));
        }
        effects
    }
}

/// The low `size` bytes of `value`.
pub(crate) fn truncate(value: u64, size: u8) -> u64 {
    match size {
        1 => value & 0xff,
        2 => value & 0xffff,
        4 => value & 0xffff_ffff,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(vgic: &mut Vgic, vcpu: usize, offset: u64, size: u8) -> u64 {
        vgic.read_distributor(vcpu, offset, size).unwrap_or(0xdead)
    }

    fn write(vgic: &mut Vgic, vcpu: usize, offset: u64, size: u8, value: u64) -> Effects {
        vgic.write_distributor(vcpu, offset, size, value)
            .unwrap_or(Effects::NONE)
    }

    #[test]
    fn v2_identification() {
        let mut vgic = Vgic::new(GicVersion::V2, 4);
        assert_eq!(read(&mut vgic, 0, 0x004, 4), 0x61); // ITLinesNumber 1, CPUNumber 3
        assert_eq!(read(&mut vgic, 0, 0x008, 4), 0x43b);
        assert_eq!(read(&mut vgic, 0, 0xfe8, 4) >> 4 & 0xf, 2);
        assert_eq!(read(&mut vgic, 0, 0xff0, 4), 0x0d);
        assert_eq!(read(&mut vgic, 0, 0x010, 4), 0);
        assert_eq!(
            vgic.read_distributor(0, 0x1000, 4),
            Err(AccessError::OutOfRange)
        );
        assert_eq!(
            vgic.read_distributor(4, 0x0, 4),
            Err(AccessError::OutOfRange)
        );
    }

    #[test]
    fn v2_sizes() {
        let mut vgic = Vgic::new(GicVersion::V2, 1);
        assert_eq!(
            vgic.read_distributor(0, 0x000, 1),
            Err(AccessError::BadSize)
        );
        assert_eq!(
            vgic.read_distributor(0, 0x000, 8),
            Err(AccessError::BadSize)
        );
        assert_eq!(
            vgic.read_distributor(0, 0x100, 2),
            Err(AccessError::BadSize)
        );
        assert_eq!(
            vgic.read_distributor(0, 0x102, 4),
            Err(AccessError::BadSize)
        );
        assert_eq!(vgic.read_distributor(0, 0x401, 1), Ok(0));
        assert_eq!(
            vgic.read_distributor(0, 0x402, 4),
            Err(AccessError::BadSize)
        );
        assert_eq!(
            vgic.read_distributor(0, 0x401, 2),
            Err(AccessError::BadSize)
        );
        assert_eq!(vgic.write_distributor(0, 0x803, 1, 1), Ok(Effects::NONE));
        assert_eq!(
            vgic.write_distributor(0, 0xc00, 1, 0),
            Err(AccessError::BadSize)
        );
        assert_eq!(
            vgic.write_distributor(0, 0xf21, 1, 1).map(|e| e.is_empty()),
            Ok(false)
        );
        assert_eq!(
            vgic.write_distributor(0, 0xf00, 8, 0),
            Err(AccessError::BadSize)
        );
    }

    #[test]
    fn v2_ctlr_and_enable() {
        let mut vgic = Vgic::new(GicVersion::V2, 2);
        let effects = write(&mut vgic, 0, 0x000, 4, 0xffff_ffff);
        assert_eq!(effects.kick, VcpuSet(0b11));
        assert_eq!(read(&mut vgic, 0, 0x000, 4), 3);
        // SGIs/PPIs are banked: vCPU 1 enables its PPI 27 and SPI 40.
        write(&mut vgic, 1, 0x100, 4, 1 << 27);
        write(&mut vgic, 1, 0x104, 4, 1 << 8);
        assert_eq!(read(&mut vgic, 1, 0x100, 4), 1 << 27);
        assert_eq!(read(&mut vgic, 0, 0x100, 4), 0);
        assert_eq!(read(&mut vgic, 0, 0x104, 4), 1 << 8);
        assert_eq!(read(&mut vgic, 0, 0x184, 4), 1 << 8);
        write(&mut vgic, 0, 0x184, 4, 1 << 8);
        assert_eq!(read(&mut vgic, 1, 0x104, 4), 0);
        // SPIs beyond the implemented ones are RAZ/WI.
        write(&mut vgic, 0, 0x108, 4, u64::MAX);
        assert_eq!(read(&mut vgic, 0, 0x108, 4), 0);
    }

    #[test]
    fn v2_priorities_keep_five_bits() {
        let mut vgic = Vgic::new(GicVersion::V2, 1);
        write(&mut vgic, 0, 0x420, 4, 0x0102_83ff);
        assert_eq!(read(&mut vgic, 0, 0x420, 4), 0x0000_80f8);
        write(&mut vgic, 0, 0x423, 1, 0xa7);
        assert_eq!(read(&mut vgic, 0, 0x423, 1), 0xa0);
        assert_eq!(read(&mut vgic, 0, 0x420, 4), 0xa000_80f8);
        assert_eq!(vgic.irq(0, 35).map(|irq| irq.priority()), Some(0xa0));
    }

    #[test]
    fn v2_targets() {
        let mut vgic = Vgic::new(GicVersion::V2, 3);
        assert_eq!(read(&mut vgic, 2, 0x800, 4), 0x0404_0404);
        assert_eq!(read(&mut vgic, 1, 0x81f, 1), 0x02);
        write(&mut vgic, 1, 0x81c, 4, 0xffff_ffff);
        assert_eq!(read(&mut vgic, 1, 0x81c, 4), 0x0202_0202);
        write(&mut vgic, 0, 0x820, 4, 0xff04_0201);
        assert_eq!(read(&mut vgic, 0, 0x820, 4), 0x0704_0201);
        write(&mut vgic, 0, 0x822, 1, 0x02);
        assert_eq!(read(&mut vgic, 2, 0x820, 4), 0x0702_0201);
        assert_eq!(read(&mut vgic, 0, 0x840, 4), 0);
    }

    #[test]
    fn v2_config() {
        let mut vgic = Vgic::new(GicVersion::V2, 1);
        assert_eq!(read(&mut vgic, 0, 0xc00, 4), 0xaaaa_aaaa);
        write(&mut vgic, 0, 0xc00, 4, 0);
        assert_eq!(read(&mut vgic, 0, 0xc00, 4), 0xaaaa_aaaa);
        assert_eq!(read(&mut vgic, 0, 0xc04, 4), 0);
        write(&mut vgic, 0, 0xc08, 4, 0x0000_0002);
        assert_eq!(read(&mut vgic, 0, 0xc08, 4), 2);
        assert!(vgic.irq(0, 32).is_some_and(|irq| irq.edge_triggered()));
    }

    #[test]
    fn v2_sgir_filters() {
        let mut vgic = Vgic::new(GicVersion::V2, 4);
        // Target list: vCPUs 1 and 3 (and a missing vCPU 6), SGI 5.
        let effects = write(&mut vgic, 0, 0xf00, 4, 0x004a_0005);
        assert_eq!(effects.kick, VcpuSet(0b1010));
        assert_eq!(read(&mut vgic, 1, 0xf14, 4), 0x0000_0100);
        assert_eq!(read(&mut vgic, 3, 0xf25, 1), 0x01);
        // All but self from vCPU 2.
        write(&mut vgic, 2, 0xf00, 4, 0x0100_0005);
        assert_eq!(read(&mut vgic, 1, 0xf25, 1), 0x05);
        assert_eq!(read(&mut vgic, 2, 0xf25, 1), 0x00);
        assert_eq!(read(&mut vgic, 0, 0xf25, 1), 0x04);
        // Self only.
        write(&mut vgic, 3, 0xf00, 4, 0x0200_0000);
        assert_eq!(read(&mut vgic, 3, 0xf20, 1), 0x08);
        // Reserved filter.
        assert!(write(&mut vgic, 3, 0xf00, 4, 0x0300_0001).is_empty());
        // SGIR is write-only; ISPENDR0 shows the SGI pending.
        assert_eq!(read(&mut vgic, 1, 0xf00, 4), 0);
        assert_eq!(read(&mut vgic, 1, 0x200, 4), 1 << 5);
        // CPENDSGIR clears one source; SPENDSGIR sets.
        write(&mut vgic, 1, 0xf15, 1, 0x01);
        assert_eq!(read(&mut vgic, 1, 0xf24, 4), 0x0000_0400);
        write(&mut vgic, 1, 0xf24, 4, 0x0000_8300);
        assert_eq!(read(&mut vgic, 1, 0xf14, 4), 0x0000_0700);
        // ISPENDR/ICPENDR do not touch v2 SGIs.
        write(&mut vgic, 1, 0x280, 4, 0xffff);
        assert_eq!(read(&mut vgic, 1, 0x200, 4), 1 << 5);
        write(&mut vgic, 1, 0x200, 4, 1 << 6);
        assert_eq!(read(&mut vgic, 1, 0x200, 4), 1 << 5);
    }

    #[test]
    fn pending_of_level_interrupt_follows_line() {
        let mut vgic = Vgic::new(GicVersion::V2, 1);
        vgic.set_line_level(0, 40, true);
        assert_eq!(read(&mut vgic, 0, 0x204, 4), 1 << 8);
        write(&mut vgic, 0, 0x284, 4, 1 << 8);
        assert_eq!(read(&mut vgic, 0, 0x204, 4), 1 << 8);
        vgic.set_line_level(0, 40, false);
        assert_eq!(read(&mut vgic, 0, 0x204, 4), 0);
        write(&mut vgic, 0, 0x204, 4, 1 << 8);
        assert_eq!(read(&mut vgic, 0, 0x204, 4), 1 << 8);
        write(&mut vgic, 0, 0x284, 4, 1 << 8);
        assert_eq!(read(&mut vgic, 0, 0x204, 4), 0);
    }

    #[test]
    fn v3_distributor() {
        let mut vgic = Vgic::new(GicVersion::V3, 2);
        assert_eq!(read(&mut vgic, 0, 0x0000, 4), 0x50);
        write(&mut vgic, 0, 0x0000, 4, 0x13);
        assert_eq!(read(&mut vgic, 0, 0x0000, 4), 0x53);
        write(&mut vgic, 0, 0x0000, 4, 0);
        assert_eq!(read(&mut vgic, 0, 0x0000, 4), 0x50);
        assert_eq!(read(&mut vgic, 0, 0x0004, 4), (9 << 19) | 1);
        assert_eq!(read(&mut vgic, 0, 0xffe8, 4) >> 4 & 0xf, 3);
        // SGI/PPI registers are RAZ/WI in the distributor.
        write(&mut vgic, 0, 0x0100, 4, u64::from(u32::MAX));
        assert_eq!(read(&mut vgic, 0, 0x0100, 4), 0);
        write(&mut vgic, 0, 0x0104, 4, 1);
        assert_eq!(read(&mut vgic, 0, 0x0104, 4), 1);
        write(&mut vgic, 0, 0x0400, 4, 0xffff_ffff);
        assert_eq!(read(&mut vgic, 0, 0x0400, 4), 0);
        write(&mut vgic, 0, 0x0800, 4, 0xffff_ffff);
        assert_eq!(read(&mut vgic, 0, 0x0820, 4), 0);
        assert_eq!(read(&mut vgic, 0, 0x0c00, 4), 0);
        write(&mut vgic, 0, 0x0c08, 4, 0x8);
        assert_eq!(read(&mut vgic, 0, 0x0c08, 4), 0x8);
        assert_eq!(
            vgic.read_distributor(0, 0x10000, 4),
            Err(AccessError::OutOfRange)
        );
        assert_eq!(
            vgic.read_distributor(0, 0x0000, 8),
            Err(AccessError::BadSize)
        );
    }

    #[test]
    fn v3_irouter_in_halves_and_whole() {
        let mut vgic = Vgic::new(GicVersion::V3, 2);
        let irouter_40 = 0x6000 + 8 * 40;
        write(&mut vgic, 0, irouter_40, 4, 0x8000_0001);
        write(&mut vgic, 0, irouter_40 + 4, 4, 0xffff_ff12);
        assert_eq!(read(&mut vgic, 0, irouter_40, 8), 0x12_8000_0001);
        assert_eq!(read(&mut vgic, 0, irouter_40 + 4, 4), 0x12);
        assert_eq!(read(&mut vgic, 0, irouter_40, 4), 0x8000_0001);
        write(&mut vgic, 0, irouter_40, 8, 0x0000_0000_0000_0001);
        assert_eq!(read(&mut vgic, 0, irouter_40, 8), 1);
        assert!(vgic.targets(1, 40));
        // The high half alone leaves the low half.
        write(&mut vgic, 0, irouter_40 + 4, 4, 0x1);
        assert_eq!(read(&mut vgic, 0, irouter_40, 8), 0x1_0000_0001);
        assert!(!vgic.targets(1, 40));
        // Misaligned 64-bit access, byte access, SGI/PPI routers.
        assert_eq!(
            vgic.read_distributor(0, irouter_40 + 4, 8),
            Err(AccessError::BadSize)
        );
        assert_eq!(
            vgic.read_distributor(0, irouter_40, 1),
            Err(AccessError::BadSize)
        );
        write(&mut vgic, 0, 0x6000 + 8 * 5, 8, 1);
        assert_eq!(read(&mut vgic, 0, 0x6000 + 8 * 5, 8), 0);
        // Beyond the implemented SPIs.
        write(&mut vgic, 0, 0x6000 + 8 * 100, 8, 1);
        assert_eq!(read(&mut vgic, 0, 0x6000 + 8 * 100, 8), 0);
    }

    proptest! {
        #[test]
        fn set_clear_enable_round_trip(word in 0u64..8, bits in any::<u32>(), vcpu in 0usize..4) {
            let mut vgic = Vgic::new(GicVersion::V2, 4);
            let offset = word * 4;
            let implemented = if word < 2 { u32::MAX } else { 0 };
            write(&mut vgic, vcpu, 0x100 + offset, 4, u64::from(bits));
            prop_assert_eq!(read(&mut vgic, vcpu, 0x100 + offset, 4) as u32, bits & implemented);
            prop_assert_eq!(read(&mut vgic, vcpu, 0x180 + offset, 4) as u32, bits & implemented);
            write(&mut vgic, vcpu, 0x180 + offset, 4, u64::from(bits));
            prop_assert_eq!(read(&mut vgic, vcpu, 0x100 + offset, 4), 0);
        }

        #[test]
        fn any_access_is_checked(
            v3 in any::<bool>(),
            vcpu in 0usize..10,
            offset in 0u64..0x1_2000,
            size in prop::sample::select(vec![0u8, 1, 2, 3, 4, 8, 16]),
            value in any::<u64>(),
        ) {
            let version = if v3 { GicVersion::V3 } else { GicVersion::V2 };
            let mut vgic = Vgic::new(version, 3);
            let frame = if v3 { DISTRIBUTOR_V3_SIZE } else { DISTRIBUTOR_V2_SIZE };
            let written = vgic.write_distributor(vcpu, offset, size, value);
            let read_back = vgic.read_distributor(vcpu, offset, size);
            if offset >= frame || vcpu >= 3 {
                prop_assert_eq!(written, Err(AccessError::OutOfRange));
                prop_assert_eq!(read_back, Err(AccessError::OutOfRange));
            }
            if !matches!(size, 1 | 4 | 8) {
                prop_assert!(written.is_err() && read_back.is_err());
            }
            if let Ok(value) = read_back {
                prop_assert!(size == 8 || value >> (8 * u32::from(size)) == 0);
            }
        }

        #[test]
        fn priority_bytes_agree_with_words(offset in 0u64..0x40, value in any::<u32>()) {
            let mut vgic = Vgic::new(GicVersion::V2, 1);
            let word = 0x400 + (offset & !3);
            write(&mut vgic, 0, word, 4, u64::from(value));
            let bytes = (0..4).fold(0u64, |acc, byte| {
                acc | read(&mut vgic, 0, word + byte, 1) << (8 * byte)
            });
            prop_assert_eq!(bytes, read(&mut vgic, 0, word, 4));
            prop_assert_eq!(bytes as u32, value & 0xf8f8_f8f8);
        }
    }
}
