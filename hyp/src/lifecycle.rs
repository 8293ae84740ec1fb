//! Domain lifecycle under faults: the crash policy (`on_crash = destroy | restart`), what
//! a restart needs to rebuild a domain from its boot-pack entry, domain watchdogs
//! (SCHEDOP_watchdog), and the check of a whole boot pack against the machine before any
//! domain is built.
//!
//! The pure rules live here and are tested on the host; `hypervisor::lifecycle` (a child
//! module of `hypervisor`, in `hypervisor_lifecycle.rs`) applies them to the hypervisor's
//! state: watchdog expiry, and the rebuild after a crashed domain's teardown.

use crate::bootpack::{arm64_image_header, BootPack, OnCrash};
use crate::domain::{plan_layout, DomainState, MAX_DOMAINS, MAX_VCPUS};
use crate::domain_dt::GuestGic;
use crate::hypervisor::DomainSchedule;
use hypercall_abi::errno::Errno;
use hypercall_abi::sched_op::{ShutdownReason, NR_DOMAIN_WATCHDOG_TIMERS};

/// Watchdogs per domain (Xen's `NR_DOMAIN_WATCHDOG_TIMERS`).
pub const WATCHDOGS: usize = NR_DOMAIN_WATCHDOG_TIMERS as usize;

const MIB: u64 = 1024 * 1024;

/// Whether a domain that ended in `state` ended by a fault: the hypervisor ended it
/// (unhandled exception, stage-2 fault, last vCPU off), it declared a crash
/// (SCHEDOP_shutdown with SHUTDOWN_crash), or its watchdog expired. These are what the
/// crash policy applies to; poweroff and reboot are not.
pub fn is_fault(state: DomainState) -> bool {
    matches!(
        state,
        DomainState::Crashed
            | DomainState::ShutDown(ShutdownReason::Crash | ShutdownReason::Watchdog)
    )
}

/// Whether a domain that ended in `state`, after `restarts` restarts so far, is built
/// again under `on_crash` with `max_restarts` (0: no limit).
pub fn wants_restart(
    on_crash: OnCrash,
    max_restarts: u32,
    restarts: u32,
    state: DomainState,
) -> bool {
    on_crash == OnCrash::Restart
        && is_fault(state)
        && (max_restarts == 0 || restarts < max_restarts)
}

/// SCHEDOP_watchdog with Xen 4.17's rules (`domain_watchdog`, xen/common/sched/core.c):
/// `id` 0 takes the first free watchdog, arms it `timeout` seconds from `now` and returns
/// its id (1-based; `-ENOSPC` when all are in use). A nonzero `id` must be in use
/// (`-EINVAL` otherwise, and above [`WATCHDOGS`]): `timeout` 0 destroys it, any other
/// re-arms it; the result is 0. Deadlines are counter values (`frequency` ticks per
/// second).
pub fn watchdog(
    watchdogs: &mut [Option<u64>; WATCHDOGS],
    id: u32,
    timeout: u32,
    now: u64,
    frequency: u64,
) -> Result<u32, Errno> {
    if id > NR_DOMAIN_WATCHDOG_TIMERS {
        return Err(Errno::EINVAL);
    }
    let deadline = now.saturating_add(u64::from(timeout).saturating_mul(frequency));
    if id == 0 {
        let (index, slot) = watchdogs
            .iter_mut()
            .enumerate()
            .find(|(_, slot)| slot.is_none())
            .ok_or(Errno::ENOSPC)?;
        *slot = Some(deadline);
        return Ok(index as u32 + 1);
    }
    let slot = watchdogs
        .get_mut(id as usize - 1)
        .filter(|slot| slot.is_some())
        .ok_or(Errno::EINVAL)?;
    *slot = (timeout != 0).then_some(deadline);
    Ok(0)
}

/// The id (1-based) of the first of `watchdogs` expired at `now`, if any.
pub fn expired_watchdog(watchdogs: &[Option<u64>; WATCHDOGS], now: u64) -> Option<u32> {
    watchdogs
        .iter()
        .position(|deadline| deadline.is_some_and(|deadline| deadline <= now))
        .map(|index| index as u32 + 1)
}

/// What a restart needs to build a domain again, recorded when it is first built.
#[derive(Clone, Copy, Debug)]
pub struct SlotPlan {
    /// The virtual GIC its device tree describes.
    pub gic: Option<GuestGic>,
    /// Its weight and affinity.
    pub schedule: DomainSchedule,
    /// How many times it was restarted.
    pub restarts: u32,
    /// It ended by a fault and will be built again once torn down.
    pub restart_pending: bool,
    /// Free bytes right after its last teardown (for the restart's log line).
    pub free_after_teardown: u64,
}

impl SlotPlan {
    const EMPTY: SlotPlan = SlotPlan {
        gic: None,
        schedule: DomainSchedule {
            weight: crate::scheduler::DEFAULT_WEIGHT,
            affinity: u64::MAX,
        },
        restarts: 0,
        restart_pending: false,
        free_after_teardown: 0,
    };
}

