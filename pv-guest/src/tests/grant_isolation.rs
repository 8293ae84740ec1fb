//! `grant-isolation`: what a domain can and cannot reach through grant operations. Run in
//! four domains of one system (`examples/systems/grant-isolation.toml`), each with
//! `role=ROLE` on its command line and a pre-connected channel to `owner`:
//!
//! - `owner` grants pages at fixed references (below), signals every peer, waits until
//!   `friend` and `stranger` are done, then checks its pages: what it granted read-only is
//!   unchanged, what it granted writable holds what `friend` wrote, and every grant can be
//!   ended (nothing is left in use, including the one `rogue` had mapped when it died).
//! - `friend`, the grantee: maps what it was offered with the permission it was offered,
//!   and nothing more; forged references, domain ids, frame numbers, host addresses and
//!   handles are refused with Xen's statuses; a grant revoked before it mapped it cannot be
//!   mapped.
//! - `stranger` was offered nothing: no reference of `owner`'s maps or copies.
//! - `rogue` maps its read-only grant and writes through it: the hypervisor must end
//!   `rogue` (a stage-2 permission fault, its own fault) and no one else.
//!
//! References: [`READ_ONLY`] and [`WRITABLE`] to `friend`, [`ROGUE_READ_ONLY`] to
//! `rogue`, [`REVOKED`] granted to `friend` and revoked before any signal.

use core::sync::atomic::{AtomicU32, Ordering};

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::event_channel_op::Port;
use crate::abi::grant_table_op::{self as gnttab, CopyPtr, MapGrantRef, UnmapGrantRef};
use crate::abi::guest::{evtchn_send, gnttab_copy, gnttab_map_grant_ref, gnttab_unmap_grant_ref};
use crate::abi::shared::DOMID_SELF;
use crate::irq::{self, Wait};
use crate::{events, grants, platform, println};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "grant-isolation",
    &[
        Test::new("set_up", set_up),
        Test::new("granted_permissions_only", granted_permissions_only),
        Test::new("forged_arguments_refused", forged_arguments_refused),
        Test::new("copies_checked", copies_checked),
        Test::new(
            "nothing_offered_nothing_reached",
            nothing_offered_nothing_reached,
        ),
        Test::new("finish", finish),
    ],
);

/// Granted read-only to `friend`.
const READ_ONLY: u32 = 10;
/// Granted writable to `friend`.
const WRITABLE: u32 = 11;
/// Granted read-only to `rogue`.
const ROGUE_READ_ONLY: u32 = 12;
/// Granted to `friend` and revoked at once.
const REVOKED: u32 = 13;
/// Byte patterns of the owner's pages.
const READ_ONLY_BYTE: u8 = 0xa5;
const ROGUE_BYTE: u8 = 0x5a;
/// What `friend` writes through its writable mapping.
const FRIEND_BYTE: u8 = 0xc3;
/// How long a domain waits for another (boot included).
const WAIT_US: u64 = 20_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Owner,
    Friend,
    Stranger,
    Rogue,
}

/// Four page-aligned pages: the owner's granted pages, or a grantee's copy targets.
#[repr(C, align(4096))]
struct Pages([[u8; 4096]; 4]);

static mut PAGES: Pages = Pages([[0; 4096]; 4]);

fn page_address(index: usize) -> u64 {
    // SAFETY: only the address is taken.
    unsafe { core::ptr::addr_of!(PAGES.0[index]) as u64 }
}

fn page_byte(index: usize, offset: usize) -> u8 {
    // SAFETY: inside the page; volatile, as another domain may write it.
    unsafe { core::ptr::read_volatile((page_address(index) as *const u8).add(offset)) }
}

fn fill_page(index: usize, byte: u8) {
    // SAFETY: our own page, written before it is granted or copied into.
    unsafe { core::ptr::write_bytes(page_address(index) as *mut u8, byte, 4096) };
}

