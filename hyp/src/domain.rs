//! The domain control block, and building a domain from a boot-pack entry.
//!
//! A domain owns one contiguous run of physical memory (zeroed before it gets it, scrubbed
//! when it ends), a stage-2 table set with its own VMID that maps that memory and nothing
//! else, its vCPUs, and its console line buffer.

use crate::addr::{AddrRange, IntermediatePhysAddr, PhysAddr};
use crate::arch;
use crate::bootpack::{arm64_image_header, DomainImage};
use crate::console::LineBuffer;
use crate::domain_dt::{layout, write_domain_dt, DomainDtParams, GuestGic};
use crate::mm::{FrameAllocator, MemoryKind, Stage2, Stage2Attributes};
use crate::vcpu::{RunState, Vcpu};
use hypercall_abi::sched_op::ShutdownReason;

/// Most domains the hypervisor runs at once.
pub const MAX_DOMAINS: usize = 8;
/// Most vCPUs one domain may have.
pub const MAX_VCPUS: usize = 8;
/// Guest IPA space: 39 bits, as the stage-2 tables are built.
pub const IPA_BITS: u32 = 39;
/// Longest domain name kept.
pub const NAME_CAPACITY: usize = 32;

const MIB: u64 = 1024 * 1024;
const TWO_MIB: u64 = 2 * MIB;

/// How a domain ended, or that it has not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// At least one vCPU may still run.
    Alive,
    /// It asked to stop with SCHEDOP_shutdown (or PSCI SYSTEM_OFF / SYSTEM_RESET).
    ShutDown(ShutdownReason),
    /// The hypervisor ended it for a fault of its own.
    Crashed,
}

impl DomainState {
    /// Whether the domain ended the way a finished program should: powered off or rebooted
    /// at its own request.
    pub fn is_clean(self) -> bool {
        matches!(
            self,
            Self::ShutDown(ShutdownReason::Poweroff | ShutdownReason::Reboot)
        )
    }
}

/// A domain control block.
pub struct Domain {
    /// Its slot in the domain table; domain ids as guests see them are `slot`.
    pub slot: usize,
    /// Its name from the system configuration (console prefix, log lines).
    pub name: heapless::String<NAME_CAPACITY>,
    /// The physical memory it owns.
    pub ram: AddrRange<PhysAddr>,
    /// Where that memory appears in its IPA space.
    pub ram_ipa: AddrRange<IntermediatePhysAddr>,
    /// Its stage-2 translation.
    pub stage2: Stage2,
    /// Its vCPUs; index = vCPU id.
    pub vcpus: heapless::Vec<Vcpu, MAX_VCPUS>,
    /// Alive or how it ended.
    pub state: DomainState,
    /// Partial console line.
    pub console: LineBuffer,
    /// The domain's shared_info page (hypervisor memory, zeroed at build).
    pub shared_info: PhysAddr,
    /// Where the guest mapped shared_info with XENMEM_add_to_physmap, if it has.
    pub shared_info_ipa: Option<IntermediatePhysAddr>,
    /// HVM parameters (HVMOP_get_param / set_param), 0 until set.
    pub hvm_params: [u64; hypercall_abi::hvm_op::NR_PARAMS as usize],
    /// The console ring page the hypervisor serves as backend, mapped at the first magic
    /// page (Xen's GUEST_MAGIC_BASE).
    pub console_ring: PhysAddr,
    /// The domain's end of the console event channel, once attached.
    pub console_port: Option<u32>,
    /// The vCPUs whose `polling` is not empty: every event delivery asks who polls its
    /// port, and this mask spares it the search while no one does (the usual case).
    /// Kept by [`Domain::start_polling`] and [`Domain::stop_polling`].
    pollers: crate::vgic::VcpuSet,
    /// Its grant table and the grants it has mapped.
    pub grants: crate::grant_table::GrantTable,
    /// Its watchdogs (SCHEDOP_watchdog): the counter value at which each one in use
    /// expires; index = id - 1.
    pub watchdogs: [Option<u64>; crate::lifecycle::WATCHDOGS],
    /// The earliest of `watchdogs` (kept with them: every scheduling decision asks).
    pub watchdog_deadline: Option<u64>,
}

