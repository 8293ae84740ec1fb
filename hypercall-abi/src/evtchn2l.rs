//! The 2-level event-channel protocol on the shared-info page, for both sides.
//!
//! Pending and mask bits live in [`SharedInfo::evtchn_pending`] and
//! [`SharedInfo::evtchn_mask`]; the per-vCPU selector and upcall flag live in a
//! [`VcpuInfo`]. The hypervisor and the guest change these words concurrently, so
//! every access is an atomic read-modify-write. All accesses use `SeqCst`: the
//! protocol relies on a write to one word (a pending bit) being visible before a
//! later read of another (the mask or selector), which needs a full barrier, and the
//! cost is irrelevant next to the trap that precedes it. This mirrors Xen's
//! `guest_test_and_set_bit` and Linux's `sync_*_bit`, which are fully ordered.
//!
//! Semantics follow Xen's `xen/common/event_2l.c` (hypervisor side) and Linux's
//! `drivers/xen/events/events_2l.c` (guest side).
//!
//! Ports at or above [`NR_PORTS`] do not exist: every function ignores them (returns
//! `false` and changes nothing) so that a hostile port number can never index out of
//! the bitmaps.

// Port numbers come from guests: no indexing that could panic (see `locate`).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::event_channel_op::Port;
use crate::shared::{SharedInfo, VcpuInfo, EVTCHN_WORDS};

/// Bits per bitmap word.
pub const BITS_PER_WORD: u32 = 64;
/// Number of ports of the 2-level ABI (`EVTCHN_2L_NR_CHANNELS`): 64 words of 64 bits.
pub const NR_PORTS: u32 = EVTCHN_WORDS as u32 * BITS_PER_WORD;

/// The word of `words` (a bitmap of the shared-info page) that holds `port`'s bit, the
/// word's index and the bit, or `None` when the port is out of range.
fn locate(words: &[AtomicU64], port: Port) -> Option<(&AtomicU64, u32, u64)> {
    if port.0 >= NR_PORTS {
        return None;
    }
    let index = port.0 / BITS_PER_WORD;
    let word = words.get(usize::try_from(index).ok()?)?;
    Some((word, index, 1u64 << (port.0 % BITS_PER_WORD)))
}

/// Atomically sets a bit; returns whether it was set before.
fn test_and_set(word: &AtomicU64, bit: u64) -> bool {
    word.fetch_or(bit, SeqCst) & bit != 0
}

/// Atomically clears a bit; returns whether it was set before.
fn test_and_clear(word: &AtomicU64, bit: u64) -> bool {
    word.fetch_and(!bit, SeqCst) & bit != 0
}

/// Sets the pending bit of `port`. Returns `true` if it was newly set (0 -> 1).
///
/// This is only the bit; a hypervisor delivering an event uses [`mark_pending`].
pub fn set_pending(shared: &SharedInfo, port: Port) -> bool {
    match locate(&shared.evtchn_pending, port) {
        Some((word, _, bit)) => !test_and_set(word, bit),
        None => false,
    }
}

/// Clears the pending bit of `port` (the guest's "ack"). Returns whether it was set.
pub fn clear_pending(shared: &SharedInfo, port: Port) -> bool {
    match locate(&shared.evtchn_pending, port) {
        Some((word, _, bit)) => test_and_clear(word, bit),
        None => false,
    }
}

/// Whether `port` is pending.
pub fn test_pending(shared: &SharedInfo, port: Port) -> bool {
    match locate(&shared.evtchn_pending, port) {
        Some((word, _, bit)) => word.load(SeqCst) & bit != 0,
        None => false,
    }
}

/// Sets the mask bit of `port`. Returns `true` if it was newly set.
///
/// Guests mask locally, with no hypercall.
pub fn set_mask(shared: &SharedInfo, port: Port) -> bool {
    match locate(&shared.evtchn_mask, port) {
        Some((word, _, bit)) => !test_and_set(word, bit),
        None => false,
    }
}

/// Clears the mask bit of `port`. Returns whether it was set.
///
/// This is only the bit. A guest unmasking a port must afterwards check
/// [`test_pending`] and, if set, re-mask and call `EVTCHNOP_unmask` so that the
/// hypervisor raises the upcall (Linux's sequence; see [`unmask_and_notify`]).
pub fn clear_mask(shared: &SharedInfo, port: Port) -> bool {
    match locate(&shared.evtchn_mask, port) {
        Some((word, _, bit)) => test_and_clear(word, bit),
        None => false,
    }
}

