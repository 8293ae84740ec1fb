//! `sched_op` sub-ops (`public/sched.h`).
//!
//! Arguments: `x0` = cmd (32 bits), `x1` = guest virtual address of the argument.

/// `SCHEDOP_yield`: give up the CPU; the vCPU stays runnable. Returns 0.
pub const YIELD: u32 = 0;
/// `SCHEDOP_block`: sleep until an event is pending for this vCPU. Returns 0.
/// Xen unmasks the upcall first; on ARM the guest should have interrupts enabled or
/// test pending events after the call.
pub const BLOCK: u32 = 1;
/// `SCHEDOP_shutdown`: stop the calling domain, argument [`SchedShutdown`].
/// Does not return on success.
pub const SHUTDOWN: u32 = 2;
/// `SCHEDOP_poll`: block until one of the listed ports is pending or the timeout
/// passes, argument [`SchedPoll`].
pub const POLL: u32 = 3;
/// `SCHEDOP_remote_shutdown`: shut down another domain (privileged).
pub const REMOTE_SHUTDOWN: u32 = 4;
/// `SCHEDOP_shutdown_code`: record a shutdown reason without shutting down.
pub const SHUTDOWN_CODE: u32 = 5;
/// `SCHEDOP_watchdog`: create, pet or destroy a domain watchdog, argument
/// [`SchedWatchdog`]. With `id` 0 a new watchdog is created and armed for `timeout`
/// seconds, and its id (1..=[`NR_DOMAIN_WATCHDOG_TIMERS`]) returned (`-ENOSPC` when all
/// are in use); with a nonzero `id`, `timeout` 0 destroys it and any other timeout re-arms
/// it (`-EINVAL` for an id not in use). When one expires the domain shuts down with
/// [`ShutdownReason::Watchdog`].
pub const WATCHDOG: u32 = 6;
/// Watchdogs per domain (Xen's `NR_DOMAIN_WATCHDOG_TIMERS`).
pub const NR_DOMAIN_WATCHDOG_TIMERS: u32 = 2;
/// `SCHEDOP_pin_override`: temporarily pin a vCPU (hardware domain only).
pub const PIN_OVERRIDE: u32 = 7;

/// Why a domain shuts down (`SHUTDOWN_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`: the domain exited normally.
    Poweroff = 0,
    /// `SHUTDOWN_reboot`: restart the domain.
    Reboot = 1,
    /// `SHUTDOWN_suspend`: save and suspend.
    Suspend = 2,
    /// `SHUTDOWN_crash`: the domain crashed.
    Crash = 3,
    /// `SHUTDOWN_watchdog`: the domain's watchdog expired.
    Watchdog = 4,
    /// `SHUTDOWN_soft_reset`: reset the domain without destroying it.
    SoftReset = 5,
}

impl ShutdownReason {
    /// The reason for a raw `SHUTDOWN_*` value; `None` above `SHUTDOWN_MAX` (5).
    pub const fn from_u32(value: u32) -> Option<ShutdownReason> {
        Some(match value {
            0 => ShutdownReason::Poweroff,
            1 => ShutdownReason::Reboot,
            2 => ShutdownReason::Suspend,
            3 => ShutdownReason::Crash,
            4 => ShutdownReason::Watchdog,
            5 => ShutdownReason::SoftReset,
            _ => return None,
        })
    }
}

/// `SHUTDOWN_MAX`: the highest valid reason.
pub const SHUTDOWN_MAX: u32 = 5;

/// Argument of [`SHUTDOWN`] and [`SHUTDOWN_CODE`] (`struct sched_shutdown`, 4 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedShutdown {
    /// A `SHUTDOWN_*` value, see [`ShutdownReason`].
    pub reason: u32,
}
assert_layout!(SchedShutdown, 4, { reason: 0 });

/// Argument of [`POLL`] (`struct sched_poll`, 24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedPoll {
    /// Guest virtual address of an array of `nr_ports` 32-bit ports.
    pub ports: u64,
    /// Number of ports in the array (at most 128 on Xen).
    pub nr_ports: u32,
    /// Absolute system time in ns at which to stop waiting; 0 = no timeout.
    pub timeout: u64,
}
assert_layout!(SchedPoll, 24, { ports: 0, nr_ports: 8, timeout: 16 });

/// Argument of [`REMOTE_SHUTDOWN`] (`struct sched_remote_shutdown`, 8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedRemoteShutdown {
    /// The domain to shut down.
    pub domain_id: u16,
    /// A `SHUTDOWN_*` value.
    pub reason: u32,
}
assert_layout!(SchedRemoteShutdown, 8, { domain_id: 0, reason: 4 });

/// Argument of [`WATCHDOG`] (`struct sched_watchdog`, 8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedWatchdog {
    /// IN/OUT: watchdog id; 0 creates a new one.
    pub id: u32,
    /// Seconds until expiry; 0 destroys the watchdog.
    pub timeout: u32,
}
assert_layout!(SchedWatchdog, 8, { id: 0, timeout: 4 });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_reason_round_trip() {
        for v in 0..=SHUTDOWN_MAX {
            let reason = ShutdownReason::from_u32(v);
            assert_eq!(reason.map(|r| r as u32), Some(v));
        }
        assert_eq!(ShutdownReason::from_u32(6), None);
        assert_eq!(ShutdownReason::from_u32(u32::MAX), None);
    }
}