/// The channel to the owner (grantees) or to each peer (owner): (port, peer id, name).
static OWNER_PORT: AtomicU32 = AtomicU32::new(0);
static OWNER_ID: AtomicU32 = AtomicU32::new(u32::MAX);

fn role(context: &Context) -> Result<Role, Failure> {
    match context.parameter("role") {
        Some("owner") => Ok(Role::Owner),
        Some("friend") => Ok(Role::Friend),
        Some("stranger") => Ok(Role::Stranger),
        Some("rogue") => Ok(Role::Rogue),
        other => Err(Failure::new(
            format_args!("role=owner|friend|stranger|rogue on the command line"),
            format_args!("{other:?}"),
        )),
    }
}

fn check<T: core::fmt::Debug + PartialEq>(what: &str, expected: T, got: T) -> TestResult {
    if expected == got {
        Ok(())
    } else {
        Err(Failure::new(
            format_args!("{what}: {expected:?}"),
            format_args!("{got:?}"),
        ))
    }
}

/// The peer named `name` among the pre-connected channels: (port, domain id).
fn peer(context: &Context, name: &str) -> Option<(Port, u16)> {
    (0..context.boot.channel_count())
        .filter_map(|index| context.boot.channel(index))
        .find(|channel| channel.peer == name.as_bytes())
        .map(|channel| (Port(channel.port), channel.remote_domain as u16))
}

fn wait_events(port: Port, wanted: u32, what: &str) -> TestResult {
    let arrived = irq::wait_until(irq::ticks(WAIT_US), Wait::Sleep, || {
        events::count(port) >= wanted
    });
    if arrived {
        Ok(())
    } else {
        Err(Failure::new(
            format_args!(
                "{what} (event {wanted} on port {}) within {} s",
                port.0,
                WAIT_US / 1_000_000
            ),
            format_args!("{} events", events::count(port)),
        ))
    }
}

