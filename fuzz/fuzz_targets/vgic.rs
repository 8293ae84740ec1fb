//! The vGIC register model (`hyp::vgic`: distributor, GICv3 redistributors, ICC_SGI1R_EL1)
//! under arbitrary sequences of reads and writes at arbitrary offsets and widths, mixed
//! with the hypervisor's own inputs (line levels, injected edges, SGIs).
//!
//! Invariants after every step:
//! * nothing panics; a read's value fits its width; a read changes nothing (reading twice
//!   gives the same value, and the state's generation is unchanged);
//! * an access is refused exactly when its width or alignment is wrong for the register
//!   (the same answer for a read and a write) or it lies beyond the frame;
//! * the vCPUs an access asks to kick exist;
//! * storage registers (priorities, targets, routes, groups, configuration, `CTLR`) read
//!   back what was written, through the register's fixed and writable bits (found by
//!   writing all-zeroes and all-ones to a copy); set-enable bits read back as set and
//!   clear-enable bits as clear;
//! * no out-of-range state: states of vCPUs and INTIDs beyond the model do not exist,
//!   priorities keep only the implemented bits, only SGIs have SGI sources, and the
//!   deliverable set computed with the model's caches equals a brute-force scan.
#![no_main]

use hyp::vgic::state::PRIORITY_MASK;
use hyp::vgic::{
    AccessError, Effects, Frame, GicVersion, Vgic, MAX_VCPUS, NR_INTIDS, NR_SGIS,
    REDISTRIBUTOR_STRIDE,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Read {
        frame: bool,
        vcpu: u8,
        offset: u32,
        size: u8,
    },
    Write {
        frame: bool,
        vcpu: u8,
        offset: u32,
        size: u8,
        value: u64,
    },
    /// An access at a register the guest is likely to use (offset from a short table).
    Register {
        frame: bool,
        vcpu: u8,
        which: u8,
        index: u8,
        size: u8,
        value: u64,
    },
    Sgi1r {
        sender: u8,
        value: u64,
    },
    Line {
        vcpu: u8,
        intid: u8,
        level: bool,
    },
    Pending {
        vcpu: u8,
        intid: u8,
    },
    SendSgi {
        sender: u8,
        intid: u8,
        targets: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    v3: bool,
    vcpus: u8,
    ops: Vec<Op>,
}

/// Distributor registers: (offset, stride of one register).
const DISTRIBUTOR: &[(u32, u32)] = &[
    (0x000, 4),  // CTLR
    (0x004, 4),  // TYPER
    (0x080, 4),  // IGROUPR
    (0x100, 4),  // ISENABLER
    (0x180, 4),  // ICENABLER
    (0x200, 4),  // ISPENDR
    (0x280, 4),  // ICPENDR
    (0x300, 4),  // ISACTIVER
    (0x380, 4),  // ICACTIVER
    (0x400, 1),  // IPRIORITYR
    (0x800, 1),  // ITARGETSR
    (0xc00, 4),  // ICFGR
    (0xf00, 4),  // SGIR
    (0xf10, 1),  // CPENDSGIR
    (0xf20, 1),  // SPENDSGIR
    (0x6100, 8), // IROUTER (v3)
    (0xffd0, 4), // ID registers (v3)
];
/// Redistributor registers, from a vCPU's RD_base.
const REDISTRIBUTOR: &[(u32, u32)] = &[
    (0x0000, 4),
    (0x0008, 4),
    (0x0014, 4),
    (0x1_0080, 4),
    (0x1_0100, 4),
    (0x1_0180, 4),
    (0x1_0200, 4),
    (0x1_0280, 4),
    (0x1_0300, 4),
    (0x1_0380, 4),
    (0x1_0400, 1),
    (0x1_0c00, 4),
];

fn frame_of(v3: bool, redistributor: bool) -> Frame {
    if v3 && redistributor {
        Frame::Redistributors
    } else {
        Frame::Distributor
    }
}

/// Whether the register at `offset` (from its frame's start, or from a vCPU's RD_base)
/// simply stores what is written (bit by bit, through a fixed mask).
fn is_storage(frame: Frame, offset: u64) -> bool {
    match frame {
        Frame::Distributor => matches!(
            offset,
            0x000..=0x003 | 0x080..=0x0ff | 0x400..=0x7fb | 0x800..=0xbfb | 0xc00..=0xcff
                | 0x6100..=0x7fd7
        ),
        Frame::Redistributors => {
            matches!(offset % REDISTRIBUTOR_STRIDE, 0x1_0080..=0x1_0083 | 0x1_0400..=0x1_041f | 0x1_0c00..=0x1_0c07)
        }
    }
}

fn width_mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (u32::from(size) * 8)) - 1
    }
}

