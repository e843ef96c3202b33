//! Disruption budgets: how many nodes voluntary removals may disrupt at
//! once, in a pool and in the whole cluster, for which reasons and when
//! (a cron schedule and a duration in a timezone), as Karpenter's
//! NodePool budgets do. A budget of 0 in a schedule is a maintenance
//! window that forbids; the most restrictive active budget wins; nodes
//! already leaving (cordoned) count against it. Spot interruptions are not
//! voluntary and are never held back.

use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a node is voluntarily removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisruptionReason {
    /// No pods to move.
    Empty,
    /// Its pods fit elsewhere and it is under the utilization threshold.
    Underutilized,
    /// Older than its pool's `expire_after`.
    Expired,
    /// Launched with settings its pool no longer has.
    Drifted,
}

impl fmt::Display for DisruptionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DisruptionReason::Empty => "empty",
            DisruptionReason::Underutilized => "underutilized",
            DisruptionReason::Expired => "expired",
            DisruptionReason::Drifted => "drifted",
        })
    }
}

/// How many nodes: a count, or a share of the nodes there are (rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Amount {
    Nodes(u32),
    Percent(u32),
}

impl Amount {
    /// Out of `total` nodes.
    pub fn of(self, total: u32) -> u32 {
        match self {
            Amount::Nodes(n) => n,
            Amount::Percent(p) => (u64::from(total) * u64::from(p)).div_ceil(100) as u32,
        }
    }
}