fn send(port: Port) -> TestResult {
    evtchn_send(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_send({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })
}

fn set_up(context: &Context) -> TestResult {
    let role = role(context)?;
    platform::ensure(&context.boot)?;
    grants::ensure().map_err(|error| {
        Failure::new(format_args!("grant tables set up"), format_args!("{error}"))
    })?;
    for index in 0..context.boot.channel_count() {
        if let Some(channel) = context.boot.channel(index) {
            let _ = events::unmask(Port(channel.port));
        }
    }
    if role == Role::Owner {
        let (Some((friend_port, friend)), Some((stranger_port, _)), Some((rogue_port, rogue))) = (
            peer(context, "friend"),
            peer(context, "stranger"),
            peer(context, "rogue"),
        ) else {
            return Err(Failure::new(
                format_args!("channels to friend, stranger and rogue"),
                format_args!("{} channel(s)", context.boot.channel_count()),
            ));
        };
        fill_page(0, READ_ONLY_BYTE);
        fill_page(1, 0);
        fill_page(2, ROGUE_BYTE);
        let offers = [
            (READ_ONLY, friend, 0, true),
            (WRITABLE, friend, 1, false),
            (ROGUE_READ_ONLY, rogue, 2, true),
            (REVOKED, friend, 3, false),
        ];
        for (reference, grantee, page, readonly) in offers {
            grants::claim(reference)
                .and_then(|()| grants::grant(reference, grantee, page_address(page), readonly))
                .map_err(|error| {
                    Failure::new(format_args!("grant {reference}"), format_args!("{error}"))
                })?;
        }
        grants::end_access(REVOKED).map_err(|error| {
            Failure::new(
                format_args!("revoke {REVOKED} (never mapped)"),
                format_args!("{error}"),
            )
        })?;
        for port in [friend_port, stranger_port, rogue_port] {
            send(port)?;
        }
        return Ok(());
    }
    let Some((port, owner)) = peer(context, "owner") else {
        return Err(Failure::new(
            format_args!("a channel to owner"),
            format_args!("{} channel(s)", context.boot.channel_count()),
        ));
    };
    OWNER_PORT.store(port.0, Ordering::Relaxed);
    OWNER_ID.store(u32::from(owner), Ordering::Relaxed);
    wait_events(port, 1, "the owner's grants")?;
    if role == Role::Rogue {
        let address = map(owner, ROGUE_READ_ONLY, 0, true)?;
        // SAFETY: the mapped grant page.
        let seen = unsafe { core::ptr::read_volatile(address as *const u8) };
        check("rogue reads its read-only grant", ROGUE_BYTE, seen)?;
        println!("grant-isolation: rogue writes through its read-only grant; the hypervisor must end this domain");
        // SAFETY: deliberately wrong: the grant is read-only in stage 2.
        unsafe { core::ptr::write_volatile(address as *mut u8, 0) };
        return Err(Failure::new(
            format_args!("a stage-2 permission fault ending this domain"),
            format_args!("the write went through"),
        ));
    }
    Ok(())
}

fn owner() -> u16 {
    OWNER_ID.load(Ordering::Relaxed) as u16
}

fn map_request(domain: u16, reference: u32, host: u64, readonly: bool) -> MapGrantRef {
    MapGrantRef {
        host_addr: host,
        flags: gnttab::GNTMAP_HOST_MAP | if readonly { gnttab::GNTMAP_READONLY } else { 0 },
        r#ref: reference,
        dom: domain,
        ..Default::default()
    }
}

/// Maps and returns the status and handle.
fn try_map(request: MapGrantRef) -> Result<(i16, u32), Failure> {
    let mut ops = [request];
    // SAFETY: every host address used here is in the foreign window (nothing of ours
    // there) or one the hypervisor must refuse.
    unsafe { gnttab_map_grant_ref(&mut ops) }.map_err(|errno| {
        Failure::new(
            format_args!("grant_table_op(map) -> 0"),
            format_args!("-{errno:?}"),
        )
    })?;
    Ok((ops[0].status, ops[0].handle))
}

/// Maps `reference` of `domain` at foreign slot `slot`; returns the address.
fn map(domain: u16, reference: u32, slot: u64, readonly: bool) -> Result<u64, Failure> {
    let host = grants::foreign_address(slot).unwrap_or(0);
    let (status, handle) = try_map(map_request(domain, reference, host, readonly))?;
    check("map status", gnttab::GNTST_OKAY, status)?;
    HANDLES[slot as usize % HANDLES.len()].store(handle, Ordering::Relaxed);
    Ok(host)
}

static HANDLES: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];

fn unmap(slot: u64) -> Result<i16, Failure> {
    let mut ops = [UnmapGrantRef {
        host_addr: grants::foreign_address(slot).unwrap_or(0),
        handle: HANDLES[slot as usize % HANDLES.len()].load(Ordering::Relaxed),
        ..Default::default()
    }];
    // SAFETY: nothing refers to the mapped page any more.
    unsafe { gnttab_unmap_grant_ref(&mut ops) }.map_err(|errno| {
        Failure::new(
            format_args!("grant_table_op(unmap) -> 0"),
            format_args!("-{errno:?}"),
        )
    })?;
    Ok(ops[0].status)
}

fn granted_permissions_only(context: &Context) -> TestResult {
    if role(context)? != Role::Friend {
        return Ok(());
    }
    let read_only = map(owner(), READ_ONLY, 0, true)?;
    // SAFETY: the mapped grant page.
    let seen = unsafe { core::ptr::read_volatile((read_only + 4095) as *const u8) };
    check("the read-only grant's last byte", READ_ONLY_BYTE, seen)?;
    let host = grants::foreign_address(1).unwrap_or(0);
    check(
        "a writable map of a read-only grant",
        (gnttab::GNTST_GENERAL_ERROR, 0),
        try_map(map_request(owner(), READ_ONLY, host, false)).map(|(status, _)| (status, 0))?,
    )?;
    let writable = map(owner(), WRITABLE, 2, false)?;
    // SAFETY: the mapped writable grant page.
    unsafe { core::ptr::write_bytes(writable as *mut u8, FRIEND_BYTE, 4096) };
    check("unmap the writable grant", gnttab::GNTST_OKAY, unmap(2)?)?;
    check("unmap it again", gnttab::GNTST_BAD_HANDLE, unmap(2)?)?;
    check(
        "map a grant revoked before use",
        gnttab::GNTST_GENERAL_ERROR,
        try_map(map_request(owner(), REVOKED, host, false))?.0,
    )
}