/// Why a domain could not be built. Nothing is left allocated when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The image lacks the arm64 Image header.
    NotAnArm64Image,
    /// Image, initrd and device tree do not fit the configured memory.
    DoesNotFit,
    /// Not enough free physical memory for the domain's RAM.
    OutOfMemory,
    /// Stage-2 tables could not be built (out of table pages).
    Stage2,
    /// The device tree did not fit its buffer.
    DeviceTree,
    /// A configured count (vCPUs, memory) is outside what the hypervisor supports.
    Unsupported,
}

impl BuildError {
    /// A short explanation for the log.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::NotAnArm64Image => "image has no arm64 Image header",
            Self::DoesNotFit => "image, initrd and device tree do not fit the domain's memory",
            Self::OutOfMemory => "not enough free memory",
            Self::Stage2 => "out of page-table memory for stage 2",
            Self::DeviceTree => "device tree too large",
            Self::Unsupported => "vCPU count or memory size unsupported",
        }
    }
}

/// The event channels pre-connected for a domain, as its device tree describes them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Channels<'a> {
    /// `(local port, remote domain id)` pairs.
    pub ports: &'a [(u32, u32)],
    /// The remote domains' names, same order.
    pub peers: &'a [&'a str],
}

/// Where the parts of a domain go inside its RAM (all offsets from the RAM base).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootLayout {
    /// Offset of the kernel image.
    pub kernel: u64,
    /// Offset of the initrd (if any).
    pub initrd: u64,
    /// Offset of the device tree.
    pub device_tree: u64,
}

/// Plans where the kernel, initrd and device tree go in `memory_size` bytes of RAM.
pub fn plan_layout(
    memory_size: u64,
    text_offset: u64,
    kernel_size: u64,
    initrd_size: u64,
) -> Result<BootLayout, BuildError> {
    let kernel = layout::KERNEL_OFFSET
        .checked_add(text_offset)
        .ok_or(BuildError::DoesNotFit)?;
    let device_tree = memory_size
        .checked_sub(layout::DT_OFFSET_FROM_END)
        .ok_or(BuildError::DoesNotFit)?;
    let initrd = device_tree
        .checked_sub(initrd_size)
        .map(|start| start & !(crate::addr::PAGE_SIZE - 1))
        .ok_or(BuildError::DoesNotFit)?;
    let kernel_end = kernel
        .checked_add(kernel_size)
        .ok_or(BuildError::DoesNotFit)?;
    if kernel_end > initrd {
        return Err(BuildError::DoesNotFit);
    }
    Ok(BootLayout {
        kernel,
        initrd,
        device_tree,
    })
}

/// Copies `bytes` to physical memory at `destination`.
fn copy_to_physical(destination: PhysAddr, bytes: &[u8]) {
    // SAFETY: callers pass a range inside memory just allocated to the domain being built,
    // which nothing else references yet.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), arch::phys_to_virt(destination), bytes.len())
    };
}