impl FromStr for Amount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is neither a number of nodes (\"2\") nor a percentage (\"10%\")");
        match s.trim().strip_suffix('%') {
            Some(p) => {
                let p: u32 = p.trim().parse().map_err(|_| bad())?;
                if p > 100 {
                    return Err(format!("{s:?} is more than 100%"));
                }
                Ok(Amount::Percent(p))
            }
            None => s.trim().parse().map(Amount::Nodes).map_err(|_| bad()),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Nodes(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// When a budget applies: from each time `schedule` fires, for `duration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// As written: five fields (minute hour day-of-month month
    /// day-of-week, Sunday 0 or 7) or `@daily`, `@weekly`...
    pub schedule: String,
    #[serde(skip)]
    parsed: jiff_cron::Schedule,
    #[serde(serialize_with = "crate::time::serialize_secs")]
    pub duration: Duration,
    pub timezone: String,
    #[serde(skip)]
    tz: jiff::tz::TimeZone,
}

impl Window {
    /// A window from a five-field cron `schedule` (or a `@` shorthand) in
    /// `timezone` (IANA name; `UTC` if empty), or what is wrong with it.
    pub fn new(schedule: &str, duration: Duration, timezone: &str) -> Result<Window, String> {
        let parsed = parse_schedule(schedule)?;
        let name = if timezone.trim().is_empty() {
            "UTC"
        } else {
            timezone.trim()
        };
        let tz = jiff::tz::TimeZone::get(name).map_err(|e| format!("timezone {name:?}: {e}"))?;
        if duration.is_zero() {
            return Err("duration must be more than 0".into());
        }
        Ok(Window {
            schedule: schedule.trim().to_string(),
            parsed,
            duration,
            timezone: name.to_string(),
            tz,
        })
    }

    /// Whether `now` falls in the window: the schedule fired at most
    /// `duration` before (or exactly now). Returns when it closes.
    pub fn open_until(&self, now: Time) -> Option<Time> {
        let ms = i64::try_from(now.as_millis()).ok()?;
        let at = jiff::Timestamp::from_millisecond(ms)
            .ok()?
            .to_zoned(self.tz.clone());
        // The last firing at or before now: the one before a second later.
        let anchor = at.checked_add(jiff::SignedDuration::from_secs(1)).ok()?;
        let fired = self.parsed.after(anchor).next_back()?;
        let fired_ms = u64::try_from(fired.timestamp().as_millisecond()).ok()?;
        let closes = Time::from_millis(fired_ms) + self.duration;
        (fired_ms <= now.as_millis() && now < closes).then_some(closes)
    }
}

/// A standard cron line for `jiff_cron`, which wants seconds first and
/// counts days of the week from Sunday = 1: days of the week are given by
/// name so "1-5" keeps meaning Monday to Friday.
fn parse_schedule(schedule: &str) -> Result<jiff_cron::Schedule, String> {
    let text = schedule.trim();
    if text.starts_with('@') {
        return jiff_cron::Schedule::from_str(text).map_err(|e| format!("{text:?}: {e}"));
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields.as_slice() else {
        return Err(format!(
            "{text:?} has {} fields; a schedule has five (minute hour day-of-month month day-of-week) or is @hourly, @daily, @weekly, @monthly or @yearly",
            fields.len()
        ));
    };
    let dow =
        days_by_name(dow).ok_or_else(|| format!("{text:?}: day of week {dow:?} is not 0-7 or MON-SUN"))?;
    jiff_cron::Schedule::from_str(&format!("0 {minute} {hour} {dom} {month} {dow}"))
        .map_err(|e| format!("{text:?}: {e}"))
}

/// A day-of-week field with its numbers (0 or 7: Sunday) as names; steps stay numbers.
fn days_by_name(field: &str) -> Option<String> {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let name = |part: &str| -> Option<String> {
        match part.parse::<usize>() {
            Ok(n) => NAMES.get(n).map(|s| s.to_string()),
            Err(_) => Some(part.to_string()),
        }
    };
    let items: Option<Vec<String>> = field
        .split(',')
        .map(|item| {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            let range = match range.split_once('-') {
                Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
                None => name(range)?,
            };
            Some(match step {
                Some(s) => format!("{range}/{s}"),
                None => range,
            })
        })
        .collect();
    items.map(|i| i.join(","))
}

/// At most `nodes` disrupted at once, for `reasons` (all if empty), while
/// `window` is open (always if none).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    /// How it is named in `explain`: its `name`, or what it says.
    pub name: String,
    pub nodes: Amount,
    pub reasons: Vec<DisruptionReason>,
    pub window: Option<Window>,
}

impl Budget {
    fn applies(&self, reason: DisruptionReason, now: Time) -> bool {
        (self.reasons.is_empty() || self.reasons.contains(&reason))
            && self.window.as_ref().is_none_or(|w| w.open_until(now).is_some())
    }
}

/// The binding budget: how many more nodes may be disrupted now, and which.
#[derive(Debug, Clone, PartialEq)]
pub struct Allowance<'b> {
    pub budget: &'b Budget,
    /// Nodes the budget allows in all.
    pub allowed: u32,
    /// Of which this many are left after those already disrupting.
    pub left: u32,
}

