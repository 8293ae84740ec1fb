//! The bare-metal hypervisor binary: the boot CPU's path from the loader to the first guest.
//!
//! 1. `arch::aarch64::boot` relocates the image and calls [`hyp_main`] with the device tree.
//! 2. The device tree names RAM, the UART, the GIC and the timer ([`hyp::platform`]).
//! 3. The EL2 MMU is turned on with an identity map: text read-only and executable,
//!    everything else execute-never.
//! 4. Each domain of the boot pack (the initrd) is built; if any cannot be, none starts.
//! 5. The first vCPU is entered; from then on the hypervisor runs only on guest exits.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![deny(unsafe_op_in_unsafe_fn)]
// No `unwrap`, `expect` or `panic!` (see lib.rs); boot-time exceptions carry an `#[allow]`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_os = "none")]
mod target {
    use core::sync::atomic::{AtomicBool, Ordering};
    use hyp::addr::{AddrRange, PhysAddr, PAGE_SIZE};
    use hyp::arch::aarch64::{boot, cpu, exceptions};
    use hyp::bootpack::BootPack;
    use hyp::cpu::CpuState;
    use hyp::domain::IPA_BITS;
    use hyp::domain_dt::{layout, GuestGic};
    use hyp::drivers::mini_uart::MiniUart;
    use hyp::drivers::pl011::Pl011;
    use hyp::drivers::ConsoleUart;
    use hyp::dt::Fdt;
    use hyp::hypervisor::HYPERVISOR;
    use hyp::mm::{self, El2Attributes, El2Tables, FrameAllocator};
    use hyp::platform::{GicVersion, Platform, UartKind};
    use hyp::serial;

    /// Pages reserved in .bss for the hypervisor's own EL2 tables.
    const EL2_TABLE_PAGES: usize = 32;
    /// Scheduling slices per second (10 ms each).
    const SLICES_PER_SECOND: u64 = 100;
    /// Largest device tree accepted from the boot loader.
    const MAX_DEVICE_TREE: u64 = 2 * 1024 * 1024;
    /// EL2 virtual address bits (identity map).
    const EL2_VA_BITS: u32 = 39;

    #[repr(C, align(4096))]
    struct TablePool([u8; EL2_TABLE_PAGES * PAGE_SIZE as usize]);
    static mut EL2_TABLE_POOL: TablePool = TablePool([0; EL2_TABLE_PAGES * PAGE_SIZE as usize]);

    static mut PER_CPU: [cpu::PerCpu; boot::MAX_CPUS] = [const {
        cpu::PerCpu {
            cpu: CpuState::new(0),
            stack_top: 0,
        }
    }; boot::MAX_CPUS];

    /// Set once the firmware is known to take PSCI calls over SMC (for the panic path).
    static PSCI_OVER_SMC: AtomicBool = AtomicBool::new(false);

    /// What a secondary CPU needs before its MMU is on. Written by the boot CPU and cleaned
    /// to the point of coherency before any secondary starts, since they read it uncached.
    #[repr(C)]
    struct SecondaryBoot {
        mair: u64,
        tcr: u64,
        ttbr0: u64,
        vtcr: u64,
    }
    static mut SECONDARY_BOOT: SecondaryBoot = SecondaryBoot {
        mair: 0,
        tcr: 0,
        ttbr0: 0,
        vtcr: 0,
    };

    /// Set by the boot CPU when the domains exist and every CPU may schedule.
    static READY: AtomicBool = AtomicBool::new(false);
    /// Secondary CPUs that finished their set-up.
    static SECONDARIES_UP: core::sync::atomic::AtomicUsize =
        core::sync::atomic::AtomicUsize::new(0);

    unsafe extern "C" {
        static __image_start: u8;
        static __text_end: u8;
        static __image_end: u8;
    }

    fn symbol_address(symbol: &u8) -> u64 {
        symbol as *const u8 as u64
    }

