//! CRC-32 (IEEE 802.3): reflected, polynomial 0xEDB88320, initial value and final XOR
//! 0xFFFFFFFF. The checksum of the boot pack.

/// The reflected IEEE polynomial.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// One entry per byte value, built at compile time.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut value = index as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 != 0 {
                (value >> 1) ^ POLYNOMIAL
            } else {
                value >> 1
            };
            bit += 1;
        }
        // Constant evaluation: `index` < 256 by the loop, checked at compile time.
        #[allow(clippy::indexing_slicing)]
        {
            table[index] = value;
        }
        index += 1;
    }
    table
}

/// The CRC-32 (IEEE) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut state = 0xFFFF_FFFFu32;
    for &byte in bytes {
        let table_index = ((state ^ u32::from(byte)) & 0xFF) as u8;
        // A `u8` index into a 256-entry table cannot be out of bounds.
        #[allow(clippy::indexing_slicing)]
        let entry = TABLE[usize::from(table_index)];
        state = (state >> 8) ^ entry;
    }
    state ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn empty_and_known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }
}
