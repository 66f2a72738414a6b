//! The fuzzer's mutator: a fixed-seed, std-only source of edits (bit flips, boundary
//! integers and numbers, inserts, deletes, repeats, splices between seeds, dictionary tokens).


/// splitmix64: tiny, std-only, and the same sequence on every machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Sizes that break header arithmetic: zero, one, sign and width boundaries, and the record
/// sizes of the formats.
pub const INTERESTING: [u64; 20] = [
    0,
    1,
    2,
    3,
    4,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xc01,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Decimal numbers for text formats: the same boundaries, plus past u64, negative, and floats.
pub const NUMBERS: [&str; 12] = [
    "0",
    "1",
    "-1",
    "2147483647",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "1e999",
    "0.5",
    "-0",
];

/// Where a mutation lands: half the time in the first 32 bytes, where the headers are.
pub fn offset(rng: &mut Rng, len: usize) -> usize {
    if len == 0 {
        0
    } else if rng.below(2) == 0 {
        rng.below(len.min(32))
    } else {
        rng.below(len)
    }
}

/// Applies one to four random edits to `input`.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>], dict: &[&[u8]]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(13) {
            0 if len > 0 => {
                let at = rng.below(len);
                input[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = offset(rng, len);
                input[at] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                input.drain(at..at + n);
            }
            4 => input.truncate(rng.below(len + 1)),
            5 | 6 if len > 0 => {
                // An interesting integer as u32 or u64, big- or little-endian, over the bytes.
                let v = *rng.pick(&INTERESTING);
                let wide = rng.below(2) == 0;
                let bytes = match (wide, rng.below(2) == 0) {
                    (false, true) => (v as u32).to_be_bytes().to_vec(),
                    (false, false) => (v as u32).to_le_bytes().to_vec(),
                    (true, true) => v.to_be_bytes().to_vec(),
                    (true, false) => v.to_le_bytes().to_vec(),
                };
                let at = offset(rng, len);
                let end = (at + bytes.len()).min(len);
                input.splice(at..end, bytes);
            }
            7 => {
                // Splice: a piece of another seed, inserted or overwriting.
                let other = rng.pick(seeds);
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + 1 + rng.below(other.len() - a);
                    let at = rng.below(len + 1);
                    let end = if rng.below(2) == 0 { at } else { (at + b - a).min(len) };
                    input.splice(at..end, other[a..b].iter().copied());
                }
            }
            8 if len > 0 => {
                // Repeat a chunk many times: long lists, repeated fields and tokens.
                let a = rng.below(len);
                let b = a + 1 + rng.below((len - a).min(32));
                let chunk = input[a..b].to_vec();
                let most = if rng.below(4) == 0 { 2000 } else { 8 };
                let times = 1 + rng.below(most);
                let at = rng.below(len + 1);
                input.splice(at..at, chunk.iter().copied().cycle().take(chunk.len() * times));
            }
            9 if !dict.is_empty() => {
                let token = *rng.pick(dict);
                let at = rng.below(len + 1);
                input.splice(at..at, token.iter().copied());
            }
            10 => {
                // Replace a run of ASCII digits with a boundary number.
                let start = rng.below(len + 1);
                if let Some(i) = input[start..].iter().position(u8::is_ascii_digit) {
                    let a = start + i;
                    let b = a + input[a..].iter().take_while(|c| c.is_ascii_digit()).count();
                    let number = *rng.pick(&NUMBERS);
                    input.splice(a..b, number.bytes());
                }
            }
            11 => {
                // Deep nesting, for recursive-descent parsers and JSON.
                const OPEN: [&[u8]; 5] = [b"[", b"{\"a\":", b"(", b"list(", b"[("];
                let open = *rng.pick(&OPEN);
                let depth = 1 + rng.below(5000);
                let at = rng.below(len + 1);
                input.splice(at..at, open.iter().copied().cycle().take(open.len() * depth));
            }
            12 => {
                let other = rng.pick(seeds);
                input.extend_from_slice(&other[..rng.below(other.len() + 1)]);
            }
            _ => {}
        }
    }
}

