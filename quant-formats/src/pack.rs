//! Packing of sub-byte codes into bytes, low bits first (ONNX packs int4/uint4/fp4 two per byte
//! with the first element in the low nibble, and int2/uint2 four per byte the same way). Any
//! width 1..=16 is accepted: codes form a little-endian bit stream.

use crate::FormatError;

/// Packs `codes` of `bits` bits each into a little-endian bit stream (last byte zero-padded).
pub fn pack_codes(codes: &[u32], bits: u32) -> Result<Vec<u8>, FormatError> {
    if !(1..=16).contains(&bits) {
        return Err(FormatError::Pack(format!(
            "code width must be 1..=16 bits, got {bits}"
        )));
    }
    let mask = (1u32 << bits) - 1;
    let mut out = vec![0u8; (codes.len() * bits as usize).div_ceil(8)];
    let mut acc: u64 = 0;
    let mut nacc = 0u32;
    let mut pos = 0usize;
    for (i, &c) in codes.iter().enumerate() {
        if c & !mask != 0 {
            return Err(FormatError::Pack(format!(
                "code {c:#x} at index {i} does not fit in {bits} bits"
            )));
        }
        acc |= u64::from(c) << nacc;
        nacc += bits;
        while nacc >= 8 {
            out[pos] = acc as u8;
            pos += 1;
            acc >>= 8;
            nacc -= 8;
        }
    }
    if nacc > 0 {
        out[pos] = acc as u8;
    }
    Ok(out)
}

/// Unpacks `count` codes of `bits` bits from a stream written by [`pack_codes`].
pub fn unpack_codes(bytes: &[u8], bits: u32, count: usize) -> Result<Vec<u32>, FormatError> {
    if !(1..=16).contains(&bits) {
        return Err(FormatError::Pack(format!(
            "code width must be 1..=16 bits, got {bits}"
        )));
    }
    let need = (count * bits as usize).div_ceil(8);
    if bytes.len() < need {
        return Err(FormatError::Pack(format!(
            "{count} codes of {bits} bits need {need} bytes, got {}",
            bytes.len()
        )));
    }
    let mask = (1u64 << bits) - 1;
    let mut out = Vec::with_capacity(count);
    let mut acc: u64 = 0;
    let mut nacc = 0u32;
    let mut it = bytes.iter();
    for _ in 0..count {
        while nacc < bits {
            acc |= u64::from(*it.next().unwrap_or(&0)) << nacc;
            nacc += 8;
        }
        out.push((acc & mask) as u32);
        acc >>= bits;
        nacc -= bits;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int4_low_nibble_first() {
        assert_eq!(
            pack_codes(&[0x1, 0x2, 0xf], 4).expect("pack"),
            vec![0x21, 0x0f]
        );
        assert_eq!(
            pack_codes(&[1, 2, 3, 0], 2).expect("pack"),
            vec![0b0011_1001]
        );
        assert!(pack_codes(&[16], 4).is_err());
        let codes: Vec<u32> = (0..37).map(|i| (i * 7) % 64).collect();
        let p = pack_codes(&codes, 6).expect("pack");
        assert_eq!(p.len(), (37 * 6usize).div_ceil(8));
        assert_eq!(unpack_codes(&p, 6, 37).expect("unpack"), codes);
        assert!(unpack_codes(&p, 6, 40).is_err());
    }
}