/// The hypervisor's lifecycle state: the boot pack (kept for restarts; it stays in memory
/// the frame allocator never hands out) and each slot's plan.
pub struct Lifecycle {
    /// The boot pack the domains came from; `None` in host tests that build domains
    /// directly (then no domain is restarted).
    pub pack: Option<BootPack<'static>>,
    /// Per domain slot.
    pub slots: [SlotPlan; MAX_DOMAINS],
    /// Slots torn down and waiting to be built again (bit n = slot n). The rebuild runs
    /// once the exit that ended the domain is handled, at the shallow end of the
    /// hypervisor's stack (a domain control block is large).
    pub rebuild_due: u8,
}

impl Lifecycle {
    /// No pack, nothing recorded.
    pub const fn new() -> Self {
        Lifecycle {
            pack: None,
            slots: [SlotPlan::EMPTY; MAX_DOMAINS],
            rebuild_due: 0,
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

/// Why the hypervisor refuses a boot pack before building any domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The entry (= domain id) concerned, if one is.
    pub domain: Option<usize>,
    /// What is wrong.
    pub reason: &'static str,
}

/// Pages a domain needs besides its RAM: shared_info, the console ring, its grant-table
/// frames, and a bound for its stage-2 tables (root, one table per level for RAM, the
/// magic page, the GIC CPU interface and a few remaps).
pub fn domain_overhead_bytes() -> u64 {
    let pages = 2 + crate::grant_table::PAGES + 16;
    pages * crate::addr::PAGE_SIZE
}

/// Checks every domain of a parsed boot pack against this machine before any is built, so
/// that a pack that cannot start whole does not start at all: each image has the arm64
/// header and, with its initrd and device tree, fits its memory; vCPUs in
/// `1..=MAX_VCPUS`; the affinity names a CPU among the `cpu_count` running; and all
/// domains' memory fits in `free_bytes`. (The pack's own format rules were checked by
/// `BootPack::parse`.)
pub fn check_pack(pack: &BootPack<'_>, free_bytes: u64, cpu_count: usize) -> Result<(), Refusal> {
    let refuse = |domain: usize, reason: &'static str| Refusal {
        domain: Some(domain),
        reason,
    };
    let cpus_present = if cpu_count >= 64 {
        u64::MAX
    } else {
        (1u64 << cpu_count) - 1
    };
    let mut needed: u64 = 0;
    for (index, domain) in pack.domains().enumerate() {
        let header = arm64_image_header(domain.image)
            .map_err(|_| refuse(index, "image has no arm64 Image header"))?;
        if header.is_big_endian() {
            return Err(refuse(index, "image is a big-endian kernel"));
        }
        if domain.vcpus == 0 || domain.vcpus as usize > MAX_VCPUS {
            return Err(refuse(index, "vCPU count is not in 1..=8"));
        }
        let memory = u64::from(domain.memory_mib) * MIB;
        let kernel_size = header.image_size.max(domain.image.len() as u64);
        plan_layout(
            memory,
            header.text_offset,
            kernel_size,
            domain.initrd.len() as u64,
        )
        .map_err(|_| {
            refuse(
                index,
                "image, initrd and device tree do not fit the domain's memory",
            )
        })?;
        let settings = pack
            .settings(index)
            .ok_or(refuse(index, "entry settings unreadable"))?;
        if settings.affinity & cpus_present == 0 {
            return Err(refuse(index, "affinity names no CPU this machine runs"));
        }
        // Domain RAM is 2 MiB aligned: round up, as the allocator will.
        let ram = memory.div_ceil(2 * MIB) * 2 * MIB;
        needed = needed
            .saturating_add(ram)
            .saturating_add(domain_overhead_bytes());
    }
    if needed > free_bytes {
        return Err(Refusal {
            domain: None,
            reason: "the domains need more memory than the machine has free",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootpack::{encode, DomainSettings, DomainSpec};

    const HZ: u64 = 62_500_000;

    #[test]
    fn watchdog_follows_xen() {
        let mut dogs = [None; WATCHDOGS];
        assert_eq!(watchdog(&mut dogs, 0, 2, 100, HZ), Ok(1));
        assert_eq!(dogs[0], Some(100 + 2 * HZ));
        assert_eq!(watchdog(&mut dogs, 0, 5, 100, HZ), Ok(2));
        assert_eq!(watchdog(&mut dogs, 0, 5, 100, HZ), Err(Errno::ENOSPC));
        // Re-arm, then destroy.
        assert_eq!(watchdog(&mut dogs, 1, 1, 1000, HZ), Ok(0));
        assert_eq!(dogs[0], Some(1000 + HZ));
        assert_eq!(watchdog(&mut dogs, 2, 0, 1000, HZ), Ok(0));
        assert_eq!(dogs[1], None);
        // An id not in use, or out of range.
        assert_eq!(watchdog(&mut dogs, 2, 3, 0, HZ), Err(Errno::EINVAL));
        assert_eq!(watchdog(&mut dogs, 3, 3, 0, HZ), Err(Errno::EINVAL));
        assert_eq!(watchdog(&mut dogs, u32::MAX, 0, 0, HZ), Err(Errno::EINVAL));
        // A freed id is taken again first; huge timeouts saturate.
        assert_eq!(watchdog(&mut dogs, 0, u32::MAX, u64::MAX - 1, HZ), Ok(2));
        assert_eq!(dogs[1], Some(u64::MAX));
    }

    #[test]
    fn expiry_names_the_first_expired_watchdog() {
        let dogs = [Some(50), Some(10)];
        assert_eq!(expired_watchdog(&dogs, 9), None);
        assert_eq!(expired_watchdog(&dogs, 10), Some(2));
        assert_eq!(expired_watchdog(&dogs, 50), Some(1));
        assert_eq!(expired_watchdog(&[None, None], u64::MAX), None);
    }

    #[test]
    fn restart_policy() {
        let crash = DomainState::Crashed;
        let declared = DomainState::ShutDown(ShutdownReason::Crash);
        let watchdog = DomainState::ShutDown(ShutdownReason::Watchdog);
        let poweroff = DomainState::ShutDown(ShutdownReason::Poweroff);
        let reboot = DomainState::ShutDown(ShutdownReason::Reboot);
        for state in [crash, declared, watchdog] {
            assert!(wants_restart(OnCrash::Restart, 100, 0, state));
            assert!(wants_restart(OnCrash::Restart, 100, 99, state));
            assert!(!wants_restart(OnCrash::Restart, 100, 100, state));
            assert!(wants_restart(OnCrash::Restart, 0, 100_000, state));
            assert!(!wants_restart(OnCrash::Destroy, 0, 0, state));
        }
        for state in [poweroff, reboot, DomainState::Alive] {
            assert!(!wants_restart(OnCrash::Restart, 0, 0, state));
        }
    }

    fn image(text_offset: u64, image_size: u64) -> Vec<u8> {
        let mut image = vec![0u8; 4096];
        image[8..16].copy_from_slice(&text_offset.to_le_bytes());
        image[16..24].copy_from_slice(&image_size.to_le_bytes());
        image[56..60].copy_from_slice(&crate::bootpack::ARM64_IMAGE_MAGIC.to_le_bytes());
        image
    }

    fn pack_of(domains: &[(u32, u64, Vec<u8>)]) -> Vec<u8> {
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let specs: Vec<DomainSpec> = domains
            .iter()
            .zip(names)
            .map(|((memory_mib, affinity, image), name)| DomainSpec {
                name,
                memory_mib: *memory_mib,
                vcpus: 1,
                image,
                initrd: &[],
                cmdline: "",
                settings: DomainSettings {
                    affinity: *affinity,
                    ..DomainSettings::default()
                },
            })
            .collect();
        let mut out = vec![0u8; 1 << 20];
        let size = encode(&specs, &[], &mut out).unwrap();
        out.truncate(size);
        out
    }

    #[test]
    fn a_pack_that_fits_is_accepted() {
        let bytes = pack_of(&[(32, u64::MAX, image(0, 0)), (64, 0b10, image(0, 0))]);
        let pack = BootPack::parse(&bytes).unwrap();
        assert_eq!(check_pack(&pack, 1 << 30, 4), Ok(()));
    }

    #[test]
    fn every_domain_is_checked_before_any_is_built() {
        // The second domain's kernel claims 40 MiB of a 32 MiB domain.
        let bytes = pack_of(&[
            (32, u64::MAX, image(0, 0)),
            (32, u64::MAX, image(0, 40 * MIB)),
        ]);
        let pack = BootPack::parse(&bytes).unwrap();
        let refusal = check_pack(&pack, 1 << 30, 4).unwrap_err();
        assert_eq!(refusal.domain, Some(1));
        assert!(refusal.reason.contains("do not fit"), "{refusal:?}");
        // Affinity naming only CPU 5 on a 4-CPU machine.
        let bytes = pack_of(&[(32, u64::MAX, image(0, 0)), (32, 1 << 5, image(0, 0))]);
        let pack = BootPack::parse(&bytes).unwrap();
        assert_eq!(
            check_pack(&pack, 1 << 30, 4).unwrap_err(),
            Refusal {
                domain: Some(1),
                reason: "affinity names no CPU this machine runs"
            }
        );
        assert_eq!(check_pack(&pack, 1 << 30, 6), Ok(()));
    }

    #[test]
    fn more_memory_than_free_is_refused() {
        let bytes = pack_of(&[(512, u64::MAX, image(0, 0)), (512, u64::MAX, image(0, 0))]);
        let pack = BootPack::parse(&bytes).unwrap();
        let refusal = check_pack(&pack, 1000 * MIB, 4).unwrap_err();
        assert_eq!(refusal.domain, None);
        assert!(refusal.reason.contains("more memory"));
        assert_eq!(check_pack(&pack, 1100 * MIB, 4), Ok(()));
    }

    #[test]
    fn big_endian_kernels_are_refused() {
        let mut big = image(0, 0);
        big[24] = 1;
        let bytes = pack_of(&[(32, u64::MAX, big)]);
        let pack = BootPack::parse(&bytes).unwrap();
        assert_eq!(
            check_pack(&pack, 1 << 30, 4).unwrap_err().reason,
            "image is a big-endian kernel"
        );
    }
}
