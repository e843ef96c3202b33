//! Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `2Gi`, `1e3`).
//!
//! Parsed exactly (integer arithmetic in nano-units), then rounded *up* to the
//! unit we compute with, as the API server does for sub-milli values.

use serde::Serialize;
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    pub input: String,
    pub reason: &'static str,
}

/// A parsed, non-negative quantity in nano-units (value × 10⁹).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    nanos: u128,
}

const NANO: u128 = 1_000_000_000;

impl Quantity {
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let err = |reason| QuantityError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let s = match s.strip_prefix('+') {
            Some(rest) => rest,
            None if s.starts_with('-') => return Err(err("negative quantities are not allowed")),
            None => s,
        };
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_end);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err("no digits"));
        }
        if frac_part.contains('.') {
            return Err(err("more than one decimal point"));
        }
        let digits: String = format!("{int_part}{frac_part}");
        let mantissa: u128 = digits.parse().map_err(|_| err("number too large"))?;
        // value = mantissa × 10^(exp10) × 2^(exp2)
        let mut exp10: i32 = -(frac_part.len() as i32);
        let mut exp2: u32 = 0;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            other => {
                let exp = other
                    .strip_prefix(['e', 'E'])
                    .ok_or_else(|| err("unknown suffix (expected n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent)"))?;
                let exp: i32 = exp.parse().map_err(|_| err("bad exponent"))?;
                if exp.abs() > 30 {
                    return Err(err("exponent out of range"));
                }
                exp10 += exp;
            }
        }
        exp10 += 9; // to nano-units
        let too_large = || err("number too large");
        let mut nanos = mantissa.checked_mul(1u128 << exp2).ok_or_else(too_large)?;
        if exp10 >= 0 {
            nanos = nanos
                .checked_mul(10u128.checked_pow(exp10 as u32).ok_or_else(too_large)?)
                .ok_or_else(too_large)?;
        } else {
            let div = 10u128
                .checked_pow((-exp10) as u32)
                .ok_or_else(|| err("too many decimal places"))?;
            nanos = nanos.div_ceil(div);
        }
        Ok(Quantity { nanos })
    }

    /// Thousandths of the unit, rounded up (CPU: millicores).
    pub fn milli(self) -> u64 {
        u64::try_from(self.nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// Whole units, rounded up (memory: bytes; pods: count).
    pub fn whole(self) -> u64 {
        u64::try_from(self.nanos.div_ceil(NANO)).unwrap_or(u64::MAX)
    }
}

/// Parse a CPU quantity into millicores.
pub fn parse_cpu(s: &str) -> Result<u64, QuantityError> {
    Quantity::parse(s).map(Quantity::milli)
}

/// Parse a memory quantity into bytes.
pub fn parse_memory(s: &str) -> Result<u64, QuantityError> {
    Quantity::parse(s).map(Quantity::whole)
}

/// Extended resources (`nvidia.com/gpu`, `example.com/dongle`): whole
/// counts by name. Empty for almost every pod and node, so kept apart from
/// [`Resources`] (which stays `Copy`).
pub type Extended = std::collections::BTreeMap<String, u64>;

/// Whether `name` is an extended resource: a domain-qualified name outside
/// the `kubernetes.io` domains (which `hugepages-*` and `ephemeral-storage`
/// are not, having no domain).
pub fn is_extended_resource(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, rest)) => {
            !domain.is_empty()
                && !rest.is_empty()
                && domain != "kubernetes.io"
                && !domain.ends_with(".kubernetes.io")
                && !name.starts_with("requests.")
        }
        None => false,
    }
}

/// The first extended resource `wanted` needs more of than `free` has.
#[inline]
pub fn extended_short<'w>(wanted: &'w Extended, free: &Extended) -> Option<&'w str> {
    if wanted.is_empty() {
        return None; // almost every pod: decided without a walk
    }
    wanted
        .iter()
        .find(|(name, n)| free.get(*name).copied().unwrap_or(0) < **n)
        .map(|(name, _)| name.as_str())
}

/// Take `used` out of `free` (never below zero).
pub fn extended_take(free: &mut Extended, used: &Extended) {
    for (name, n) in used {
        if let Some(f) = free.get_mut(name) {
            *f = f.saturating_sub(*n);
        }
    }
}

/// The resources the scheduler counts: CPU, memory and pod slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Resources {
    pub cpu_milli: u64,
    pub memory_bytes: u64,
    pub pods: u64,
}