fn check_effects(vgic: &Vgic, effects: Effects) {
    for vcpu in effects.kick.iter() {
        assert!(
            vcpu < vgic.vcpus(),
            "kick of vCPU {vcpu} of {}",
            vgic.vcpus()
        );
    }
}

fn read(
    vgic: &mut Vgic,
    frame: Frame,
    vcpu: usize,
    offset: u64,
    size: u8,
) -> Result<u64, AccessError> {
    let generation = vgic.generation();
    let first = vgic.read(frame, vcpu, offset, size);
    let second = vgic.read(frame, vcpu, offset, size);
    assert_eq!(first, second, "a read changed the register");
    assert_eq!(
        vgic.generation(),
        generation,
        "a read changed the interrupt state"
    );
    if let Ok(value) = first {
        assert_eq!(
            value & !width_mask(size),
            0,
            "a {size}-byte read returned {value:#x}"
        );
    }
    first
}

fn write(vgic: &mut Vgic, frame: Frame, vcpu: usize, offset: u64, size: u8, value: u64) {
    let probe_read = vgic.clone().read(frame, vcpu, offset, size);
    let result = vgic.write(frame, vcpu, offset, size, value);
    // A read and a write at the same place are refused for the same reason.
    assert_eq!(
        result.err(),
        probe_read.err(),
        "write and read disagree at {frame:?} {offset:#x} size {size}"
    );
    let Ok(effects) = result else { return };
    check_effects(vgic, effects);
    let value = value & width_mask(size);
    let register = match frame {
        Frame::Distributor => offset,
        Frame::Redistributors => offset % REDISTRIBUTOR_STRIDE,
    };
    if is_storage(frame, offset) {
        let mut zeroes = vgic.clone();
        let _ = zeroes.write(frame, vcpu, offset, size, 0);
        let fixed = read(&mut zeroes, frame, vcpu, offset, size).unwrap();
        let mut ones = vgic.clone();
        let _ = ones.write(frame, vcpu, offset, size, u64::MAX);
        let writable = read(&mut ones, frame, vcpu, offset, size).unwrap() & !fixed;
        let now = read(vgic, frame, vcpu, offset, size).unwrap();
        assert_eq!(
            now,
            (value & writable) | fixed,
            "{frame:?} {offset:#x} size {size}: wrote {value:#x}, fixed {fixed:#x}, writable {writable:#x}"
        );
        if (0x400..0x800).contains(&register) || (0x1_0400..0x1_0420).contains(&register) {
            // Priorities keep only the implemented bits.
            for byte in 0..size {
                let mask = u64::from(PRIORITY_MASK) << (8 * byte);
                assert_eq!(now & (0xff << (8 * byte)) & !mask, 0);
            }
        }
    }
    // ISENABLER / ICENABLER (and the redistributor's SGI-frame copies, 0x1_0000 on).
    let base = register & !0x7f;
    if matches!(base, 0x100 | 0x180 | 0x1_0100 | 0x1_0180) {
        let set_offset = offset & !0x80;
        let enabled = read(vgic, frame, vcpu, set_offset, 4).unwrap();
        if base & 0x80 == 0 {
            // Set-enable: written ones that can be set are set.
            let mut ones = vgic.clone();
            let _ = ones.write(frame, vcpu, set_offset, 4, u64::MAX);
            let settable = read(&mut ones, frame, vcpu, set_offset, 4).unwrap();
            assert_eq!(
                enabled & value & settable,
                value & settable,
                "set-enable lost bits"
            );
        } else {
            // Clear-enable: written ones are clear, but for bits that cannot be cleared.
            let mut cleared = vgic.clone();
            let _ = cleared.write(frame, vcpu, offset, 4, u64::MAX);
            let fixed = read(&mut cleared, frame, vcpu, set_offset, 4).unwrap();
            assert_eq!(enabled & value & !fixed, 0, "clear-enable left bits set");
        }
    }
}

