//! Error numbers returned (negated) in `x0`, from Xen's `public/errno.h`.
//!
//! Xen's values equal x86 Linux's. `EINTR` (4) and `ERESTART` (85) are left out on
//! purpose: Xen marks them internal and never returns them to a guest.

/// An error a hypercall can return. The discriminant is the positive errno value; the
/// guest sees its negation, sign-extended to 64 bits, in `x0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Errno {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory (for example: no such vCPU or parameter).
    ENOENT = 2,
    /// No such process (for example: no such domain).
    ESRCH = 3,
    /// I/O error.
    EIO = 5,
    /// No such device or address.
    ENXIO = 6,
    /// Argument list too long.
    E2BIG = 7,
    /// Exec format error.
    ENOEXEC = 8,
    /// Bad file number (for example: bad event-channel port).
    EBADF = 9,
    /// No child processes.
    ECHILD = 10,
    /// Try again.
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address (a guest pointer could not be accessed).
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// File exists.
    EEXIST = 17,
    /// Cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// Invalid argument.
    EINVAL = 22,
    /// File table overflow.
    ENFILE = 23,
    /// Too many open files.
    EMFILE = 24,
    /// No space left on device (for example: no free event-channel port).
    ENOSPC = 28,
    /// Too many links.
    EMLINK = 31,
    /// Math argument out of domain of function.
    EDOM = 33,
    /// Math result not representable.
    ERANGE = 34,
    /// Resource deadlock would occur.
    EDEADLK = 35,
    /// File name too long.
    ENAMETOOLONG = 36,
    /// No record locks available.
    ENOLCK = 37,
    /// Function not implemented: unknown hypercall or sub-op.
    ENOSYS = 38,
    /// Invalid request code.
    EBADRQC = 56,
    /// Invalid slot.
    EBADSLT = 57,
    /// No data available.
    ENODATA = 61,
    /// Timer expired.
    ETIME = 62,
    /// Not a data message.
    EBADMSG = 74,
    /// Value too large for defined data type.
    EOVERFLOW = 75,
    /// Illegal byte sequence.
    EILSEQ = 84,
    /// Too many users.
    EUSERS = 87,
    /// Socket operation on non-socket.
    ENOTSOCK = 88,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    EADDRNOTAVAIL = 99,
    /// No buffer space available.
    ENOBUFS = 105,
    /// Transport endpoint is already connected.
    EISCONN = 106,
    /// Transport endpoint is not connected.
    ENOTCONN = 107,
    /// Cannot send after transport endpoint shutdown.
    ESHUTDOWN = 108,
    /// Too many references.
    ETOOMANYREFS = 109,
    /// Connection timed out.
    ETIMEDOUT = 110,
}

