//! Sets of small indices kept as bit masks (CPUs, domain slots, list registers, vCPUs),
//! and the one walk over their members that the hot paths share.

/// The indices of the bits set in `mask`, lowest first: one step per member, not one per
/// possible index (the switch and delivery paths walk such sets, usually almost empty).
pub fn ones(mask: u64) -> impl Iterator<Item = usize> {
    let mut rest = mask;
    core::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let index = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        Some(index)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ones_are_the_set_bits_in_order(mask in any::<u64>()) {
            let walked: Vec<usize> = ones(mask).collect();
            let expected: Vec<usize> = (0..64).filter(|bit| mask & (1 << bit) != 0).collect();
            prop_assert_eq!(walked, expected);
        }
    }
}
