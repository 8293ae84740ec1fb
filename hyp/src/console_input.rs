//! Console input: keystrokes from the UART go to one domain at a time, through its
//! console ring's `in[]`.
//!
//! As on Xen, one domain has the input *focus*. Pressing Ctrl-A three times in a row
//! ([`SWITCH_BYTE`] x [`SWITCH_PRESSES`]) moves the focus to the next live domain, in slot
//! order, wrapping around (Xen also has a position for the hypervisor's own debug keys;
//! this hypervisor has none, so the cycle is the live domains only). Ctrl-A pressed fewer
//! than three times and followed by another key is not lost: those Ctrl-A bytes are
//! delivered before the key, as Xen does.
//!
//! Delivery: bytes for the focused domain queue in its [`Pending`] buffer and are copied
//! into its ring's `in[]` as space allows (bytes first, then `in_prod` with release
//! ordering); the caller then signals the domain's console event channel. What does not
//! fit stays queued and is retried when the guest next signals its console port (it does
//! after consuming input, as Linux's `hvc_xen` does) or when more input arrives. When even
//! the queue is full, bytes are dropped, counted, and logged once per domain.

use crate::addr::PhysAddr;
use crate::arch;
use crate::domain::MAX_DOMAINS;
use core::sync::atomic::Ordering;
use hypercall_abi::shared::{xencons_mask_in, XenconsInterface, XENCONS_IN_SIZE};

/// Ctrl-A: the byte that, pressed [`SWITCH_PRESSES`] times in a row, switches the focus.
pub const SWITCH_BYTE: u8 = 0x01;
/// How many [`SWITCH_BYTE`]s in a row switch the focus.
pub const SWITCH_PRESSES: u8 = 3;
/// Bytes kept per domain while its ring's `in[]` is full.
pub const PENDING_CAPACITY: usize = 256;

/// What one input byte means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Deliver these bytes (held-back Ctrl-As first) to the focused domain.
    Deliver {
        /// Held-back [`SWITCH_BYTE`]s to deliver before `byte`.
        held: u8,
        /// The byte itself.
        byte: u8,
    },
    /// A Ctrl-A held back: it may be part of a switch.
    Held,
    /// The third Ctrl-A in a row: switch the focus.
    Switch,
}

/// Recognises Ctrl-A x3 in the input stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct SwitchDetector {
    held: u8,
}

impl SwitchDetector {
    /// A detector with nothing held.
    pub const fn new() -> Self {
        Self { held: 0 }
    }

    /// Classifies the next input byte.
    pub fn push(&mut self, byte: u8) -> Key {
        if byte == SWITCH_BYTE {
            self.held += 1;
            if self.held >= SWITCH_PRESSES {
                self.held = 0;
                return Key::Switch;
            }
            return Key::Held;
        }
        let held = core::mem::take(&mut self.held);
        Key::Deliver { held, byte }
    }
}

/// The slot after `current` (cyclically, over `0..MAX_DOMAINS`) for which `live` holds, or
/// `current` itself if it is the only one; `None` if no slot is live. With no current
/// focus, the first live slot.
pub fn next_focus(current: Option<usize>, live: impl Fn(usize) -> bool) -> Option<usize> {
    let start = current.map_or(0, |slot| slot + 1);
    (0..MAX_DOMAINS)
        .map(|step| (start + step) % MAX_DOMAINS)
        .find(|&slot| live(slot))
}

/// Input waiting for room in one domain's ring.
#[derive(Default)]
pub struct Pending {
    bytes: heapless::Deque<u8, PENDING_CAPACITY>,
    /// Bytes dropped because this buffer was full.
    pub dropped: u64,
    /// Whether the first drop has been logged.
    pub drop_logged: bool,
}