fn forged_arguments_refused(context: &Context) -> TestResult {
    if role(context)? != Role::Friend {
        return Ok(());
    }
    let host = grants::foreign_address(3).unwrap_or(0);
    let own_ram = page_address(0);
    let cases: [(&str, MapGrantRef, i16); 8] = [
        (
            "a reference past the table",
            map_request(owner(), 100_000, host, true),
            gnttab::GNTST_BAD_GNTREF,
        ),
        (
            "a reference never granted",
            map_request(owner(), 200, host, true),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        (
            "a reserved reference",
            map_request(owner(), 1, host, true),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        (
            "DOMID_SELF as granter",
            map_request(DOMID_SELF, READ_ONLY, host, true),
            gnttab::GNTST_BAD_DOMAIN,
        ),
        (
            "a domain that does not exist",
            map_request(7, READ_ONLY, host, true),
            gnttab::GNTST_BAD_DOMAIN,
        ),
        (
            "over our own RAM",
            map_request(owner(), READ_ONLY, own_ram, true),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        (
            "an unaligned address",
            map_request(owner(), READ_ONLY, host + 8, true),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        (
            "the virtual GIC",
            map_request(owner(), READ_ONLY, 0x0300_1000, true),
            gnttab::GNTST_GENERAL_ERROR,
        ),
    ];
    for (what, request, expected) in cases {
        check(what, expected, try_map(request)?.0)?;
    }
    let mut ops = [UnmapGrantRef {
        host_addr: host,
        handle: 12_345,
        ..Default::default()
    }];
    // SAFETY: a forged handle: nothing is unmapped.
    unsafe { gnttab_unmap_grant_ref(&mut ops) }.map_err(|errno| {
        Failure::new(
            format_args!("grant_table_op(unmap) -> 0"),
            format_args!("-{errno:?}"),
        )
    })?;
    check(
        "unmap of a forged handle",
        gnttab::GNTST_BAD_HANDLE,
        ops[0].status,
    )
}

fn copy_ptr(domid: u16, u: u64, offset: u16) -> CopyPtr {
    CopyPtr {
        u,
        domid,
        offset,
        ..Default::default()
    }
}

fn try_copy(source: CopyPtr, dest: CopyPtr, flags: u16, len: u16) -> Result<i16, Failure> {
    let mut ops = [gnttab::Copy {
        source,
        dest,
        len,
        flags,
        ..Default::default()
    }];
    // SAFETY: the only destination in our memory is PAGES, which no reference covers.
    unsafe { gnttab_copy(&mut ops) }.map_err(|errno| {
        Failure::new(
            format_args!("grant_table_op(copy) -> 0"),
            format_args!("-{errno:?}"),
        )
    })?;
    Ok(ops[0].status)
}

fn copies_checked(context: &Context) -> TestResult {
    let role = role(context)?;
    if role != Role::Friend && role != Role::Stranger {
        return Ok(());
    }
    fill_page(1, 0);
    let ours = page_address(1) >> 12;
    let source_gref = gnttab::GNTCOPY_SOURCE_GREF;
    let from_grant = try_copy(
        copy_ptr(owner(), u64::from(READ_ONLY), 0),
        copy_ptr(DOMID_SELF, ours, 0),
        source_gref,
        64,
    )?;
    if role == Role::Stranger {
        check(
            "a copy from a grant offered to another domain",
            gnttab::GNTST_GENERAL_ERROR,
            from_grant,
        )?;
        return check("nothing copied", 0, page_byte(1, 0));
    }
    check(
        "a copy from the read-only grant",
        gnttab::GNTST_OKAY,
        from_grant,
    )?;
    check(
        "the copied bytes",
        (READ_ONLY_BYTE, 0),
        (page_byte(1, 63), page_byte(1, 64)),
    )?;
    let cases: [(&str, CopyPtr, CopyPtr, u16, u16, i16); 4] = [
        (
            "a copy into the read-only grant",
            copy_ptr(DOMID_SELF, ours, 0),
            copy_ptr(owner(), u64::from(READ_ONLY), 0),
            gnttab::GNTCOPY_DEST_GREF,
            1,
            gnttab::GNTST_GENERAL_ERROR,
        ),
        (
            "the owner's page by frame number",
            copy_ptr(owner(), ours, 0),
            copy_ptr(DOMID_SELF, ours, 0),
            0,
            1,
            gnttab::GNTST_PERMISSION_DENIED,
        ),
        (
            "our own frame that is not RAM (the console ring)",
            copy_ptr(DOMID_SELF, 0x3_9000, 0),
            copy_ptr(DOMID_SELF, ours, 0),
            0,
            1,
            gnttab::GNTST_BAD_PAGE,
        ),
        (
            "across the end of a page",
            copy_ptr(owner(), u64::from(READ_ONLY), 4000),
            copy_ptr(DOMID_SELF, ours, 0),
            source_gref,
            200,
            gnttab::GNTST_BAD_COPY_ARG,
        ),
    ];
    for (what, source, dest, flags, len, expected) in cases {
        check(what, expected, try_copy(source, dest, flags, len)?)?;
    }
    Ok(())
}

fn nothing_offered_nothing_reached(context: &Context) -> TestResult {
    if role(context)? != Role::Stranger {
        return Ok(());
    }
    let host = grants::foreign_address(0).unwrap_or(0);
    // Every reference of the owner's table: none was offered to us.
    for reference in 0..grants::MAX_FRAMES * grants::ENTRIES_PER_FRAME {
        for readonly in [true, false] {
            let (status, _) = try_map(map_request(owner(), reference, host, readonly))?;
            if status == gnttab::GNTST_OKAY {
                return Err(Failure::new(
                    format_args!("no reference of the owner's mapped"),
                    format_args!("reference {reference} mapped (readonly {readonly})"),
                ));
            }
        }
    }
    Ok(())
}

fn finish(context: &Context) -> TestResult {
    let role = role(context)?;
    if role != Role::Owner {
        if role == Role::Friend {
            check("unmap the read-only grant", gnttab::GNTST_OKAY, unmap(0)?)?;
        }
        return send(Port(OWNER_PORT.load(Ordering::Relaxed)));
    }
    let (Some((friend_port, _)), Some((stranger_port, _)), Some((rogue_port, _))) = (
        peer(context, "friend"),
        peer(context, "stranger"),
        peer(context, "rogue"),
    ) else {
        return Err(Failure::new(
            format_args!("the peers' channels"),
            format_args!("none"),
        ));
    };
    wait_events(friend_port, 1, "friend done")?;
    wait_events(stranger_port, 1, "stranger done")?;
    // rogue never signals: its end closes the channel, which notifies our end.
    wait_events(rogue_port, 1, "rogue's end")?;
    for offset in [0, 4095] {
        check("the read-only page", READ_ONLY_BYTE, page_byte(0, offset))?;
        check("the page friend wrote", FRIEND_BYTE, page_byte(1, offset))?;
        check(
            "the page rogue could only read",
            ROGUE_BYTE,
            page_byte(2, offset),
        )?;
    }
    // Nothing is in use any more: rogue's mapping went with rogue.
    for reference in [READ_ONLY, WRITABLE, ROGUE_READ_ONLY] {
        grants::end_access(reference).map_err(|error| {
            Failure::new(
                format_args!("end grant {reference}"),
                format_args!("{error}"),
            )
        })?;
    }
    println!("grant-isolation: every grant ended; the owner's pages hold what they should");
    Ok(())
}