impl Domain {
    /// Builds a domain from its boot-pack entry: allocates and zeroes its RAM, loads the
    /// kernel and initrd, writes its device tree, builds its stage-2 tables and readies
    /// vCPU 0 at the kernel entry with x0 = the device tree's IPA. `restarts` (how many
    /// times it was restarted after a crash) goes into its device tree.
    pub fn build(
        slot: usize,
        image: &DomainImage<'_>,
        gic: GuestGic,
        channels: &Channels<'_>,
        restarts: u32,
        frames: &mut FrameAllocator,
    ) -> Result<Domain, BuildError> {
        let vcpu_count = image.vcpus as usize;
        if vcpu_count == 0 || vcpu_count > MAX_VCPUS || image.memory_mib == 0 {
            return Err(BuildError::Unsupported);
        }
        let header = arm64_image_header(image.image).map_err(|_| BuildError::NotAnArm64Image)?;
        let memory_size = u64::from(image.memory_mib) * MIB;
        let kernel_size = header.image_size.max(image.image.len() as u64);
        let plan = plan_layout(
            memory_size,
            header.text_offset,
            kernel_size,
            image.initrd.len() as u64,
        )?;

        // Guest memory is zeroed before the domain gets it.
        let ram = frames
            .allocate_zeroed(memory_size, TWO_MIB)
            .map_err(|_| BuildError::OutOfMemory)?;
        match Self::populate(slot, image, gic, channels, restarts, plan, ram, frames) {
            Ok(domain) => Ok(domain),
            Err(error) => {
                // SAFETY: `ram` came from `frames` just now and no domain ever ran in it.
                let _ = unsafe { frames.free_scrubbed(ram) };
                Err(error)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn populate(
        slot: usize,
        image: &DomainImage<'_>,
        gic: GuestGic,
        channels: &Channels<'_>,
        restarts: u32,
        plan: BootLayout,
        ram: AddrRange<PhysAddr>,
        frames: &mut FrameAllocator,
    ) -> Result<Domain, BuildError> {
        let ram_ipa = AddrRange::new(IntermediatePhysAddr::new(layout::RAM_BASE), ram.size);
        copy_to_physical(ram.start.add(plan.kernel), image.image);
        let initrd = (!image.initrd.is_empty()).then(|| {
            copy_to_physical(ram.start.add(plan.initrd), image.initrd);
            AddrRange::new(ram_ipa.start.add(plan.initrd), image.initrd.len() as u64)
        });

        let params = DomainDtParams {
            memory: ram_ipa,
            vcpu_count: image.vcpus,
            gic,
            bootargs: image.cmdline,
            initrd,
            grant_table: AddrRange::new(
                IntermediatePhysAddr::new(layout::GNTTAB_BASE),
                layout::GNTTAB_SIZE,
            ),
            event_channel_ppi: layout::EVENT_CHANNEL_INTID,
            timer_ppis: [29, 30, 27, 26],
            channels: channels.ports,
            channel_peers: channels.peers,
            restarts,
        };
        let tree_size = layout::DT_OFFSET_FROM_END as usize;
        // SAFETY: the device-tree area lies inside the domain's fresh RAM (plan_layout
        // checked it) and nothing else refers to it.
        let tree = unsafe {
            core::slice::from_raw_parts_mut(
                arch::phys_to_virt(ram.start.add(plan.device_tree)),
                tree_size,
            )
        };
        write_domain_dt(tree, &params).map_err(|_| BuildError::DeviceTree)?;

        let vmid = (slot + 1) as u16;
        let mut stage2 = Stage2::new(vmid, IPA_BITS, frames).map_err(|_| BuildError::Stage2)?;
        let normal = Stage2Attributes {
            read: true,
            write: true,
            execute: true,
            memory: MemoryKind::Normal,
        };
        if stage2
            .map(ram_ipa.start, ram.start, ram.size, normal, frames)
            .is_err()
        {
            stage2.destroy(frames);
            return Err(BuildError::Stage2);
        }

        // GICv2: the hardware's virtual CPU interface appears where the guest's device tree
        // puts its CPU interface.
        if let (GuestGic::V2 { cpu_interface, .. }, Some(gicv)) =
            (gic, arch::virtual_cpu_interface())
        {
            let device = Stage2Attributes {
                read: true,
                write: true,
                execute: false,
                memory: MemoryKind::Device,
            };
            if stage2
                .map(
                    cpu_interface.start,
                    gicv,
                    cpu_interface.size,
                    device,
                    frames,
                )
                .is_err()
            {
                stage2.destroy(frames);
                return Err(BuildError::Stage2);
            }
        }
        let mut vcpus = heapless::Vec::new();
        for index in 0..image.vcpus {
            let entry = ram_ipa.start.add(plan.kernel).raw();
            let argument = ram_ipa.start.add(plan.device_tree).raw();
            let mut vcpu = Vcpu::new(index, entry, argument);
            if index == 0 {
                // The boot vCPU starts powered on; the others wait for PSCI CPU_ON.
                let _ = vcpu.power_on(entry, argument);
            }
            let _ = vcpus.push(vcpu);
        }
        let shared_info =
            match frames.allocate_zeroed(crate::addr::PAGE_SIZE, crate::addr::PAGE_SIZE) {
                Ok(page) => page.start,
                Err(_) => {
                    stage2.destroy(frames);
                    return Err(BuildError::OutOfMemory);
                }
            };
        // The console ring: one zeroed page of ours, at the first magic page of the guest.
        let console_ring =
            match frames.allocate_zeroed(crate::addr::PAGE_SIZE, crate::addr::PAGE_SIZE) {
                Ok(page) => page.start,
                Err(_) => {
                    stage2.destroy(frames);
                    let _ = frames.free(AddrRange::new(shared_info, crate::addr::PAGE_SIZE));
                    return Err(BuildError::OutOfMemory);
                }
            };
        let ring_page = Stage2Attributes {
            read: true,
            write: true,
            execute: false,
            memory: MemoryKind::Normal,
        };
        let magic = IntermediatePhysAddr::new(layout::MAGIC_BASE);
        if stage2
            .map(
                magic,
                console_ring,
                crate::addr::PAGE_SIZE,
                ring_page,
                frames,
            )
            .is_err()
        {
            stage2.destroy(frames);
            let _ = frames.free(AddrRange::new(shared_info, crate::addr::PAGE_SIZE));
            let _ = frames.free(AddrRange::new(console_ring, crate::addr::PAGE_SIZE));
            return Err(BuildError::Stage2);
        }
        let grant_pages = crate::grant_table::PAGES * crate::addr::PAGE_SIZE;
        let grants = match frames.allocate_zeroed(grant_pages, crate::addr::PAGE_SIZE) {
            Ok(pages) => crate::grant_table::GrantTable::new(pages.start),
            Err(_) => {
                stage2.destroy(frames);
                let _ = frames.free(AddrRange::new(shared_info, crate::addr::PAGE_SIZE));
                let _ = frames.free(AddrRange::new(console_ring, crate::addr::PAGE_SIZE));
                return Err(BuildError::OutOfMemory);
            }
        };
        let mut hvm_params = [0; hypercall_abi::hvm_op::NR_PARAMS as usize];
        if let Some(pfn) = hvm_params.get_mut(hypercall_abi::hvm_op::PARAM_CONSOLE_PFN as usize) {
            *pfn = magic.frame_number();
        }
        let mut name = heapless::String::new();
        for character in image.name.chars() {
            if name.push(character).is_err() {
                break;
            }
        }
        Ok(Domain {
            slot,
            name,
            ram,
            ram_ipa,
            stage2,
            vcpus,
            state: DomainState::Alive,
            console: LineBuffer::new(),
            shared_info,
            shared_info_ipa: None,
            hvm_params,
            console_ring,
            console_port: None,
            pollers: crate::vgic::VcpuSet::EMPTY,
            grants,
            watchdogs: [None; crate::lifecycle::WATCHDOGS],
            watchdog_deadline: None,
        })
    }

    /// Ends the domain: every vCPU dead, its memory scrubbed and returned, its tables freed.
    pub fn tear_down(self, frames: &mut FrameAllocator) {
        let Domain {
            ram,
            stage2,
            shared_info,
            console_ring,
            grants,
            ..
        } = self;
        // Tables first, so no translation to the RAM survives its scrub.
        stage2.destroy(frames);
        // SAFETY: `ram`, `shared_info`, the console ring and the grant pages were allocated
        // from `frames` for this domain, whose vCPUs are all dead and whose stage 2 is
        // gone; `grant_table::release_domain` withdrew every other domain's mapping of its
        // RAM first. So nothing reaches them.
        unsafe {
            let _ = frames.free_scrubbed(ram);
            let _ = frames.free_scrubbed(AddrRange::new(shared_info, crate::addr::PAGE_SIZE));
            let _ = frames.free_scrubbed(AddrRange::new(console_ring, crate::addr::PAGE_SIZE));
            let _ = frames.free_scrubbed(grants.pages());
        }
    }

    /// Physical memory a guest pointer may reach: its RAM, its shared_info page and its
    /// console ring.
    pub fn guest_accessible(&self) -> [AddrRange<PhysAddr>; 3] {
        [
            self.ram,
            AddrRange::new(self.shared_info, crate::addr::PAGE_SIZE),
            AddrRange::new(self.console_ring, crate::addr::PAGE_SIZE),
        ]
    }

    /// The console ring page.
    pub fn console_interface(&self) -> &hypercall_abi::shared::XenconsInterface {
        // SAFETY: the page is this domain's, page aligned, lives as long as the domain; the
        // ring's indices are atomics, and its bytes are read volatile and only up to what
        // the producer index has published.
        unsafe {
            &*arch::phys_to_virt(self.console_ring)
                .cast::<hypercall_abi::shared::XenconsInterface>()
        }
    }

    /// vCPU `vcpu` waits in SCHEDOP_poll on `ports` (none: it does not), until
    /// `deadline` if one is given.
    pub fn start_polling(
        &mut self,
        vcpu: usize,
        ports: heapless::Vec<u16, { crate::vcpu::MAX_POLLED_PORTS }>,
        deadline: Option<u64>,
    ) {
        let Some(target) = self.vcpus.get_mut(vcpu) else {
            return;
        };
        if ports.is_empty() {
            self.pollers = self.pollers.without(vcpu);
        } else {
            self.pollers.insert(vcpu);
        }
        target.polling = ports;
        target.poll_deadline = deadline;
    }

    /// vCPU `vcpu` polls no more (woken).
    pub fn stop_polling(&mut self, vcpu: usize) {
        self.start_polling(vcpu, heapless::Vec::new(), None);
    }

    /// The vCPUs polling `port` (Xen's `evtchn_check_pollers`).
    pub fn pollers_of(&self, port: u16) -> crate::vgic::VcpuSet {
        let mut pollers = crate::vgic::VcpuSet::EMPTY;
        for index in self.pollers.iter() {
            if self
                .vcpus
                .get(index)
                .is_some_and(|vcpu| vcpu.polling.contains(&port))
            {
                pollers.insert(index);
            }
        }
        pollers
    }

    /// The shared_info page.
    pub fn shared_info(&self) -> &hypercall_abi::shared::SharedInfo {
        // SAFETY: the page is this domain's, page aligned, lives as long as the domain, and
        // SharedInfo (1088 bytes of atomics and plain bytes) tolerates concurrent guest
        // writes.
        unsafe {
            &*arch::phys_to_virt(self.shared_info).cast::<hypercall_abi::shared::SharedInfo>()
        }
    }

    /// The vcpu_info of vCPU `index`: where it registered one, else (vCPU 0 only) the
    /// legacy slot in shared_info.
    pub fn vcpu_info(&self, index: usize) -> Option<&hypercall_abi::shared::VcpuInfo> {
        match self.vcpus.get(index)?.vcpu_info {
            // SAFETY: register_vcpu_info checked the location: 8-aligned, whole inside
            // one page of this domain's RAM, which lives as long as the domain.
            Some(address) => Some(unsafe {
                &*arch::phys_to_virt(address).cast::<hypercall_abi::shared::VcpuInfo>()
            }),
            None => self.shared_info().vcpu_info.get(index),
        }
    }

    /// Marks the domain ended with `state` and every vCPU dead.
    pub fn end(&mut self, state: DomainState) {
        if self.state == DomainState::Alive {
            self.state = state;
        }
        for vcpu in self.vcpus.iter_mut() {
            let _ = vcpu.set_state(RunState::Dead);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_places_everything_in_order() {
        let plan = plan_layout(32 * MIB, 0x80000, 0x10_0000, 0x1000).unwrap();
        assert_eq!(plan.kernel, 0x28_0000);
        assert_eq!(plan.device_tree, 30 * MIB);
        assert_eq!(plan.initrd, 30 * MIB - 0x1000);
        assert!(plan.kernel + 0x10_0000 <= plan.initrd);
    }

    #[test]
    fn layout_refuses_what_does_not_fit() {
        assert_eq!(
            plan_layout(2 * MIB, 0, 0x1000, 0),
            Err(BuildError::DoesNotFit)
        );
        assert_eq!(
            plan_layout(4 * MIB, 0, 3 * MIB, 0),
            Err(BuildError::DoesNotFit)
        );
        assert_eq!(
            plan_layout(8 * MIB, 0, MIB, 5 * MIB),
            Err(BuildError::DoesNotFit)
        );
        assert_eq!(
            plan_layout(8 * MIB, u64::MAX, 1, 0),
            Err(BuildError::DoesNotFit)
        );
        assert_eq!(
            plan_layout(8 * MIB, 0, MIB, u64::MAX),
            Err(BuildError::DoesNotFit)
        );
    }
}
