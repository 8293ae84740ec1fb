//! The hypervisor-side hypercall decoder (`hypercall_abi::decode`): `decode` of
//! `HVC #0xEA1` registers and `decode_smccc` of `HVC #0` registers, on arbitrary values.
//!
//! Invariants: nothing panics; unknown numbers are `-ENOSYS`; every errno encodes as a
//! Xen return value in -4095..=-1 and decodes back; only the registers Xen reads matter
//! (x3 and x4 never, the upper half of a 32-bit command never, except for `memory_op`
//! and `hvm_op` whose command is an `unsigned long`); SMCCC looks at `w0` only.
#![no_main]

use hypercall_abi::decode::{decode, decode_smccc, encode_result, Call, HypercallArgs};
use hypercall_abi::errno::Errno;
use hypercall_abi::hypercall as number;
use libfuzzer_sys::fuzz_target;

const KNOWN: [u64; 15] = [
    number::PLATFORM_OP,
    number::MEMORY_OP,
    number::MULTICALL,
    number::XEN_VERSION,
    number::CONSOLE_IO,
    number::GRANT_TABLE_OP,
    number::VM_ASSIST,
    number::VCPU_OP,
    number::SCHED_OP,
    number::EVENT_CHANNEL_OP,
    number::PHYSDEV_OP,
    number::HVM_OP,
    number::SYSCTL,
    number::DOMCTL,
    number::DM_OP,
];

fuzz_target!(|input: (u8, u64, [u64; 5], [u64; 3])| {
    let (small_number, wide_number, args, noise) = input;
    // Mostly numbers in Xen's range, sometimes anything.
    let call_number = if small_number < 240 {
        u64::from(small_number % 64)
    } else {
        wide_number
    };
    let registers = HypercallArgs {
        number: call_number,
        args,
    };
    let result = decode(&registers);
    if let Err(errno) = result {
        let x0 = encode_result(Err(errno));
        assert!(
            (-4095..=-1).contains(&(x0 as i64)),
            "{errno:?} encodes as {x0:#x}"
        );
        assert_eq!(Errno::from_return(x0), Some(errno));
    }
    if !KNOWN.contains(&call_number) {
        assert_eq!(result, Err(Errno::ENOSYS));
    }
    if let Ok(Call::Unsupported(errno)) = result {
        assert_eq!(errno, Errno::ENOSYS);
    }

    // x3 and x4 are never looked at.
    let mut other = registers;
    other.args[3] ^= noise[0];
    other.args[4] ^= noise[1];
    assert_eq!(decode(&other), result);
    // Nor the upper half of x0, except where the command is an unsigned long.
    if call_number != number::MEMORY_OP && call_number != number::HVM_OP {
        let mut other = registers;
        other.args[0] ^= noise[2] << 32;
        assert_eq!(decode(&other), result);
    }

    let smccc = decode_smccc(args[0], [args[1], args[2], args[3]]);
    assert_eq!(
        decode_smccc(args[0] ^ (noise[0] << 32), [args[1], args[2], args[3]]),
        smccc
    );
});
