//! Seeded mutation of real inputs, for the bounded fuzz tests of the parsers that face
//! untrusted bytes (this crate's `fuzz_tests` and the binary's Batch API and job
//! envelope tests): `cargo fuzz` needs a nightly toolchain, which these machines lack.

/// `input` with a few random mutations: bit flips, byte insertions and deletions,
/// truncations, splices of another of `seeds`, and structure-breaking tokens.
pub fn mutate(rng: &mut fastrand::Rng, input: &[u8], seeds: &[&[u8]]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.usize(1..8) {
        match rng.u8(0..6) {
            0 if !v.is_empty() => {
                let i = rng.usize(0..v.len());
                v[i] ^= 1 << rng.u8(0..8);
            }
            1 => {
                let i = rng.usize(0..=v.len());
                v.insert(i, rng.u8(..));
            }
            2 if !v.is_empty() => {
                let i = rng.usize(0..v.len());
                v.remove(i);
            }
            3 if !v.is_empty() => {
                let cut = rng.usize(0..v.len());
                v.truncate(cut);
            }
            4 => {
                // splice a piece of another seed
                let other = seeds.get(rng.usize(0..seeds.len().max(1))).copied().unwrap_or_default();
                if !other.is_empty() {
                    let a = rng.usize(0..other.len());
                    let b = rng.usize(a..=other.len().min(a + 64));
                    let at = rng.usize(0..=v.len());
                    v.splice(at..at, other[a..b].iter().copied());
                }
            }
            _ => {
                // structure-breaking bytes parsers must survive
                let tokens: &[&[u8]] =
                    &[b"{", b"}", b"[", b"]", b"\"", b"\\u", b"\n\n", b"data: ", b"\xff", b"\xe2\x80", b"0e999999"];
                let t = tokens[rng.usize(0..tokens.len())];
                let at = rng.usize(0..=v.len());
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v
}