fn check_state(vgic: &Vgic) {
    let vcpus = vgic.vcpus();
    assert!((1..=MAX_VCPUS).contains(&vcpus));
    for vcpu in 0..MAX_VCPUS + 1 {
        for intid in 0..NR_INTIDS as u32 + 4 {
            let state = vgic.irq(vcpu, intid);
            if vcpu >= vcpus || intid as usize >= NR_INTIDS {
                assert!(state.is_none(), "state for vCPU {vcpu} INTID {intid}");
                assert!(!vgic.is_deliverable(vcpu, intid));
                continue;
            }
            let state = state.expect("state of an existing interrupt");
            assert_eq!(state.priority() & !PRIORITY_MASK, 0);
            if intid >= NR_SGIS {
                assert_eq!(state.sgi_sources(), 0, "SGI sources on INTID {intid}");
            }
        }
        if vcpu < vcpus {
            let cached: Vec<u32> = {
                let mut list: Vec<u32> = vgic
                    .deliverable(vcpu)
                    .map(|candidate| candidate.intid)
                    .collect();
                list.sort_unstable();
                list
            };
            let scanned: Vec<u32> = (0..NR_INTIDS as u32)
                .filter(|&intid| vgic.is_deliverable(vcpu, intid))
                .collect();
            assert_eq!(cached, scanned, "deliverable set of vCPU {vcpu}");
            let mut last = None;
            for candidate in vgic.deliverable(vcpu) {
                assert_eq!(
                    Some(candidate.priority),
                    vgic.irq(vcpu, candidate.intid).map(|irq| irq.priority())
                );
                if let Some((priority, intid)) = last {
                    assert!(
                        (priority, intid) < (candidate.priority, candidate.intid),
                        "not in priority order"
                    );
                }
                last = Some((candidate.priority, candidate.intid));
            }
            assert_eq!(
                vgic.highest_pending(vcpu).map(|candidate| candidate.intid),
                vgic.deliverable(vcpu)
                    .next()
                    .map(|candidate| candidate.intid)
            );
        }
    }
}

fuzz_target!(|input: Input| {
    let version = if input.v3 {
        GicVersion::V3
    } else {
        GicVersion::V2
    };
    let mut vgic = Vgic::new(version, usize::from(input.vcpus % 10));
    let vcpus = vgic.vcpus();
    for op in input.ops.iter().take(256) {
        match *op {
            Op::Read {
                frame,
                vcpu,
                offset,
                size,
            } => {
                let _ = read(
                    &mut vgic,
                    frame_of(input.v3, frame),
                    usize::from(vcpu % 9),
                    u64::from(offset),
                    size,
                );
            }
            Op::Write {
                frame,
                vcpu,
                offset,
                size,
                value,
            } => {
                write(
                    &mut vgic,
                    frame_of(input.v3, frame),
                    usize::from(vcpu % 9),
                    u64::from(offset),
                    size,
                    value,
                );
            }
            Op::Register {
                frame,
                vcpu,
                which,
                index,
                size,
                value,
            } => {
                let frame = frame_of(input.v3, frame);
                let table = match frame {
                    Frame::Distributor => DISTRIBUTOR,
                    Frame::Redistributors => REDISTRIBUTOR,
                };
                let (base, stride) = table[usize::from(which) % table.len()];
                let mut offset = u64::from(base) + u64::from(index % 64) * u64::from(stride);
                if frame == Frame::Redistributors {
                    offset += u64::from(vcpu) % vcpus as u64 * REDISTRIBUTOR_STRIDE;
                }
                let size = [1, 2, 4, 8][usize::from(size % 4)];
                let vcpu = usize::from(vcpu) % vcpus;
                write(&mut vgic, frame, vcpu, offset, size, value);
                let _ = read(&mut vgic, frame, vcpu, offset, size);
            }
            Op::Sgi1r { sender, value } => {
                let effects = vgic.write_sgi1r(usize::from(sender % 9), value);
                check_effects(&vgic, effects);
            }
            Op::Line { vcpu, intid, level } => {
                let effects = vgic.set_line_level(usize::from(vcpu % 9), u32::from(intid), level);
                check_effects(&vgic, effects);
            }
            Op::Pending { vcpu, intid } => {
                let effects = vgic.set_pending(usize::from(vcpu % 9), u32::from(intid));
                check_effects(&vgic, effects);
            }
            Op::SendSgi {
                sender,
                intid,
                targets,
            } => {
                let effects = vgic.send_sgi(
                    usize::from(sender % 9),
                    u32::from(intid),
                    hyp::vgic::VcpuSet(targets),
                );
                check_effects(&vgic, effects);
            }
        }
        check_state(&vgic);
    }
});
