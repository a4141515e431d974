//! `--memory-budget SIZE` (SPEC §8): the peak resident memory a command may use, in binary
//! units (`512MiB`, `1GiB`, `2GiB`); 2 GiB when not given; below 256 MiB refused (exit 2, as
//! every usage error).

use std::fmt;
use std::str::FromStr;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// A memory budget in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemoryBudget(u64);

impl MemoryBudget {
    /// The budget when none is given.
    pub const DEFAULT: MemoryBudget = MemoryBudget(2 * GIB);
    /// The smallest budget accepted: below it the fixed costs (the small files, the windows
    /// being checked, the allocator) leave nothing for the month.
    pub const MIN: MemoryBudget = MemoryBudget(256 * MIB);

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::DEFAULT
    }
}

impl FromStr for MemoryBudget {
    type Err = String;

    /// Digits then a binary unit, `KiB`, `MiB`, `GiB` or `TiB` (any case), e.g. `1GiB`.
    fn from_str(text: &str) -> Result<MemoryBudget, String> {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let unit_bytes = match unit.to_ascii_lowercase().as_str() {
            "kib" => KIB,
            "mib" => MIB,
            "gib" => GIB,
            "tib" => TIB,
            _ => {
                return Err(format!(
                    "{text:?} is not a size: write digits and a binary unit, e.g. 512MiB, 1GiB or 2GiB"
                ));
            }
        };
        let bytes = digits
            .parse::<u64>()
            .ok()
            .filter(|_| !digits.is_empty())
            .and_then(|n| n.checked_mul(unit_bytes))
            .ok_or_else(|| format!("{text:?} is not a size this machine can have"))?;
        let budget = MemoryBudget(bytes);
        if budget < MemoryBudget::MIN {
            return Err(format!(
                "{text} is below the smallest budget, 256MiB: the small files, the windows being checked and the allocator need that much whatever the month's size"
            ));
        }
        Ok(budget)
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b if b % GIB == 0 => write!(f, "{}GiB", b / GIB),
            b if b % MIB == 0 => write!(f, "{}MiB", b / MIB),
            b => write!(f, "{}KiB", b / KIB),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_and_at_least_256_mib() {
        let b = |t: &str| t.parse::<MemoryBudget>().map(MemoryBudget::bytes);
        assert_eq!(b("512MiB"), Ok(512 * 1024 * 1024));
        assert_eq!(b("1GiB"), Ok(1 << 30));
        assert_eq!(b("2gib"), Ok(2 << 30));
        assert_eq!(b("262144KiB"), Ok(256 << 20));
        assert!(b("255MiB").unwrap_err().contains("256MiB"));
        for bad in [
            "1GB",
            "1 GiB",
            "GiB",
            "1.5GiB",
            "-1GiB",
            "",
            "99999999999TiB",
        ] {
            assert!(b(bad).is_err(), "{bad}");
        }
        assert_eq!(MemoryBudget::DEFAULT.to_string(), "2GiB");
        assert_eq!(
            "1536MiB".parse::<MemoryBudget>().unwrap().to_string(),
            "1536MiB"
        );
    }
}
