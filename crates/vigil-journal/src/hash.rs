//! The two hash functions journal files use for their data hash table: SipHash-2-4 keyed
//! with the file ID (`KEYED-HASH` files, systemd 246 and later) and Bob Jenkins' lookup3
//! `hashlittle2` folded to 64 bits (older files). Both are checked against the hashes that
//! a real journald stored in its data objects (tests/real_files.rs).

/// SipHash-2-4 of `data` with the 16-byte `key` (systemd's `siphash24()`).
pub fn siphash24(data: &[u8], key: &[u8; 16]) -> u64 {
    let k0 = u64::from_le_bytes(word8(&key[..8]));
    let k1 = u64::from_le_bytes(word8(&key[8..]));
    let mut v0 = k0 ^ 0x736f_6d65_7073_6575;
    let mut v1 = k1 ^ 0x646f_7261_6e64_6f6d;
    let mut v2 = k0 ^ 0x6c79_6765_6e65_7261;
    let mut v3 = k1 ^ 0x7465_6462_7974_6573;
    let round = |v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64| {
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    };
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let m = u64::from_le_bytes(word8(chunk));
        v3 ^= m;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    // The length's low byte goes into the top byte of the last word.
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v3 ^= m;
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^= m;
    v2 ^= 0xff;
    for _ in 0..4 {
        round(&mut v0, &mut v1, &mut v2, &mut v3);
    }
    v0 ^ v1 ^ v2 ^ v3
}

fn word8(b: &[u8]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    w
}

fn word4(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w)
}

/// systemd's `jenkins_hash64()`: lookup3 `hashlittle2` with both seeds 0, the primary
/// result in the high half.
pub fn jenkins64(data: &[u8]) -> u64 {
    let (c, b) = hashlittle2(data, 0, 0);
    (u64::from(c) << 32) | u64::from(b)
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn finish(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// lookup3's `hashlittle2`: returns (primary `c`, secondary `b`).
fn hashlittle2(key: &[u8], pc: u32, pb: u32) -> (u32, u32) {
    let init = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(pc);
    let (mut a, mut b, mut c) = (init, init, init.wrapping_add(pb));
    let mut rest = key;
    while rest.len() > 12 {
        a = a.wrapping_add(word4(&rest[0..]));
        b = b.wrapping_add(word4(&rest[4..]));
        c = c.wrapping_add(word4(&rest[8..]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    if rest.is_empty() {
        // Only a zero-length key gets here: it needs no final mixing.
        return (c, b);
    }
    let mut last = [0u8; 12];
    last[..rest.len()].copy_from_slice(rest);
    a = a.wrapping_add(word4(&last[0..]));
    b = b.wrapping_add(word4(&last[4..]));
    c = c.wrapping_add(word4(&last[8..]));
    finish(&mut a, &mut b, &mut c);
    (c, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_reference_vector() {
        // The SipHash paper's test vector: key 00..0f, message 00..0e.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(&msg, &key), 0xa129_ca61_49be_45e5);
        // And the empty message from the reference implementation's vectors.
        assert_eq!(siphash24(b"", &key), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn lookup3_reference_values() {
        // lookup3.c's driver5(): hashlittle2("", 0, 0) is (deadbeef, deadbeef) and
        // "Four score and seven years ago" with seeds (0, 0) is (17770551, ce7226e6).
        assert_eq!(hashlittle2(b"", 0, 0), (0xdead_beef, 0xdead_beef));
        assert_eq!(
            hashlittle2(b"Four score and seven years ago", 0, 0),
            (0x1777_0551, 0xce72_26e6)
        );
        assert_eq!(hashlittle2(b"", 0, 0xdead_beef), (0xbd5b_7dde, 0xdead_beef));
        assert_eq!(
            hashlittle2(b"", 0xdead_beef, 0xdead_beef),
            (0x9c09_3ccd, 0xbd5b_7dde)
        );
        assert_eq!(
            hashlittle2(b"Four score and seven years ago", 0, 1),
            (0xe360_7cae, 0xbd37_1de4)
        );
        assert_eq!(
            hashlittle2(b"Four score and seven years ago", 1, 0),
            (0xcd62_8161, 0x6cbe_a4b3)
        );
    }
}