impl Errno {
    /// Every value, in ascending order (used by tests and the C header generator).
    pub const ALL: [Errno; 46] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EIO,
        Errno::ENXIO,
        Errno::E2BIG,
        Errno::ENOEXEC,
        Errno::EBADF,
        Errno::ECHILD,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EACCES,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::EXDEV,
        Errno::ENODEV,
        Errno::EINVAL,
        Errno::ENFILE,
        Errno::EMFILE,
        Errno::ENOSPC,
        Errno::EMLINK,
        Errno::EDOM,
        Errno::ERANGE,
        Errno::EDEADLK,
        Errno::ENAMETOOLONG,
        Errno::ENOLCK,
        Errno::ENOSYS,
        Errno::EBADRQC,
        Errno::EBADSLT,
        Errno::ENODATA,
        Errno::ETIME,
        Errno::EBADMSG,
        Errno::EOVERFLOW,
        Errno::EILSEQ,
        Errno::EUSERS,
        Errno::ENOTSOCK,
        Errno::EOPNOTSUPP,
        Errno::EADDRINUSE,
        Errno::EADDRNOTAVAIL,
        Errno::ENOBUFS,
        Errno::EISCONN,
        Errno::ENOTCONN,
        Errno::ESHUTDOWN,
        Errno::ETOOMANYREFS,
        Errno::ETIMEDOUT,
    ];

    /// The positive errno value.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The value the hypervisor places in `x0`: `-code`, sign-extended to 64 bits.
    pub const fn to_return(self) -> u64 {
        (-(self.code() as i64)) as u64
    }

    /// The errno for a positive errno value, if it is one Xen returns to guests.
    pub fn from_code(code: i32) -> Option<Errno> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// Interprets a hypercall result in `x0`.
    ///
    /// Returns `None` for success values (zero and positive results such as counts or
    /// versions) and for negative values that are not a known errno. Like Xen's callers
    /// on arm64, only the full 64-bit sign-extended value is accepted: `0xFFFF_FFEA`
    /// (a zero-extended `-22`) is not an errno.
    pub fn from_return(x0: u64) -> Option<Errno> {
        let value = x0 as i64;
        if value >= 0 {
            return None;
        }
        let code = i32::try_from(value.checked_neg()?).ok()?;
        Self::from_code(code)
    }

    /// Xen's name for the value, e.g. `"EINVAL"`.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EIO => "EIO",
            Errno::ENXIO => "ENXIO",
            Errno::E2BIG => "E2BIG",
            Errno::ENOEXEC => "ENOEXEC",
            Errno::EBADF => "EBADF",
            Errno::ECHILD => "ECHILD",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::EXDEV => "EXDEV",
            Errno::ENODEV => "ENODEV",
            Errno::EINVAL => "EINVAL",
            Errno::ENFILE => "ENFILE",
            Errno::EMFILE => "EMFILE",
            Errno::ENOSPC => "ENOSPC",
            Errno::EMLINK => "EMLINK",
            Errno::EDOM => "EDOM",
            Errno::ERANGE => "ERANGE",
            Errno::EDEADLK => "EDEADLK",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::ENOLCK => "ENOLCK",
            Errno::ENOSYS => "ENOSYS",
            Errno::EBADRQC => "EBADRQC",
            Errno::EBADSLT => "EBADSLT",
            Errno::ENODATA => "ENODATA",
            Errno::ETIME => "ETIME",
            Errno::EBADMSG => "EBADMSG",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EILSEQ => "EILSEQ",
            Errno::EUSERS => "EUSERS",
            Errno::ENOTSOCK => "ENOTSOCK",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EADDRINUSE => "EADDRINUSE",
            Errno::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            Errno::ENOBUFS => "ENOBUFS",
            Errno::EISCONN => "EISCONN",
            Errno::ENOTCONN => "ENOTCONN",
            Errno::ESHUTDOWN => "ESHUTDOWN",
            Errno::ETOOMANYREFS => "ETOOMANYREFS",
            Errno::ETIMEDOUT => "ETIMEDOUT",
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// Turns a hypercall result into `Ok(value)` or `Err(errno)`.
///
/// A negative value that is not a known errno is reported as [`Errno::EINVAL`]
/// rather than passed off as success, so a caller never mistakes garbage for a result.
pub fn result_from_return(x0: u64) -> Result<u64, Errno> {
    if (x0 as i64) >= 0 {
        Ok(x0)
    } else {
        Err(Errno::from_return(x0).unwrap_or(Errno::EINVAL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_xen_public_errno_h() {
        assert_eq!(Errno::EPERM.code(), 1);
        assert_eq!(Errno::ENXIO.code(), 6);
        assert_eq!(Errno::EAGAIN.code(), 11);
        assert_eq!(Errno::EFAULT.code(), 14);
        assert_eq!(Errno::EINVAL.code(), 22);
        assert_eq!(Errno::ENOSPC.code(), 28);
        assert_eq!(Errno::ENOSYS.code(), 38);
        assert_eq!(Errno::ENODATA.code(), 61);
        assert_eq!(Errno::EOVERFLOW.code(), 75);
        assert_eq!(Errno::EOPNOTSUPP.code(), 95);
        assert_eq!(Errno::ETIMEDOUT.code(), 110);
    }

    #[test]
    fn all_is_sorted_unique_and_complete() {
        for pair in Errno::ALL.windows(2) {
            assert!(pair[0].code() < pair[1].code());
        }
        for e in Errno::ALL {
            assert_eq!(Errno::from_code(e.code()), Some(e));
        }
    }

    #[test]
    fn round_trip_through_x0() {
        for e in Errno::ALL {
            let x0 = e.to_return();
            assert_eq!(x0 as i64, -(e.code() as i64));
            assert_eq!(Errno::from_return(x0), Some(e));
            assert_eq!(result_from_return(x0), Err(e));
        }
        assert_eq!(Errno::ENOSYS.to_return(), 0xFFFF_FFFF_FFFF_FFDA);
    }

    #[test]
    fn non_errno_returns() {
        assert_eq!(Errno::from_return(0), None);
        assert_eq!(Errno::from_return(38), None);
        assert_eq!(
            Errno::from_return((-4i64) as u64),
            None,
            "EINTR is internal"
        );
        assert_eq!(
            Errno::from_return((-85i64) as u64),
            None,
            "ERESTART is internal"
        );
        assert_eq!(Errno::from_return((-1000i64) as u64), None);
        assert_eq!(Errno::from_return(0xFFFF_FFEA), None, "not sign-extended");
        assert_eq!(Errno::from_return(i64::MIN as u64), None);
        assert_eq!(result_from_return(7), Ok(7));
        assert_eq!(result_from_return((-1000i64) as u64), Err(Errno::EINVAL));
    }
}