/// Whether `port` is masked.
pub fn test_mask(shared: &SharedInfo, port: Port) -> bool {
    match locate(&shared.evtchn_mask, port) {
        Some((word, _, bit)) => word.load(SeqCst) & bit != 0,
        None => false,
    }
}

/// Hypervisor: `vcpu_mark_events_pending`. Sets `evtchn_upcall_pending` and returns
/// `true` only on its 0 -> 1 transition, i.e. when the event PPI must be injected.
pub fn mark_events_pending(vcpu_info: &VcpuInfo) -> bool {
    vcpu_info.evtchn_upcall_pending.swap(1, SeqCst) == 0
}

/// Hypervisor: deliver an event on `port` to the vCPU owning `vcpu_info`
/// (Xen's `evtchn_2l_set_pending`).
///
/// 1. Set the pending bit; if it was already set, stop (the event is coalesced).
/// 2. If the port is unmasked and the selector bit for its word was clear, set that
///    bit and mark events pending on the vCPU.
///
/// Returns `true` when the caller must inject the event PPI into that vCPU: the
/// 0 -> 1 transition of `evtchn_upcall_pending`.
pub fn mark_pending(shared: &SharedInfo, vcpu_info: &VcpuInfo, port: Port) -> bool {
    let (Some((pending, w, bit)), Some((mask, _, _))) = (
        locate(&shared.evtchn_pending, port),
        locate(&shared.evtchn_mask, port),
    ) else {
        return false;
    };
    if test_and_set(pending, bit) {
        return false;
    }
    if mask.load(SeqCst) & bit != 0 {
        return false;
    }
    if test_and_set(&vcpu_info.evtchn_pending_sel, 1 << w) {
        return false;
    }
    mark_events_pending(vcpu_info)
}

/// Hypervisor: `EVTCHNOP_unmask` (Xen's `evtchn_2l_unmask`).
///
/// Clears the mask bit; if it was set and the port is pending and the selector bit
/// was clear, sets the selector bit and marks events pending. Returns `true` when the
/// caller must inject the event PPI.
pub fn unmask_and_notify(shared: &SharedInfo, vcpu_info: &VcpuInfo, port: Port) -> bool {
    let (Some((pending, w, bit)), Some((mask, _, _))) = (
        locate(&shared.evtchn_pending, port),
        locate(&shared.evtchn_mask, port),
    ) else {
        return false;
    };
    if !test_and_clear(mask, bit) {
        return false;
    }
    if pending.load(SeqCst) & bit == 0 {
        return false;
    }
    if test_and_set(&vcpu_info.evtchn_pending_sel, 1 << w) {
        return false;
    }
    mark_events_pending(vcpu_info)
}

/// Hypervisor: what `VCPUOP_register_vcpu_info` does after copying the old
/// `vcpu_info` into the new place: set every selector bit and mark events pending, so
/// the guest rescans all words. Returns `true` when the event PPI must be injected.
pub fn mark_all_pending(vcpu_info: &VcpuInfo) -> bool {
    vcpu_info.evtchn_pending_sel.store(u64::MAX, SeqCst);
    mark_events_pending(vcpu_info)
}

