//! The status page at `/`: what an operator keeps open. How many nodes
//! now and over the day, what they cost, what each drain and launch is
//! waiting on, and why each node stays. Rendered here from plain data (so
//! it is tested without a server), every cluster string escaped; it
//! refreshes itself in place every 10 seconds and needs nothing from
//! elsewhere.

pub mod chart;

use crate::samples::Samples;
use crate::state::StoredEvent;
use crate::status::{Status, timestamp};
use k3scale_core::Time;
use k3scale_core::drain::DrainProgress;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// At most this many scale events are listed under the chart.
const EVENTS_LISTED: usize = 15;

/// HTML-escape a string from the cluster (or anywhere else).
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A drain in progress, as the journal has it.
#[derive(Debug, Clone)]
pub struct DrainRow {
    pub pool: String,
    pub progress: DrainProgress,
    /// The PodDisruptionBudget of each refused pod, when the caches know it.
    pub pdbs: BTreeMap<String, String>,
}

/// Everything the page shows.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub status: &'a Status,
    pub samples: &'a Samples,
    /// Newest first.
    pub events: &'a [StoredEvent],
    pub drains: &'a [DrainRow],
    pub now: Time,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1em auto;max-width:60em;padding:0 .8em;color:#222}\
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .3em}\
.scroll{overflow-x:auto}table{border-collapse:collapse;min-width:100%}\
td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
.warn{color:#a40}.failed{color:#fff;background:#b00;padding:0 3px}.big{font-size:1.15em}\
.legend{font-size:.85em;margin:.2em 0}svg{width:100%;height:auto;max-height:22em}\
.muted{color:#777}ul{padding-left:1.2em}td.wide{min-width:18em}";

/// Swap the page's `main` for a fresh one every 10 s: no reload, no flicker,
/// nothing fetched but the page itself.
const REFRESH: &str = "setInterval(async()=>{try{const r=await fetch(location.href,{cache:'no-store'});\
if(!r.ok)return;const d=new DOMParser().parseFromString(await r.text(),'text/html');\
const m=d.getElementById('main');if(m)document.getElementById('main').replaceWith(m);}catch(e){}},10000);";

fn ago(now: Time, then_ms: u64) -> String {
    let s = now.as_millis().saturating_sub(then_ms) / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

pub fn render(v: &View<'_>) -> String {
    let st = v.status;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>k3scale</title><style>{STYLE}</style></head><body><main id=main>"
    );
    header(&mut h, v);
    summary(&mut h, v);
    history(&mut h, v);
    drains(&mut h, v);
    launches(&mut h, v);
    pools(&mut h, st);
    nodes(&mut h, st);
    h.push_str("<h2>Last decision</h2><ul>");
    for r in &st.reasons {
        let _ = write!(h, "<li>{}</li>", esc(r));
    }
    let _ = write!(
        h,
        "</ul><p class=muted>cooldowns: scale-up {} s, scale-down {} s &middot; unschedulable pods: {}</p>\
         <p><a href=/api/status>status JSON</a> &middot; <a href=/api/events>events</a> &middot; \
         <a href=/metrics>metrics</a></p></main><script>{REFRESH}</script></body></html>",
        st.cooldown_up_s, st.cooldown_down_s, st.unschedulable_pods
    );
    h
}

fn header(h: &mut String, v: &View<'_>) {
    let st = v.status;
    let role = if st.leader {
        "leader".to_string()
    } else {
        match &st.lease_holder {
            Some(holder) if *holder != st.identity => format!("standby &middot; leader: {}", esc(holder)),
            _ => "standby &middot; no leader yet".to_string(),
        }
    };
    let _ = write!(
        h,
        "<h1>k3scale</h1><p>{} &middot; {role}{}{}</p>",
        esc(&st.identity),
        if st.dry_run {
            " &middot; <b>dry run</b>"
        } else {
            ""
        },
        st.last_reconcile
            .map(|t| format!(" &middot; decided {} ago", ago(v.now, t)))
            .unwrap_or_default()
    );
    if !st.leader {
        h.push_str("<p class=muted>This replica decides nothing: below is its own view of the cluster.</p>");
    }
    if let Some(e) = &st.lease_error {
        let _ = write!(h, "<p class=warn>leader election: {}</p>", esc(e));
    }
    if let Some(e) = &st.last_error {
        let _ = write!(h, "<p class=warn>last reconcile failed: {}</p>", esc(e));
    }
    if let Some(e) = &st.metrics_error {
        let _ = write!(h, "<p class=warn>metrics unavailable: {}</p>", esc(e));
    }
}

fn summary(h: &mut String, v: &View<'_>) {
    let st = v.status;
    let total: u32 = st.pools.iter().map(|p| p.nodes).sum();
    let per_pool: Vec<String> = st
        .pools
        .iter()
        .map(|p| format!("{} {}", esc(&p.name), p.nodes))
        .collect();
    let per_hour: f64 = st
        .pools
        .iter()
        .map(|p| f64::from(p.nodes) * p.price_per_hour)
        .sum();
    let _ = write!(
        h,
        "<p class=big id=summary><b>{total}</b> {} now ({}) &middot; <b>${per_hour:.2}</b>/h",
        if total == 1 { "node" } else { "nodes" },
        per_pool.join(", ")
    );
    if let Some(t) = &st.today {
        let since = timestamp(Time::from_millis(t.since));
        let _ = write!(
            h,
            " &middot; today <b>${:.2}</b> spent since {} UTC, <b>${:.2}</b> saved against a fixed fleet of {} nodes (today's peak)",
            t.spent,
            since.get(11..16).unwrap_or(&since),
            t.saved(),
            t.peak_nodes
        );
    }
    h.push_str("</p>");
}

fn history(h: &mut String, v: &View<'_>) {
    let pools: Vec<String> = v.status.pools.iter().map(|p| p.name.clone()).collect();
    let samples: Vec<&crate::samples::Sample> = v.samples.iter().collect();
    h.push_str("<h2>Last 24 hours</h2>");
    if samples.is_empty() && v.events.is_empty() {
        h.push_str(
            "<p class=muted>no history yet: a sample is kept every minute from the first reconcile</p>",
        );
        return;
    }
    h.push_str(&chart::legend(&pools));
    h.push_str(&chart::history(&samples, &pools, v.events, v.now));
    if v.events.is_empty() {
        return;
    }
    h.push_str("<div class=scroll><table id=events><tr><th>when</th><th>what</th><th>pool</th><th>nodes</th><th>why</th></tr>");
    for e in v.events.iter().take(EVENTS_LISTED) {
        let _ = write!(
            h,
            "<tr><td>{} ago</td><td>{}</td><td>{}</td><td>{}</td><td class=wide>{}</td></tr>",
            ago(v.now, e.event.at.as_millis()),
            esc(&e.event.kind),
            esc(&e.event.pool),
            esc(&e.event.nodes.join(", ")),
            esc(&e.event.message)
        );
    }
    h.push_str("</table></div>");
}

fn drains(h: &mut String, v: &View<'_>) {
    if v.drains.is_empty() {
        return;
    }
    h.push_str("<h2>Drains in progress</h2><div class=scroll><table id=drains><tr><th>node</th><th>pool</th><th>pods left</th><th>evictions refused</th><th>gives up in</th></tr>");
    for d in v.drains {
        let p = &d.progress;
        let refused: Vec<String> = p
            .refused
            .iter()
            .map(|r| {
                let by = match d.pdbs.get(&r.pod) {
                    Some(pdb) => format!("PodDisruptionBudget {}", esc(pdb)),
                    None => esc(&r.last),
                };
                format!("{} &times;{} ({by})", esc(&r.pod), r.times)
            })
            .collect();
        let left = p.deadline.as_millis().saturating_sub(v.now.as_millis()) / 1000;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=wide>{}</td><td>{left} s</td></tr>",
            esc(&p.node),
            esc(&d.pool),
            p.pods_left,
            if refused.is_empty() {
                "none".to_string()
            } else {
                refused.join("<br>")
            }
        );
    }
    h.push_str("</table></div>");
}

fn launches(h: &mut String, v: &View<'_>) {
    let st = v.status;
    if st.in_flight.is_empty() {
        return;
    }
    h.push_str("<h2>Launches in progress</h2><div class=scroll><table id=launches><tr><th>machine</th><th>pool</th><th>age</th><th>given up after</th></tr>");
    for f in &st.in_flight {
        let age = v.now.as_millis().saturating_sub(f.launched_at) / 1000;
        let late = f.timeout_s > 0 && age * 4 >= f.timeout_s * 3;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td{}>{age} s</td><td>{} s</td></tr>",
            esc(&f.name),
            esc(&f.pool),
            if late { " class=warn" } else { "" },
            f.timeout_s
        );
    }
    h.push_str("</table></div>");
}