    /// Reads the device tree the loader passed, bounded by its own header.
    fn device_tree(address: u64) -> Option<Fdt<'static>> {
        // SAFETY: the boot protocol promises a device tree at `address`; we read its
        // 8-byte header first and then only `totalsize` bytes, capped.
        let header = unsafe { core::slice::from_raw_parts(address as *const u8, 8) };
        let total = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as u64;
        if !(8..=MAX_DEVICE_TREE).contains(&total) {
            return None;
        }
        // SAFETY: as above, within the size the header states (capped at 2 MiB).
        let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, total as usize) };
        Fdt::new(bytes).ok()
    }

    /// First Rust code on the boot CPU, with the MMU off.
    #[unsafe(no_mangle)]
    extern "C" fn hyp_main(device_tree_address: u64, load_address: u64) -> ! {
        let Some(fdt) = device_tree(device_tree_address) else {
            cpu::park()
        };
        let Ok(platform) = Platform::discover(&fdt) else {
            cpu::park()
        };
        PSCI_OVER_SMC.store(platform.psci_over_smc(), Ordering::Relaxed);
        let uart_base = platform.uart.base.raw() as usize;
        serial::install(match platform.uart.kind {
            // SAFETY: the device tree names this PL011 as the console; only we drive it.
            UartKind::Pl011 => ConsoleUart::Pl011(unsafe { Pl011::new(uart_base) }),
            // SAFETY: the same, for the mini UART.
            UartKind::Bcm2835Aux => ConsoleUart::Mini(unsafe { MiniUart::new(uart_base) }),
        });
        defmt::info!(
            "hyp {=str}: {=str}, {=usize} CPUs, GICv{=u8}, counter {=u64} Hz, loaded at {=u64:#x}",
            env!("CARGO_PKG_VERSION"),
            platform.board.name,
            platform.cpus.len(),
            platform.gic.version.number(),
            cpu::read_counter_frequency(),
            load_address
        );
        match boot_domains(&fdt, &platform, device_tree_address, load_address) {
            Ok(()) => {}
            Err(reason) => {
                defmt::error!("boot refused: {=str}", reason);
                cpu::power_off(platform.psci_over_smc());
            }
        }
        // SAFETY: the boot CPU's PerCpu frame now holds the first vCPU, its EL1 state and
        // stage 2 are loaded, and EL2 is fully set up.
        unsafe { exceptions::enter_guest() }
    }

    fn boot_domains(
        fdt: &Fdt<'_>,
        platform: &Platform,
        device_tree_address: u64,
        load_address: u64,
    ) -> Result<(), &'static str> {
        let image_start = load_address;
        // SAFETY: linker symbols: only their addresses are used.
        let (text_end, image_end) = unsafe {
            (
                symbol_address(&__text_end) - symbol_address(&__image_start) + load_address,
                symbol_address(&__image_end) - symbol_address(&__image_start) + load_address,
            )
        };
        let image = AddrRange::new(PhysAddr::new(image_start), image_end - image_start);
        let tree = AddrRange::new(
            PhysAddr::new(device_tree_address & !(PAGE_SIZE - 1)),
            fdt.total_size() as u64 + PAGE_SIZE,
        );
        let pack_range = platform
            .initrd
            .ok_or("no boot pack: pass it as the initrd")?;

        let mut reserved: heapless::Vec<AddrRange<PhysAddr>, 24> = heapless::Vec::new();
        for range in [image, tree, pack_range]
            .into_iter()
            .chain(platform.reserved.iter().copied())
        {
            reserved
                .push(range)
                .map_err(|_| "too many reserved memory ranges")?;
        }
        let frames = FrameAllocator::new(&platform.ram, &reserved)
            .map_err(|_| "cannot manage the RAM the device tree lists")?;

        enable_el2_mmu(platform, image, text_end)?;

        // Interrupt controller and EL2 timer bring-up, and their self-test, before any guest.
        // SAFETY: the device tree names these GIC frames; the EL2 map above covers them as
        // Device memory, and only this driver touches them.
        let gic = unsafe { hyp::arch::aarch64::gic::Gic::init(&platform.gic) }
            .map_err(|error| error.describe())?;
        gic.init_cpu().map_err(|error| error.describe())?;
        hyp::arch::aarch64::timer::init(&platform.timer);
        hyp::arch::aarch64::gic::self_test(gic)?;
        // From here on the EL2 timer ends scheduling slices.
        gic.enable_ppi(
            hyp::arch::aarch64::timer::el2_timer_intid(),
            hyp::arch::aarch64::gic::DEFAULT_PRIORITY,
        )
        .map_err(|error| error.describe())?;
        // Each vCPU's virtual timer interrupt comes to EL2 and is forwarded to it.
        gic.enable_ppi(
            hyp::arch::aarch64::timer::virtual_timer_intid(),
            hyp::arch::aarch64::gic::DEFAULT_PRIORITY,
        )
        .map_err(|error| error.describe())?;
        // The maintenance interrupt tells us when a vCPU's list registers run low.
        if let Some(maintenance) = gic.maintenance_intid() {
            gic.enable_ppi(maintenance, hyp::arch::aarch64::gic::DEFAULT_PRIORITY)
                .map_err(|error| error.describe())?;
        }
        let pa_range = (cpu::read_id_aa64mmfr0() & 0xf) as u32;
        // SAFETY: runs once on the boot CPU before any guest; PER_CPU[0] is its own.
        unsafe {
            let per_cpu = &raw mut PER_CPU[0];
            (*per_cpu).stack_top =
                core::ptr::addr_of!(boot::HYP_STACKS) as u64 + boot::BOOT_STACK_SIZE as u64;
            cpu::init_el2(per_cpu, mm::vtcr_value(IPA_BITS, pa_range));
            let boot_parameters = &raw mut SECONDARY_BOOT;
            (*boot_parameters).vtcr = mm::vtcr_value(IPA_BITS, pa_range);
        }
        let cpu_count = start_secondaries(platform);

        // SAFETY: the loader placed the boot pack at the initrd range named in /chosen,
        // which is reserved above so nothing overwrites it.
        let pack_bytes: &'static [u8] = unsafe {
            core::slice::from_raw_parts(
                pack_range.start.raw() as *const u8,
                pack_range.size as usize,
            )
        };
        let pack = match BootPack::parse(pack_bytes) {
            Ok(pack) => pack,
            Err(error) => {
                match error.domain_index() {
                    Some(index) => defmt::error!(
                        "boot pack refused: domain entry {=usize}: {=str}",
                        index,
                        error.describe()
                    ),
                    None => defmt::error!("boot pack refused: {=str}", error.describe()),
                }
                return Err("the boot pack is malformed; no domain started");
            }
        };

        let mut hypervisor = HYPERVISOR.lock();
        // Every CPU that came up; slices of 10 ms of whatever the counter frequency is.
        let slice_ticks = (cpu::read_counter_frequency() / SLICES_PER_SECOND).max(1);
        hypervisor.set_up(frames, platform.psci_over_smc(), cpu_count, slice_ticks)?;
        // Every domain is checked against the machine before any is built; the pack stays
        // (reserved memory) for restarts.
        hypervisor.build_pack(
            pack,
            |vcpus| guest_gic(platform.gic.version, vcpus),
            cpu_count,
        )?;
        // Keystrokes on the UART go to one domain's console ring (Ctrl-A x3 switches).
        hypervisor.start_console_input(platform.uart.intid);
        // SAFETY: only the address of the boot CPU's slot is taken.
        let per_cpu = unsafe { &raw mut PER_CPU[0] };
        // SAFETY: PER_CPU[0] belongs to the boot CPU, the only CPU running; no other
        // reference to it is live.
        let cpu_state = unsafe { &mut (*per_cpu).cpu };
        let next = hypervisor.schedule(cpu_state);
        if next == hyp::hypervisor::Next::Halt {
            return Err("no domain to run");
        }
        if next == hyp::hypervisor::Next::Resume {
            hypervisor.enter_guest(cpu_state);
        }
        drop(hypervisor);
        READY.store(true, Ordering::Release);
        // SAFETY: SEV only wakes CPUs waiting in WFE.
        unsafe { core::arch::asm!("sev", options(nomem, nostack, preserves_flags)) };
        defmt::info!("running on {=usize} CPU(s)", cpu_count);
        hyp::hypervisor::start(cpu_state, next);
        Ok(())
    }

    /// Starts every other CPU the device tree lists, by its enable method (PSCI CPU_ON, or
    /// its spin-table release address), and waits until each has set itself up; returns
    /// how many CPUs the hypervisor runs on.
    fn start_secondaries(platform: &Platform) -> usize {
        use hyp::platform::EnableMethod;
        let boot_mpidr = cpu::read_mpidr() & 0xff_00ff_ffff;
        hyp::arch::aarch64::set_cpu_mpidr(0, boot_mpidr);
        let parameters = core::ptr::addr_of!(SECONDARY_BOOT) as u64;
        cpu::clean_data_cache(
            PhysAddr::new(parameters),
            core::mem::size_of::<SecondaryBoot>() as u64,
        );
        let entry = boot::secondary_entry as *const () as u64;
        let mut started = 1;
        for described in platform.cpus.iter() {
            let mpidr = described.mpidr & 0xff_00ff_ffff;
            if mpidr == boot_mpidr || started >= boot::MAX_CPUS {
                continue;
            }
            hyp::arch::aarch64::set_cpu_mpidr(started, mpidr);
            let before = SECONDARIES_UP.load(Ordering::Acquire);
            match described.enable_method {
                EnableMethod::Psci if platform.psci_over_smc() => {
                    let result = cpu::firmware_call(
                        hypercall_abi::psci::CPU_ON_64,
                        [mpidr, entry, started as u64],
                    );
                    if result != 0 {
                        defmt::warn!(
                            "CPU {=u64:#x} did not start: PSCI {=i64}",
                            mpidr,
                            result as i64
                        );
                        continue;
                    }
                }
                EnableMethod::SpinTable { release_address } => {
                    // The parked CPU jumps to what it reads there with no argument, so it
                    // gets the entry stub that loads its index.
                    let stub = boot::spin_table_entry(started);
                    // SAFETY: the release address is the word this CPU polls (the device
                    // tree says so); it lies in RAM the hypervisor never allocates (the
                    // board reserves the firmware's low memory) and is identity-mapped.
                    unsafe { core::ptr::write_volatile(release_address.raw() as *mut u64, stub) };
                    // The CPU reads it with its MMU and caches off.
                    cpu::clean_data_cache(release_address, 8);
                    // SAFETY: SEV only wakes CPUs waiting in WFE.
                    unsafe { core::arch::asm!("sev", options(nomem, nostack, preserves_flags)) };
                }
                _ => {
                    defmt::warn!(
                        "CPU {=u64:#x}: no usable enable method (PSCI without a conduit, or none); left off",
                        mpidr
                    );
                    continue;
                }
            }
            // Wait for it (bounded: a CPU that never arrives is left out).
            let deadline = cpu::read_counter() + cpu::read_counter_frequency();
            while SECONDARIES_UP.load(Ordering::Acquire) == before && cpu::read_counter() < deadline
            {
                core::hint::spin_loop();
            }
            if SECONDARIES_UP.load(Ordering::Acquire) == before {
                defmt::warn!("CPU {=u64:#x} did not report in; left out", mpidr);
                continue;
            }
            started += 1;
        }
        started
    }

    /// First Rust code on a secondary CPU, with the MMU off: turn it on with the boot
    /// CPU's tables, set up EL2 and this CPU's GIC interface, then wait until the domains
    /// exist and start scheduling.
    #[unsafe(no_mangle)]
    extern "C" fn secondary_main(index: usize) -> ! {
        // SAFETY: the boot CPU wrote and cleaned the block before starting this CPU.
        let boot_parameters =
            unsafe { core::ptr::read_volatile(core::ptr::addr_of!(SECONDARY_BOOT)) };
        // SAFETY: the same identity map the boot CPU runs on.
        unsafe {
            cpu::enable_mmu(
                boot_parameters.mair,
                boot_parameters.tcr,
                boot_parameters.ttbr0,
            )
        };
        // SAFETY: PER_CPU[index] belongs to this CPU alone (the boot CPU gave it the index).
        let per_cpu = unsafe { &raw mut PER_CPU[index] };
        // SAFETY: as above; EL2 set-up happens once on this CPU, before any guest.
        unsafe {
            (*per_cpu).cpu = CpuState::new(index);
            (*per_cpu).stack_top = core::ptr::addr_of!(boot::HYP_STACKS) as u64
                + ((index + 1) * boot::BOOT_STACK_SIZE) as u64;
            cpu::init_el2(per_cpu, boot_parameters.vtcr);
        }
        if let Some(gic) = hyp::arch::aarch64::gic::Gic::get() {
            let _ = gic.init_cpu();
            let priority = hyp::arch::aarch64::gic::DEFAULT_PRIORITY;
            let _ = gic.enable_ppi(hyp::arch::aarch64::timer::el2_timer_intid(), priority);
            let _ = gic.enable_ppi(hyp::arch::aarch64::timer::virtual_timer_intid(), priority);
            if let Some(maintenance) = gic.maintenance_intid() {
                let _ = gic.enable_ppi(maintenance, priority);
            }
        }
        SECONDARIES_UP.fetch_add(1, Ordering::AcqRel);
        while !READY.load(Ordering::Acquire) {
            // SAFETY: WFE only waits (the boot CPU sends SEV).
            unsafe { core::arch::asm!("wfe", options(nomem, nostack, preserves_flags)) };
        }
        // SAFETY: this CPU's own state; no other reference to it is live.
        let cpu_state = unsafe { &mut (*per_cpu).cpu };
        let mut hypervisor = HYPERVISOR.lock();
        let next = hypervisor.schedule(cpu_state);
        if next == hyp::hypervisor::Next::Resume {
            hypervisor.enter_guest(cpu_state);
        }
        drop(hypervisor);
        hyp::hypervisor::start(cpu_state, next);
        // SAFETY: start returned, so this CPU's frame holds a vCPU whose state is loaded.
        unsafe { exceptions::enter_guest() }
    }

    fn guest_gic(version: GicVersion, vcpus: u32) -> GuestGic {
        use hyp::addr::IntermediatePhysAddr as Ipa;
        match version {
            GicVersion::V2 => GuestGic::V2 {
                distributor: AddrRange::new(Ipa::new(layout::GICD_BASE), 0x1000),
                cpu_interface: AddrRange::new(Ipa::new(layout::GICC_BASE), 0x2000),
            },
            GicVersion::V3 => GuestGic::V3 {
                distributor: AddrRange::new(Ipa::new(layout::GICD_BASE), 0x10000),
                redistributors: AddrRange::new(
                    Ipa::new(layout::GICR_BASE),
                    0x20000 * u64::from(vcpus),
                ),
            },
        }
    }

    /// Builds the identity map (text RX, the rest of RAM RW and never executable, devices
    /// as Device memory) in the .bss table pool and turns the MMU and caches on.
    fn enable_el2_mmu(
        platform: &Platform,
        image: AddrRange<PhysAddr>,
        text_end: u64,
    ) -> Result<(), &'static str> {
        // The pool is only used here, once, on the boot CPU.
        let pool_start = core::ptr::addr_of!(EL2_TABLE_POOL) as u64;
        let pool = AddrRange::new(
            PhysAddr::new(pool_start),
            (EL2_TABLE_PAGES as u64) * PAGE_SIZE,
        );
        let mut table_frames = FrameAllocator::new(&[pool], &[]).map_err(|_| "EL2 table pool")?;
        let mut tables = El2Tables::new(&mut table_frames).map_err(|_| "EL2 tables")?;
        let normal = El2Attributes {
            memory: mm::El2MemoryKind::Normal,
            writable: true,
            executable: false,
        };
        let device = El2Attributes {
            memory: mm::El2MemoryKind::Device,
            writable: true,
            executable: false,
        };
        let text = El2Attributes {
            memory: mm::El2MemoryKind::Normal,
            writable: false,
            executable: true,
        };
        let text_range = AddrRange::new(image.start, text_end - image.start.raw());
        for ram in platform.ram.iter() {
            // RAM below and above the image text, as 2 MiB-friendly pieces.
            map_excluding(&mut tables, *ram, text_range, normal, &mut table_frames)?;
        }
        tables
            .map_identity(text_range, text, &mut table_frames)
            .map_err(|_| "map text")?;
        for device_range in platform.device_ranges() {
            tables
                .map_identity(device_range, device, &mut table_frames)
                .map_err(|_| "map device")?;
        }
        cpu::invalidate_data_cache(image.start, image.size);
        let pa_range = (cpu::read_id_aa64mmfr0() & 0xf) as u32;
        let tcr = mm::tcr_el2_value(EL2_VA_BITS, pa_range);
        // SAFETY: only the boot CPU runs; the secondaries read this later, after it has
        // been cleaned to the point of coherency.
        unsafe {
            let boot = &raw mut SECONDARY_BOOT;
            (*boot).mair = mm::MAIR_EL2_VALUE;
            (*boot).tcr = tcr;
            (*boot).ttbr0 = tables.ttbr0();
        }
        // SAFETY: the tables identity-map the image (text executable, data/stack writable),
        // RAM and the devices we use; the image including the table pool (in .bss) was just
        // invalidated from the data cache.
        unsafe { cpu::enable_mmu(mm::MAIR_EL2_VALUE, tcr, tables.ttbr0()) };
        Ok(())
    }

    fn map_excluding(
        tables: &mut El2Tables,
        ram: AddrRange<PhysAddr>,
        hole: AddrRange<PhysAddr>,
        attributes: El2Attributes,
        frames: &mut FrameAllocator,
    ) -> Result<(), &'static str> {
        let ram_end = ram.end().ok_or("RAM range wraps")?.raw();
        let hole_end = hole.end().ok_or("text range wraps")?.raw();
        let pieces = if ram.overlaps(&hole) {
            [(ram.start.raw(), hole.start.raw()), (hole_end, ram_end)]
        } else {
            [(ram.start.raw(), ram_end), (0, 0)]
        };
        for (start, end) in pieces {
            if end > start {
                let range = AddrRange::new(PhysAddr::new(start), end - start);
                tables
                    .map_identity(range, attributes, frames)
                    .map_err(|error| {
                        defmt::error!(
                            "EL2 map of {=u64:#x}+{=u64:#x}: {}",
                            start,
                            end - start,
                            defmt::Debug2Format(&error)
                        );
                        "map RAM"
                    })?;
            }
        }
        Ok(())
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        // The port may be held: by this CPU (the panic interrupted a line or a frame) or
        // by another one (waited for, within bounds).
        serial::prepare_for_panic();
        defmt::error!("hypervisor panic: {}", defmt::Display2Format(info));
        cpu::power_off(PSCI_OVER_SMC.load(Ordering::Relaxed))
    }

    defmt::timestamp!("{=u64:us}", {
        let frequency = cpu::read_counter_frequency().max(1);
        (u128::from(cpu::read_counter()) * 1_000_000 / u128::from(frequency)) as u64
    });
}

#[cfg(not(target_os = "none"))]
fn main() {}