/// Guest: the upcall walk (Linux `xen_evtchn_do_upcall` with the 2-level backend).
///
/// Repeats until `evtchn_upcall_pending` stays clear:
/// 1. clear `evtchn_upcall_pending`;
/// 2. take the selector with an atomic exchange against 0;
/// 3. for each selected word, in ascending order, take the ports that are pending and
///    not masked, and for each in ascending order clear its pending bit (ack) and call
///    `handle(port)`.
///
/// Events that arrive during the walk set the selector and the upcall flag again and
/// are handled by the next round, so none is lost. Returns the number of ports
/// handled. Ports are not filtered by the vCPU they are bound to; a guest that binds
/// ports to several vCPUs must mask the others' ports on each vCPU's walk or route
/// them itself.
pub fn for_each_pending<F: FnMut(Port)>(
    shared: &SharedInfo,
    vcpu_info: &VcpuInfo,
    mut handle: F,
) -> usize {
    let mut handled = 0;
    loop {
        vcpu_info.evtchn_upcall_pending.store(0, SeqCst);
        let mut selector = vcpu_info.evtchn_pending_sel.swap(0, SeqCst);
        while selector != 0 {
            let w = selector.trailing_zeros();
            selector &= selector - 1;
            let word = w as usize;
            let (Some(pending), Some(mask)) = (
                shared.evtchn_pending.get(word),
                shared.evtchn_mask.get(word),
            ) else {
                continue;
            };
            let mut ready = pending.load(SeqCst) & !mask.load(SeqCst);
            while ready != 0 {
                let b = ready.trailing_zeros();
                ready &= ready - 1;
                let bit = 1u64 << b;
                if test_and_clear(pending, bit) {
                    handle(Port(w * BITS_PER_WORD + b));
                    handled += 1;
                }
            }
        }
        if vcpu_info.evtchn_upcall_pending.load(SeqCst) == 0 {
            return handled;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::Ordering::Relaxed;

    extern crate std;
    use std::vec::Vec;

    fn fresh() -> (SharedInfo, VcpuInfo) {
        (SharedInfo::new(), VcpuInfo::new())
    }

    #[test]
    fn pending_bits() {
        let (s, _) = fresh();
        let p = Port(130);
        assert!(!test_pending(&s, p));
        assert!(set_pending(&s, p));
        assert!(!set_pending(&s, p), "second set is not new");
        assert!(test_pending(&s, p));
        assert_eq!(s.evtchn_pending[2].load(Relaxed), 1 << 2);
        assert!(clear_pending(&s, p));
        assert!(!clear_pending(&s, p));
        assert!(!test_pending(&s, p));
    }

    #[test]
    fn mask_bits() {
        let (s, _) = fresh();
        let p = Port(4095);
        assert!(set_mask(&s, p));
        assert!(!set_mask(&s, p));
        assert!(test_mask(&s, p));
        assert_eq!(s.evtchn_mask[63].load(Relaxed), 1 << 63);
        assert!(clear_mask(&s, p));
        assert!(!clear_mask(&s, p));
        assert!(!test_mask(&s, p));
    }

    #[test]
    fn out_of_range_ports_are_ignored() {
        let (s, v) = fresh();
        for p in [Port(NR_PORTS), Port(u32::MAX)] {
            assert!(!set_pending(&s, p));
            assert!(!test_pending(&s, p));
            assert!(!clear_pending(&s, p));
            assert!(!set_mask(&s, p));
            assert!(!test_mask(&s, p));
            assert!(!clear_mask(&s, p));
            assert!(!mark_pending(&s, &v, p));
            assert!(!unmask_and_notify(&s, &v, p));
        }
        assert!(s.evtchn_pending.iter().all(|w| w.load(Relaxed) == 0));
    }

    #[test]
    fn mark_pending_injects_only_on_upcall_transition() {
        let (s, v) = fresh();
        assert!(mark_pending(&s, &v, Port(1)), "first event injects");
        assert_eq!(v.evtchn_upcall_pending.load(Relaxed), 1);
        assert_eq!(v.evtchn_pending_sel.load(Relaxed), 1);
        assert!(!mark_pending(&s, &v, Port(1)), "coalesced");
        assert!(
            !mark_pending(&s, &v, Port(2)),
            "same word, selector already set"
        );
        assert!(!mark_pending(&s, &v, Port(64)), "upcall already pending");
        assert_eq!(v.evtchn_pending_sel.load(Relaxed), 0b11);
    }

    #[test]
    fn masked_port_stays_pending_until_unmask() {
        let (s, v) = fresh();
        set_mask(&s, Port(5));
        assert!(!mark_pending(&s, &v, Port(5)));
        assert!(test_pending(&s, Port(5)));
        assert_eq!(v.evtchn_pending_sel.load(Relaxed), 0);
        assert_eq!(v.evtchn_upcall_pending.load(Relaxed), 0);
        assert!(unmask_and_notify(&s, &v, Port(5)));
        assert!(!test_mask(&s, Port(5)));
        assert_eq!(v.evtchn_upcall_pending.load(Relaxed), 1);
        // Unmasking an unmasked port does nothing.
        assert!(!unmask_and_notify(&s, &v, Port(5)));
    }

    #[test]
    fn unmask_of_idle_port_does_not_inject() {
        let (s, v) = fresh();
        set_mask(&s, Port(9));
        assert!(!unmask_and_notify(&s, &v, Port(9)));
        assert_eq!(v.evtchn_pending_sel.load(Relaxed), 0);
    }

    #[test]
    fn mark_all_pending_sets_every_selector_bit() {
        let v = VcpuInfo::new();
        assert!(mark_all_pending(&v));
        assert_eq!(v.evtchn_pending_sel.load(Relaxed), u64::MAX);
        assert!(!mark_all_pending(&v));
    }

    #[test]
    fn walk_delivers_in_order_and_acks() {
        let (s, v) = fresh();
        for p in [700, 3, 64, 65, 4095] {
            mark_pending(&s, &v, Port(p));
        }
        set_mask(&s, Port(66));
        mark_pending(&s, &v, Port(66));
        let mut seen = Vec::new();
        let n = for_each_pending(&s, &v, |p| seen.push(p.0));
        assert_eq!(seen, [3, 64, 65, 700, 4095]);
        assert_eq!(n, 5);
        assert!(test_pending(&s, Port(66)), "masked port left pending");
        assert!(!test_pending(&s, Port(3)));
        assert_eq!(v.evtchn_upcall_pending.load(Relaxed), 0);
        assert_eq!(v.evtchn_pending_sel.load(Relaxed), 0);
    }

    #[test]
    fn walk_picks_up_events_raised_by_the_handler() {
        let (s, v) = fresh();
        mark_pending(&s, &v, Port(10));
        let mut seen = Vec::new();
        for_each_pending(&s, &v, |p| {
            seen.push(p.0);
            if seen.len() == 1 {
                // The hypervisor raises two more events mid-walk (another CPU).
                mark_pending(&s, &v, Port(10));
                mark_pending(&s, &v, Port(200));
            }
        });
        assert_eq!(seen, [10, 10, 200]);
        assert_eq!(v.evtchn_upcall_pending.load(Relaxed), 0);
    }

    /// The hypervisor (two threads) raises events while the guest walks them: no event
    /// may be lost, i.e. once everything settles every raised port was handled and no
    /// unmasked port is left pending without an upcall.
    #[test]
    fn concurrent_producers_and_consumer_lose_no_event() {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        use std::sync::Arc;

        let shared = Arc::new((SharedInfo::new(), VcpuInfo::new()));
        let done = Arc::new(AtomicBool::new(false));
        let injections = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..2u64)
            .map(|t| {
                let shared = Arc::clone(&shared);
                let injections = Arc::clone(&injections);
                std::thread::spawn(move || {
                    let mut rng = Rng(0x1234_5678 + t);
                    let mut raised = std::vec![false; NR_PORTS as usize];
                    for _ in 0..200_000 {
                        let p = rng.below(NR_PORTS as u64) as u32;
                        raised[p as usize] = true;
                        if mark_pending(&shared.0, &shared.1, Port(p)) {
                            injections.fetch_add(1, Relaxed);
                        }
                    }
                    raised
                })
            })
            .collect();
        let consumer = {
            let shared = Arc::clone(&shared);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut handled = std::vec![false; NR_PORTS as usize];
                loop {
                    let finished = done.load(SeqCst);
                    // The "interrupt": only walk when the upcall flag says so.
                    if shared.1.evtchn_upcall_pending.load(SeqCst) != 0 {
                        for_each_pending(&shared.0, &shared.1, |p| handled[p.0 as usize] = true);
                    }
                    if finished {
                        return handled;
                    }
                    std::thread::yield_now();
                }
            })
        };
        let mut raised = std::vec![false; NR_PORTS as usize];
        for producer in producers {
            for (i, r) in producer.join().unwrap().into_iter().enumerate() {
                raised[i] |= r;
            }
        }
        done.store(true, SeqCst);
        let handled = consumer.join().unwrap();
        assert_eq!(raised, handled, "a raised port was never handled");
        assert!(shared.0.evtchn_pending.iter().all(|w| w.load(SeqCst) == 0));
        assert!(injections.load(Relaxed) > 0);
    }

    /// A xorshift generator: deterministic, no external crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The model: one bool per port for pending and mask, plus what a guest has been
    /// told. Invariants checked after every step:
    /// - pending/mask bits equal the model;
    /// - every unmasked pending port is reachable: its selector bit is set or a
    ///   walk is owed (`upcall_pending`), and `upcall_pending` is set whenever
    ///   the selector is non-zero (no lost wakeup);
    /// - an injection is reported exactly when `upcall_pending` goes 0 -> 1.
    #[test]
    fn random_sequences_match_model() {
        const PORTS: u32 = 200; // spans four words; also try a few far ports
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _round in 0..120 {
            let (s, v) = fresh();
            let mut pending = [false; NR_PORTS as usize];
            let mut masked = [false; NR_PORTS as usize];
            for _step in 0..300 {
                let port = if rng.below(10) == 0 {
                    Port(rng.below(NR_PORTS as u64) as u32)
                } else {
                    Port(rng.below(PORTS as u64) as u32)
                };
                let i = port.0 as usize;
                let upcall_before = v.evtchn_upcall_pending.load(Relaxed);
                match rng.below(7) {
                    0 | 1 => {
                        let inject = mark_pending(&s, &v, port);
                        let upcall_after = v.evtchn_upcall_pending.load(Relaxed);
                        assert_eq!(inject, upcall_before == 0 && upcall_after == 1);
                        if inject {
                            assert!(!pending[i] && !masked[i]);
                        }
                        pending[i] = true;
                    }
                    2 => {
                        assert_eq!(set_mask(&s, port), !masked[i]);
                        masked[i] = true;
                    }
                    3 => {
                        let inject = unmask_and_notify(&s, &v, port);
                        if inject {
                            assert!(masked[i] && pending[i] && upcall_before == 0);
                        }
                        masked[i] = false;
                    }
                    4 => {
                        assert_eq!(clear_pending(&s, port), pending[i]);
                        pending[i] = false;
                    }
                    5 => {
                        assert_eq!(clear_mask(&s, port), masked[i]);
                        masked[i] = false;
                        // Plain clear_mask gives no guarantee of notification; follow
                        // Linux: if pending, re-mask and unmask via the hypervisor.
                        if test_pending(&s, port) {
                            set_mask(&s, port);
                            unmask_and_notify(&s, &v, port);
                        }
                    }
                    _ => {
                        let mut seen = Vec::new();
                        for_each_pending(&s, &v, |p| seen.push(p.0));
                        let mut sorted = seen.clone();
                        sorted.sort_unstable();
                        sorted.dedup();
                        assert_eq!(sorted.len(), seen.len(), "a port delivered twice");
                        for &p in &seen {
                            assert!(pending[p as usize] && !masked[p as usize]);
                            pending[p as usize] = false;
                        }
                        assert_eq!(v.evtchn_upcall_pending.load(Relaxed), 0);
                        assert_eq!(v.evtchn_pending_sel.load(Relaxed), 0);
                        // Everything unmasked and pending was delivered.
                        for p in 0..NR_PORTS as usize {
                            assert!(!pending[p] || masked[p], "port {p} left behind");
                        }
                    }
                }
                // Bits equal the model.
                for w in 0..EVTCHN_WORDS {
                    let mut pw = 0u64;
                    let mut mw = 0u64;
                    for b in 0..64 {
                        pw |= (pending[w * 64 + b] as u64) << b;
                        mw |= (masked[w * 64 + b] as u64) << b;
                    }
                    assert_eq!(s.evtchn_pending[w].load(Relaxed), pw);
                    assert_eq!(s.evtchn_mask[w].load(Relaxed), mw);
                }
                // No lost wakeup: a set selector bit implies a pending upcall, and
                // every unmasked pending port that was not already delivered has its
                // word selected.
                let sel = v.evtchn_pending_sel.load(Relaxed);
                if sel != 0 {
                    assert_eq!(v.evtchn_upcall_pending.load(Relaxed), 1);
                }
                for p in 0..NR_PORTS as usize {
                    if pending[p] && !masked[p] {
                        assert!(sel & (1 << (p / 64)) != 0, "port {p} unreachable");
                    }
                }
            }
        }
    }
}