fn pools(h: &mut String, st: &Status) {
    h.push_str("<h2>Pools</h2><div class=scroll><table><tr><th>pool</th><th>nodes</th><th>launching</th><th>min</th><th>max</th><th>$/h each</th><th>launches</th></tr>");
    for p in &st.pools {
        use k3scale_core::lifecycle::HoldCause;
        let launches = match p.held {
            None => String::new(),
            Some(HoldCause::Failed) => format!(
                "<span class=failed>failed: k3scale pool reset {}</span>",
                esc(&p.name)
            ),
            Some(HoldCause::NoCapacity) => "<span class=warn>held: no capacity</span>".into(),
            Some(HoldCause::Retry) => "<span class=warn>held: provider failing, retrying</span>".into(),
            Some(HoldCause::JoinFailures) => "<span class=warn>held: nodes failed to join</span>".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{launches}</td></tr>",
            esc(&p.name),
            p.nodes,
            p.launching,
            p.min,
            p.max,
            p.price_per_hour
        );
    }
    h.push_str("</table></div>");
}

fn nodes(h: &mut String, st: &Status) {
    h.push_str("<h2>Nodes</h2><div class=scroll><table id=nodes><tr><th>node</th><th>pool</th><th>state</th><th>requested</th><th>pods</th><th>why it stays</th></tr>");
    for n in &st.nodes {
        let state = match (n.ready, n.cordoned) {
            (_, true) => "cordoned",
            _ if n.starting.is_some() => "starting",
            (true, _) => "ready",
            _ => "not ready",
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{:.0}%</td><td>{}</td><td title=\"{}\">{}</td></tr>",
            esc(&n.name),
            esc(n.pool.as_deref().unwrap_or("(not managed)")),
            n.requested * 100.0,
            n.pods,
            esc(&n.kept_because.join("; ")),
            match &n.replace {
                Some(r) => format!("<b>{}</b> &middot; {}", esc(r), esc(&n.why)),
                None => esc(&n.why),
            }
        );
    }
    h.push_str("</table></div>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::Sample;
    use crate::state::ScaleEvent;
    use crate::status::{InFlightStatus, NodeStatus, PoolStatus};
    use k3scale_core::drain::Refused;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn status() -> Status {
        Status {
            identity: "k3scale-a".into(),
            leader: true,
            last_reconcile: Some(NOW_MS - 5_000),
            pools: vec![PoolStatus {
                name: "workers".into(),
                min: 1,
                max: 5,
                nodes: 3,
                launching: 1,
                price_per_hour: 0.5,
                ..PoolStatus::default()
            }],
            nodes: vec![NodeStatus {
                name: "workers-1".into(),
                pool: Some("workers".into()),
                ready: true,
                kept_because: vec!["scale-down cooldown: 40 s left".into()],
                why: "unneeded; scale-down cooldown: 40 s left".into(),
                ..NodeStatus::default()
            }],
            in_flight: vec![InFlightStatus {
                pool: "workers".into(),
                name: "workers-9".into(),
                launched_at: NOW_MS - 500_000,
                timeout_s: 600,
            }],
            ..Status::default()
        }
    }

    fn samples() -> Samples {
        let mut s = Samples::default();
        for (minutes_ago, nodes, waiting) in [(600, 1, 0), (300, 3, 4), (60, 3, 0)] {
            s.record(Sample {
                at: Time::from_millis(NOW_MS - minutes_ago * 60_000),
                nodes: [("workers".to_string(), nodes)].into(),
                unschedulable: waiting,
                cpu: Some(0.4),
                prices: [("workers".to_string(), 0.5)].into(),
            });
        }
        s
    }

    fn event(id: u64, minutes_ago: u64, kind: &str, message: &str) -> StoredEvent {
        StoredEvent {
            id,
            event: ScaleEvent {
                at: Time::from_millis(NOW_MS - minutes_ago * 60_000),
                kind: kind.into(),
                pool: "workers".into(),
                nodes: vec!["workers-2".into()],
                message: message.into(),
            },
        }
    }

    fn page(status: &Status, samples: &Samples, events: &[StoredEvent], drains: &[DrainRow]) -> String {
        render(&View {
            status,
            samples,
            events,
            drains,
            now: Time::from_millis(NOW_MS),
        })
    }

    #[test]
    fn the_day_is_charted_with_each_scale_event_and_its_reason() {
        let mut st = status();
        st.today = samples().today(Time::from_millis(NOW_MS));
        let events = [
            event(2, 290, "scale-up", "4 pods unschedulable"),
            event(1, 2000, "scale-down", "too old to show"),
        ];
        let h = page(&st, &samples(), &events, &[]);
        assert!(h.contains("<svg id=history"), "{h}");
        // One line per pool, one for waiting pods, one for CPU.
        for class in ["nodes", "waiting", "cpu"] {
            assert_eq!(
                h.matches(&format!("<polyline class=\"{class}\"")).count(),
                1,
                "{class}"
            );
        }
        // The day's event is marked with its reason; the older one is not.
        assert_eq!(h.matches("<g class=\"event\">").count(), 1);
        assert!(
            h.contains("scale-up workers workers-2: 4 pods unschedulable</title>"),
            "{h}"
        );
        // Cost: 3 nodes at $0.5.
        assert!(
            h.contains("<b>3</b> nodes now (workers 3) &middot; <b>$1.50</b>/h"),
            "{h}"
        );
        assert!(h.contains("saved against a fixed fleet of 3 nodes"), "{h}");
        // The launch against its timeout: 500 of 600 s is late.
        assert!(h.contains("<td class=warn>500 s</td><td>600 s</td>"), "{h}");
        // Why the node stays, short, with the full reasons on hover.
        assert!(
            h.contains(
                "<td title=\"scale-down cooldown: 40 s left\">unneeded; scale-down cooldown: 40 s left</td>"
            ),
            "{h}"
        );
    }

    #[test]
    fn a_drain_held_by_a_budget_names_the_pod_the_budget_and_the_time_left() {
        let drain = DrainRow {
            pool: "workers".into(),
            progress: DrainProgress {
                node: "workers-1".into(),
                started_at: Time::from_millis(NOW_MS - 60_000),
                deadline: Time::from_millis(NOW_MS + 240_000),
                pods_left: 2,
                refused: vec![Refused {
                    pod: "shop/db-0".into(),
                    times: 7,
                    last: "disruption budget".into(),
                }],
            },
            pdbs: [("shop/db-0".to_string(), "shop/db-pdb".to_string())].into(),
        };
        let h = page(&status(), &Samples::default(), &[], &[drain]);
        assert!(
            h.contains("<td>workers-1</td><td>workers</td><td>2</td><td class=wide>shop/db-0 &times;7 (PodDisruptionBudget shop/db-pdb)</td><td>240 s</td>"),
            "{h}"
        );
        assert!(h.contains("no history yet"), "{h}");
    }

    #[test]
    fn a_standby_names_the_leader_and_shows_its_own_view() {
        let st = Status {
            leader: false,
            lease_holder: Some("k3scale-b".into()),
            last_reconcile: None,
            ..status()
        };
        let h = page(&st, &samples(), &[], &[]);
        assert!(
            h.contains("k3scale-a &middot; standby &middot; leader: k3scale-b"),
            "{h}"
        );
        assert!(h.contains("its own view of the cluster"), "{h}");
        assert!(h.contains("<td>workers-1</td>"), "{h}");
    }

    #[test]
    fn every_cluster_string_is_escaped_and_no_url_leaves_the_page() {
        let evil = "<script>alert('x')</script>\"&";
        let mut st = status();
        st.nodes[0].name = evil.into();
        st.nodes[0].why = evil.into();
        st.reasons = vec![evil.into()];
        st.last_error = Some(evil.into());
        let events = [event(1, 5, evil, evil)];
        let h = page(&st, &samples(), &events, &[]);
        assert!(!h.contains("<script>alert"), "{h}");
        assert!(
            h.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"),
            "{h}"
        );
        // The only script is the page's own refresh; nothing is fetched elsewhere.
        assert_eq!(h.matches("<script>").count(), 1);
        assert!(
            !h.contains("http://") && !h.contains("https://") && !h.contains("src="),
            "{h}"
        );
    }
}
