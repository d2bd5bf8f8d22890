//! Which replica owns a target when the exporter runs as `--total-shards=M` replicas
//! (docs/collection.md, "Sharding"), and the stable hash behind it (also used for the refresh
//! phases). The hash is part of the exporter's contract with its operators: it must never
//! change between versions, or a rolling upgrade would move targets between shards. It is
//! 64-bit FNV-1a over `account`, a 0 byte, `kind` (`pool` or `card`), a 0 byte and the id (pool
//! code or ICCID), finished with the SplitMix64 mixer so that ids differing only in their last
//! digits spread evenly; the owner is that value modulo M. The unit tests pin known values.

/// A replica's place among the shards: `shard` in `0..total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub shard: u32,
    pub total: u32,
}

impl Default for Shard {
    /// One replica owning everything.
    fn default() -> Self {
        Self { shard: 0, total: 1 }
    }
}

impl Shard {
    /// `shard` of `total` (1 ≤ total, shard < total).
    pub fn new(shard: u32, total: u32) -> Result<Self, String> {
        if total == 0 {
            return Err("--total-shards must be at least 1".into());
        }
        if shard >= total {
            return Err(format!(
                "--shard={shard} is out of range for --total-shards={total} (shards are numbered 0 to {})",
                total - 1
            ));
        }
        Ok(Self { shard, total })
    }

    /// Whether this replica owns the target.
    pub fn owns(self, account: &str, kind: &str, id: &str) -> bool {
        self.total <= 1 || shard_of(account, kind, id, self.total) == self.shard
    }

    /// Whether the exporter runs as several shards.
    pub(crate) fn is_sharded(self) -> bool {
        self.total > 1
    }
}

/// The stable hash of a target (see the module documentation).
pub(crate) fn target_hash(account: &str, kind: &str, id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for part in [
        account.as_bytes(),
        &[0],
        kind.as_bytes(),
        &[0],
        id.as_bytes(),
    ] {
        for b in part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    }
    splitmix64(h)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shard (in `0..total`) that owns a target.
pub(crate) fn shard_of(account: &str, kind: &str, id: &str, total: u32) -> u32 {
    u32::try_from(target_hash(account, kind, id) % u64::from(total.max(1))).unwrap_or(0)
}

/// A shard given as a number, or as a StatefulSet pod name whose ordinal is the number after
/// its last `-` (`tibiot-exporter-2` → 2).
pub(crate) fn parse_shard(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let digits = s.rsplit_once('-').map_or(s, |(_, n)| n);
    digits.parse::<u32>().map_err(|_| {
        format!("--shard: {s:?} is neither a number nor a pod name ending in -<number>")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These values are the contract: if this test fails, the hash changed and a rolling
    /// upgrade would move targets between shards.
    #[test]
    fn the_hash_is_stable() {
        assert_eq!(target_hash("", "", ""), 0x6382_5673_27bf_3b67);
        assert_eq!(
            target_hash("main", "pool", "POOL-0001"),
            0x562f_5fd7_9715_5a80
        );
        assert_eq!(
            target_hash("main", "card", "89860000000000000001"),
            0x9627_33c0_de3e_b017
        );
        assert_eq!(shard_of("main", "pool", "POOL-0001", 3), 2);
    }

    #[test]
    fn shards_partition_and_spread() {
        let total = 4;
        let mut counts = [0u32; 4];
        for i in 0..10_000 {
            let id = format!("898600000000{i:08}");
            let owners: Vec<u32> = (0..total)
                .filter(|s| Shard::new(*s, total).unwrap().owns("main", "card", &id))
                .collect();
            assert_eq!(owners.len(), 1, "{id} owned by {owners:?}");
            counts[owners[0] as usize] += 1;
        }
        for c in counts {
            assert!((2200..2800).contains(&c), "uneven: {counts:?}");
        }
        assert!(Shard::default().owns("a", "pool", "x"));
    }

    #[test]
    fn flags() {
        assert_eq!(parse_shard("2"), Ok(2));
        assert_eq!(parse_shard("tibiot-exporter-11"), Ok(11));
        assert!(parse_shard("tibiot").is_err());
        assert!(Shard::new(2, 2).is_err());
        assert!(Shard::new(0, 0).is_err());
        assert_eq!(Shard::new(1, 2), Ok(Shard { shard: 1, total: 2 }));
    }
}