impl Pending {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            bytes: heapless::Deque::new(),
            dropped: 0,
            drop_logged: false,
        }
    }

    /// Queues `byte`; false (and counted as dropped) if the buffer is full.
    pub fn push(&mut self, byte: u8) -> bool {
        if self.bytes.push_back(byte).is_err() {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        true
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Forgets everything (the domain ended or its slot is rebuilt).
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Moves as many waiting bytes as fit into the `in[]` of the console ring page at
    /// `ring_page` (a page the hypervisor owns and the guest maps): bytes first, then
    /// `in_prod` with release ordering. Returns how many were moved. Indices the guest
    /// corrupted (`in_prod - in_cons` beyond the ring size) leave the ring untouched.
    pub fn fill_ring(&mut self, ring_page: PhysAddr) -> usize {
        if self.bytes.is_empty() {
            return 0;
        }
        let ring = arch::phys_to_virt(ring_page).cast::<XenconsInterface>();
        // SAFETY: `ring_page` is a live, page-aligned console ring page (the caller's
        // domain's); only the two index atomics are borrowed, never the byte arrays.
        let (in_cons, in_prod) = unsafe {
            (
                &*core::ptr::addr_of!((*ring).in_cons),
                &*core::ptr::addr_of!((*ring).in_prod),
            )
        };
        // SAFETY: as above; a raw pointer to `in[]`, written with volatile stores only.
        let input = unsafe { core::ptr::addr_of_mut!((*ring).input) }.cast::<u8>();
        // We are the only producer of in[]: in_prod is ours.
        let producer = in_prod.load(Ordering::Relaxed);
        let consumer = in_cons.load(Ordering::Acquire);
        let used = producer.wrapping_sub(consumer) as usize;
        let Some(space) = XENCONS_IN_SIZE.checked_sub(used) else {
            return 0;
        };
        let mut moved = 0u32;
        while (moved as usize) < space {
            let Some(byte) = self.bytes.pop_front() else {
                break;
            };
            let index = xencons_mask_in(producer.wrapping_add(moved));
            // SAFETY: `index` is below XENCONS_IN_SIZE, inside `in[]`; the guest does not
            // read this byte until `in_prod` covers it.
            unsafe { input.add(index).write_volatile(byte) };
            moved += 1;
        }
        if moved != 0 {
            // Release: the bytes are visible before the index that publishes them.
            in_prod.store(producer.wrapping_add(moved), Ordering::Release);
        }
        moved as usize
    }
}

/// The console input state: the focus, the Ctrl-A detector and each slot's queue.
pub struct ConsoleInput {
    /// The UART's receive interrupt, once input is enabled.
    pub intid: Option<u32>,
    /// The domain slot that gets keystrokes.
    pub focus: Option<usize>,
    /// Ctrl-A x3 recognition.
    pub detector: SwitchDetector,
    /// Per-slot input waiting for ring space.
    pub pending: [Pending; MAX_DOMAINS],
}

impl Default for ConsoleInput {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleInput {
    /// Input disabled, no focus.
    pub const fn new() -> Self {
        Self {
            intid: None,
            focus: None,
            detector: SwitchDetector::new(),
            pending: [const { Pending::new() }; MAX_DOMAINS],
        }
    }

    /// Feeds input bytes: queues what is for the focused domain, and switches the focus
    /// (with `live` telling which slots may get it) on Ctrl-A x3. Returns whether the
    /// focus switched (possibly to the same domain, when it is the only one).
    pub fn feed(&mut self, bytes: &[u8], live: impl Fn(usize) -> bool) -> bool {
        let mut switched = false;
        for &byte in bytes {
            match self.detector.push(byte) {
                Key::Held => {}
                Key::Switch => {
                    self.focus = next_focus(self.focus, &live);
                    switched = true;
                }
                Key::Deliver { held, byte } => {
                    let Some(pending) = self.focus.and_then(|slot| self.pending.get_mut(slot))
                    else {
                        continue;
                    };
                    for _ in 0..held {
                        pending.push(SWITCH_BYTE);
                    }
                    pending.push(byte);
                }
            }
        }
        switched
    }

    /// Slot `slot`'s domain ended: its queue is dropped and, if it had the focus, the
    /// focus moves to the next live domain. Returns whether the focus moved.
    pub fn domain_ended(&mut self, slot: usize, live: impl Fn(usize) -> bool) -> bool {
        if let Some(pending) = self.pending.get_mut(slot) {
            pending.clear();
        }
        if self.focus != Some(slot) {
            return false;
        }
        self.focus = next_focus(Some(slot), |other| other != slot && live(other));
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn classify(bytes: &[u8]) -> Vec<Key> {
        let mut detector = SwitchDetector::new();
        bytes.iter().map(|&byte| detector.push(byte)).collect()
    }

    #[test]
    fn three_ctrl_a_switch() {
        assert_eq!(
            classify(&[1, 1, 1, b'x']),
            [
                Key::Held,
                Key::Held,
                Key::Switch,
                Key::Deliver {
                    held: 0,
                    byte: b'x'
                }
            ]
        );
        // Six in a row: two switches.
        let keys = classify(&[1; 6]);
        assert_eq!(keys.iter().filter(|key| **key == Key::Switch).count(), 2);
    }

    #[test]
    fn fewer_ctrl_a_are_delivered_before_the_next_key() {
        assert_eq!(
            classify(&[1, b'a']),
            [
                Key::Held,
                Key::Deliver {
                    held: 1,
                    byte: b'a'
                }
            ]
        );
        assert_eq!(
            classify(&[1, 1, b'b', 1]),
            [
                Key::Held,
                Key::Held,
                Key::Deliver {
                    held: 2,
                    byte: b'b'
                },
                Key::Held
            ]
        );
    }

    #[test]
    fn focus_cycles_through_live_slots() {
        let live = |slot: usize| [0, 2, 5].contains(&slot);
        assert_eq!(next_focus(None, live), Some(0));
        assert_eq!(next_focus(Some(0), live), Some(2));
        assert_eq!(next_focus(Some(2), live), Some(5));
        assert_eq!(next_focus(Some(5), live), Some(0));
        assert_eq!(next_focus(Some(0), |slot| slot == 0), Some(0));
        assert_eq!(next_focus(Some(3), |_| false), None);
    }

    fn queued(input: &ConsoleInput, slot: usize) -> Vec<u8> {
        input.pending[slot].bytes.iter().copied().collect()
    }

    #[test]
    fn feed_routes_bytes_to_the_focus_and_switches() {
        let mut input = ConsoleInput::new();
        input.focus = Some(0);
        let live = |slot: usize| slot < 2;
        assert!(!input.feed(b"A-text\r", live));
        assert!(input.feed(&[1, 1, 1], live));
        assert_eq!(input.focus, Some(1));
        assert!(!input.feed(b"B\x01x", live));
        assert_eq!(queued(&input, 0), b"A-text\r");
        assert_eq!(queued(&input, 1), b"B\x01x");
        // Ctrl-A split across calls still counts.
        input.feed(&[1], live);
        input.feed(&[1, 1], live);
        assert_eq!(input.focus, Some(0));
    }

    #[test]
    fn an_ended_focus_moves_on_and_drops_its_queue() {
        let mut input = ConsoleInput::new();
        input.focus = Some(1);
        input.feed(b"lost", |_| true);
        assert!(input.domain_ended(1, |slot| slot <= 2));
        assert_eq!(input.focus, Some(2));
        assert!(input.pending[1].is_empty());
        assert!(!input.domain_ended(0, |slot| slot == 2));
        assert_eq!(input.focus, Some(2));
        assert!(input.domain_ended(2, |slot| slot == 2));
        assert_eq!(input.focus, None);
        // With no focus, input goes nowhere.
        assert!(!input.feed(b"x", |_| false));
        assert!(input.pending.iter().all(Pending::is_empty));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut pending = Pending::new();
        for _ in 0..PENDING_CAPACITY {
            assert!(pending.push(b'x'));
        }
        assert!(!pending.push(b'y'));
        assert!(!pending.push(b'z'));
        assert_eq!(pending.dropped, 2);
        assert_eq!(pending.len(), PENDING_CAPACITY);
    }
}