impl Resources {
    pub const ZERO: Resources = Resources {
        cpu_milli: 0,
        memory_bytes: 0,
        pods: 0,
    };

    pub const fn new(cpu_milli: u64, memory_bytes: u64, pods: u64) -> Self {
        Resources {
            cpu_milli,
            memory_bytes,
            pods,
        }
    }

    /// Requests of one pod (it takes one pod slot).
    pub const fn pod(cpu_milli: u64, memory_bytes: u64) -> Self {
        Resources::new(cpu_milli, memory_bytes, 1)
    }

    pub fn fits_in(&self, free: &Resources) -> bool {
        self.cpu_milli <= free.cpu_milli && self.memory_bytes <= free.memory_bytes && self.pods <= free.pods
    }

    /// Which resources exceed `capacity` (for "can never fit" reasons).
    pub fn exceeding(&self, capacity: &Resources) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.cpu_milli > capacity.cpu_milli {
            out.push("cpu");
        }
        if self.memory_bytes > capacity.memory_bytes {
            out.push("memory");
        }
        if self.pods > capacity.pods {
            out.push("pods");
        }
        out
    }

    /// The larger of each resource.
    pub fn max_each(&self, other: &Resources) -> Resources {
        Resources {
            cpu_milli: self.cpu_milli.max(other.cpu_milli),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            pods: self.pods.max(other.pods),
        }
    }

    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_milli: self.cpu_milli.saturating_sub(other.cpu_milli),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    /// The larger of the CPU and memory shares of `capacity` used by `self`.
    pub fn dominant_share(&self, capacity: &Resources) -> f64 {
        share(self.cpu_milli, capacity.cpu_milli).max(share(self.memory_bytes, capacity.memory_bytes))
    }
}

pub(crate) fn share(used: u64, total: u64) -> f64 {
    if total == 0 {
        if used == 0 { 0.0 } else { f64::INFINITY }
    } else {
        used as f64 / total as f64
    }
}

impl Add for Resources {
    type Output = Resources;
    fn add(self, o: Resources) -> Resources {
        Resources {
            cpu_milli: self.cpu_milli.saturating_add(o.cpu_milli),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            pods: self.pods.saturating_add(o.pods),
        }
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, o: Resources) {
        *self = *self + o;
    }
}

impl Sub for Resources {
    type Output = Resources;
    fn sub(self, o: Resources) -> Resources {
        self.saturating_sub(&o)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={}m memory={}Mi pods={}",
            self.cpu_milli,
            self.memory_bytes / (1 << 20),
            self.pods
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_cpu_strings() {
        assert_eq!(parse_cpu("250m").unwrap(), 250);
        assert_eq!(parse_cpu("1.5").unwrap(), 1500);
        assert_eq!(parse_cpu("2").unwrap(), 2000);
        assert_eq!(parse_cpu("0.1").unwrap(), 100);
        assert_eq!(parse_cpu(".5").unwrap(), 500);
        assert_eq!(parse_cpu("100u").unwrap(), 1, "sub-milli rounds up");
        assert_eq!(parse_cpu("1e3").unwrap(), 1_000_000);
        assert_eq!(parse_cpu("+1").unwrap(), 1000);
    }

    #[test]
    fn parses_kubernetes_memory_strings() {
        assert_eq!(parse_memory("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_memory("2Gi").unwrap(), 2 << 30);
        assert_eq!(parse_memory("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_memory("128k").unwrap(), 128_000);
        assert_eq!(parse_memory("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_memory("129e6").unwrap(), 129_000_000);
        assert_eq!(parse_memory("1Ei").unwrap(), 1 << 60);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "-1", "5Zi", "1e", "Mi", "1 Gi x", "1e99", "."] {
            let e = Quantity::parse(bad).expect_err(bad);
            assert_eq!(e.input, bad);
        }
        assert!(
            Quantity::parse("-1")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
    }

    #[test]
    fn resources_fit_and_share() {
        let node = Resources::new(2000, 4 << 30, 110);
        let pod = Resources::pod(500, 1 << 30);
        assert!(pod.fits_in(&node));
        assert!(!Resources::pod(2500, 1).fits_in(&node));
        assert_eq!(
            Resources::pod(3000, 8 << 30).exceeding(&node),
            vec!["cpu", "memory"]
        );
        assert!((pod.dominant_share(&node) - 0.25).abs() < 1e-9);
    }
}