/// The most restrictive of `budgets` active now for `reason`, out of
/// `total` nodes with `disrupting` already leaving; `None` if none applies
/// (no limit).
pub fn allowance(
    budgets: &[Budget],
    reason: DisruptionReason,
    total: u32,
    disrupting: u32,
    now: Time,
) -> Option<Allowance<'_>> {
    budgets
        .iter()
        .filter(|b| b.applies(reason, now))
        .map(|b| {
            let allowed = b.nodes.of(total);
            Allowance {
                budget: b,
                allowed,
                left: allowed.saturating_sub(disrupting),
            }
        })
        .min_by_key(|a| a.left)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC civil time.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Time {
        let ts = jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap();
        Time::from_millis(ts.timestamp().as_millisecond() as u64)
    }

    #[test]
    fn amounts_are_counts_or_percentages_rounded_up() {
        assert_eq!("3".parse::<Amount>().map(|a| a.of(50)), Ok(3));
        assert_eq!("10%".parse::<Amount>().map(|a| a.of(25)), Ok(3));
        assert_eq!("10%".parse::<Amount>().map(|a| a.of(0)), Ok(0));
        assert_eq!("0%".parse::<Amount>().map(|a| a.of(100)), Ok(0));
        assert!("150%".parse::<Amount>().unwrap_err().contains("more than 100%"));
        assert!("-1".parse::<Amount>().unwrap_err().contains("neither"));
        assert!("ten".parse::<Amount>().unwrap_err().contains("neither"));
    }

    #[test]
    fn a_business_hours_window_is_open_monday_to_friday_nine_to_five_in_its_timezone() {
        let w = Window::new("0 9 * * 1-5", Duration::from_secs(8 * 3600), "Europe/Paris").unwrap();
        // Monday 2026-11-30: Paris is UTC+1 in winter, so 08:00-16:00 UTC.
        assert_eq!(w.open_until(utc(2026, 11, 30, 7, 59)), None);
        assert_eq!(
            w.open_until(utc(2026, 11, 30, 8, 0)),
            Some(utc(2026, 11, 30, 16, 0))
        );
        assert!(w.open_until(utc(2026, 11, 30, 15, 59)).is_some());
        assert_eq!(w.open_until(utc(2026, 11, 30, 16, 0)), None);
        // Saturday and Sunday: closed (in cron, 1-5 is Monday to Friday).
        assert_eq!(w.open_until(utc(2026, 12, 5, 10, 0)), None);
        assert_eq!(w.open_until(utc(2026, 12, 6, 10, 0)), None);
        // Sunday as 0 and 7, names, steps and shorthands.
        for (schedule, open) in [
            ("0 10 * * 0", true),
            ("0 10 * * 7", true),
            ("0 10 * * SUN", true),
            ("0 10 * * sat,sun", true),
            ("0 10 * * 1-6/2", false),
            ("@daily", false),
            ("@hourly", true),
        ] {
            let w = Window::new(schedule, Duration::from_secs(3600), "").unwrap();
            assert_eq!(
                w.open_until(utc(2026, 12, 6, 10, 30)).is_some(),
                open,
                "{schedule}"
            );
        }
    }

    #[test]
    fn bad_schedules_and_timezones_say_what_is_wrong() {
        let hour = Duration::from_secs(3600);
        assert!(
            Window::new("0 9 * *", hour, "")
                .unwrap_err()
                .contains("has 4 fields")
        );
        assert!(Window::new("0 25 * * *", hour, "").is_err());
        assert!(
            Window::new("0 9 * * 9", hour, "")
                .unwrap_err()
                .contains("day of week")
        );
        assert!(
            Window::new("0 9 * * *", hour, "Mars/Olympus")
                .unwrap_err()
                .contains("timezone \"Mars/Olympus\"")
        );
        assert!(
            Window::new("0 9 * * *", Duration::ZERO, "")
                .unwrap_err()
                .contains("more than 0")
        );
    }

    #[test]
    fn the_most_restrictive_active_budget_for_the_reason_binds() {
        let budget =
            |name: &str, nodes: &str, reasons: Vec<DisruptionReason>, window: Option<Window>| Budget {
                name: name.into(),
                nodes: nodes.parse().unwrap(),
                reasons,
                window,
            };
        let nights = Window::new("0 22 * * *", Duration::from_secs(8 * 3600), "UTC").unwrap();
        let budgets = [
            budget("default", "20%", vec![], None),
            budget(
                "no-drains-by-day",
                "0",
                vec![DisruptionReason::Underutilized],
                None,
            ),
            budget("nights", "1", vec![], Some(nights)),
        ];
        let noon = utc(2026, 12, 1, 12, 0);
        let night = utc(2026, 12, 1, 23, 0);
        let a = allowance(&budgets, DisruptionReason::Empty, 20, 1, noon).unwrap();
        assert_eq!((a.budget.name.as_str(), a.allowed, a.left), ("default", 4, 3));
        let a = allowance(&budgets, DisruptionReason::Underutilized, 20, 0, noon).unwrap();
        assert_eq!((a.budget.name.as_str(), a.left), ("no-drains-by-day", 0));
        let a = allowance(&budgets, DisruptionReason::Empty, 20, 1, night).unwrap();
        assert_eq!((a.budget.name.as_str(), a.left), ("nights", 0));
        assert_eq!(allowance(&[], DisruptionReason::Empty, 20, 5, noon), None);
    }
}
