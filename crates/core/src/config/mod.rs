//! The configuration file: parse, check every key, build the `Policy`.
//!
//! Reading the file is the caller's job (the core does no I/O); errors carry
//! the file name, the key path, the line and what is wrong.

mod duration;
mod schema;
mod yaml_index;

pub use duration::{HumanDuration, format_duration, parse_duration};
pub use schema::*;
pub use yaml_index::YamlIndex;

use crate::lease::ElectionConfig;
use crate::model::{Headroom, Labels, NodeTemplate, POOL_LABEL, Pool};
use crate::policy::{ClusterLimits, CustomRule, Policy, Predictive, ScaleDownRules, ScaleUpRules};
use crate::quantity::{QuantityError, Resources, parse_cpu, parse_memory};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The configuration k3scale uses when none is given (see `default.yaml`).
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Key path such as `pools[1].max`; empty for the whole document.
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A configuration that passed every check, with the policy built from it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration (defaults filled in), as `validate` prints it.
    pub config: Config,
    pub policy: Policy,
    pub interval: Duration,
    pub election: ElectionConfig,
}

/// Parse and validate `text`, read from `file` (the name is only for messages).
pub fn load(file: &str, text: &str) -> Result<Loaded, ConfigErrors> {
    let index = YamlIndex::build(text);
    let (config, mut errors, defaulted) = deserialize_all(file, text, &index);
    let Some(mut config) = config else {
        return Err(ConfigErrors(errors));
    };
    let mut v = Validator {
        file,
        index: &index,
        errors: Vec::new(),
    };
    let built = build(&config, &mut v);
    let election = election(&config.leader_election, &mut v);
    // With keys taken out, the checks of what is left still speak, except
    // next to a key taken out (its default would be judged, not the file)
    // or after a list item was taken out (the indexes moved).
    if !defaulted.iter().any(|p| p.ends_with(']')) {
        errors.extend(
            v.errors
                .into_iter()
                .filter(|e| !defaulted.iter().any(|b| within(&e.path, yaml_index::parent(b)))),
        );
    }
    if errors.is_empty() {
        let (policy, interval) = built;
        // The effective machine timings, as `validate` prints them.
        for (c, p) in config.pools.iter_mut().zip(&policy.pools) {
            c.provision_timeout
                .get_or_insert_with(|| p.provision_timeout.into());
            c.join_timeout.get_or_insert_with(|| p.join_timeout.into());
        }
        Ok(Loaded {
            config,
            policy,
            interval,
            election,
        })
    } else {
        errors.sort_by_key(|e| e.line.unwrap_or(0));
        Err(ConfigErrors(errors))
    }
}

/// `path` is `outer` or a key below it.
fn within(path: &str, outer: &str) -> bool {
    outer.is_empty()
        || path
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// At most this many errors are collected from one file's shape.
const MAX_SHAPE_ERRORS: usize = 50;

/// Deserialize, collecting every type error, unknown key and missing key in
/// one pass: each error's entry is blanked out (spaces, so every position
/// stays where it was) and the document read again. Returns the config when
/// what is left reads, the errors, and the paths whose values were blanked
/// out (their defaults stand in).
fn deserialize_all(
    file: &str,
    text: &str,
    index: &YamlIndex,
) -> (Option<Config>, Vec<ConfigError>, Vec<String>) {
    if text.trim().is_empty() {
        return (Some(Config::default()), Vec::new(), Vec::new());
    }
    // Not YAML: that one error says it all.
    if let Some((line, why)) = index.syntax_error() {
        let error = ConfigError {
            file: file.to_string(),
            path: index
                .entry_at(line, usize::MAX)
                .map(|e| e.path.clone())
                .unwrap_or_default(),
            line: Some(line),
            message: format!("not valid YAML: {why}"),
        };
        return (None, vec![error], Vec::new());
    }
    let mut chars: Vec<char> = text.chars().collect();
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut blanked: Vec<String> = Vec::new();
    let mut blanked_at: Vec<usize> = Vec::new();
    // Blanked entries whose value (not a misspelt key) is gone.
    let mut defaulted: Vec<String> = Vec::new();
    loop {
        let current: String = chars.iter().collect();
        let e = match serde_saphyr::from_str::<Config>(&current) {
            Ok(config) => return (Some(config), errors, defaulted),
            Err(e) => e,
        };
        let (error, entry) = deserialize_error(file, index, &e);
        let unknown_key = error.message.starts_with("unknown field");
        // What blanking out an entry causes is not news: its mapping now
        // misses a required key, or its list or mapping is now empty.
        let echo = blanked.iter().any(|b| {
            let missing = error
                .message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .is_some_and(|key| yaml_index::parent(b) == error.path && b.ends_with(key));
            missing || (!error.path.is_empty() && b != &error.path && within(b, &error.path))
        });
        if !echo {
            errors.push(error);
        }
        let Some(entry) = entry.filter(|e| !blanked_at.contains(&e.start)) else {
            return (None, errors, defaulted);
        };
        if errors.len() >= MAX_SHAPE_ERRORS {
            return (None, errors, defaulted);
        }
        blank(&mut chars, entry.start, entry.end);
        if !unknown_key {
            defaulted.push(entry.path.clone());
        }
        blanked.push(entry.path.clone());
        blanked_at.push(entry.start);
    }
}

/// Replace an entry with spaces (newlines kept), and the comma that joined
/// it to a neighbour in a flow collection (`{ a: 1, b: 2 }`).
fn blank(chars: &mut [char], start: usize, end: usize) {
    let end = end.min(chars.len());
    for c in &mut chars[start.min(end)..end] {
        if *c != '\n' {
            *c = ' ';
        }
    }
    let after = (end..chars.len()).find(|&i| chars[i] != ' ');
    if let Some(i) = after.filter(|&i| chars[i] == ',') {
        chars[i] = ' ';
        return;
    }
    let before = (0..start.min(end)).rev().find(|&i| chars[i] != ' ');
    if let Some(i) = before.filter(|&i| chars[i] == ',') {
        chars[i] = ' ';
    }
}

/// A deserializer error as a `ConfigError`, with the key path recovered from
/// the error's position and serde's wording made plain; and the entry to
/// blank out to read on (none for a problem of the whole document).
fn deserialize_error<'i>(
    file: &str,
    index: &'i YamlIndex,
    e: &serde_saphyr::Error,
) -> (ConfigError, Option<&'i yaml_index::Entry>) {
    let mut message = plain_words(&strip_location(&e.without_snippet().to_string()));
    let Some(loc) = e.location() else {
        let error = ConfigError {
            file: file.to_string(),
            path: String::new(),
            line: None,
            message,
        };
        return (error, None);
    };
    let (line, column) = (loc.line() as usize, loc.column() as usize);
    let mut entry = index.entry_at(line, column);
    let mut path = entry.map_or("", |e| e.path.as_str());
    // A missing field is reported at the last key read from its mapping (or
    // at the start of an empty mapping): name the mapping itself.
    if message.starts_with("missing field") && entry.is_some_and(|e| (e.line, e.column) == (line, column)) {
        path = yaml_index::parent(path);
        entry = entry.and_then(|e| index.enclosing(path, e));
    }
    let in_provider = path.ends_with(".provider") || yaml_index::parent(path).ends_with(".provider");
    if in_provider && message.contains("enum") {
        if !path.ends_with(".provider") {
            path = yaml_index::parent(path);
            entry = entry.and_then(|e| index.enclosing(path, e));
        }
        message = "set exactly one provider: docker, aws_ec2, aws_asg or exec".to_string();
    }
    // Problems of the whole document: nothing to blank out and read on.
    let whole = [
        "appears more than once",
        "more than one YAML document",
        "too large",
        "nested too deeply",
    ];
    if whole.iter().any(|w| message.contains(w)) {
        entry = None;
        if !message.contains("appears more than once") {
            path = "";
        }
    }
    let error = ConfigError {
        file: file.to_string(),
        path: path.to_string(),
        line: Some(line),
        message,
    };
    (error, entry)
}

/// serde's and the YAML library's wording, as a person would say it.
fn plain_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest);
        return format!("key `{key}` appears more than once in this mapping");
    }
    if message.starts_with("cannot deserialize null") {
        return "has no value".into();
    }
    let known = [
        (
            "multiple YAML documents",
            "more than one YAML document (`---`): put the whole configuration in one",
        ),
        (
            "budget breached",
            "the document is too large to be a configuration",
        ),
        (
            "recursion limit exceeded",
            "nested too deeply to be a configuration",
        ),
    ];
    if let Some((_, plain)) = known.iter().find(|(prefix, _)| message.starts_with(prefix)) {
        return plain.to_string();
    }
    let plain = match message {
        "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64" | "invalid usize" => {
            "expected a whole number, 0 or more"
        }
        "invalid i8" | "invalid i16" | "invalid i32" | "invalid i64" | "invalid isize" => {
            "expected a whole number"
        }
        "invalid floating point" | "invalid f32" | "invalid f64" => "expected a number",
        "invalid boolean" | "invalid bool" => "expected true or false",
        "expected sequence start" => "expected a list",
        "expected mapping start" => "expected a mapping (key: value lines)",
        "expected string scalar" => "expected a single value, not a list or a mapping",
        _ => message,
    };
    plain.to_string()
}

/// serde-saphyr appends " at line L column C"; we print the line ourselves.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

struct Validator<'a> {
    file: &'a str,
    index: &'a YamlIndex,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            path: path.to_string(),
            line: self.index.line_of(path),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: &str, d: &HumanDuration) -> Duration {
        if let Some(e) = d.error() {
            self.error(path, e);
        }
        d.get()
    }

    /// A duration that must also be above zero.
    fn positive_duration(&mut self, path: &str, d: &HumanDuration, why: &str) -> Duration {
        let parsed = self.duration(path, d);
        if parsed.is_zero() && d.error().is_none() {
            self.error(path, format!("must be greater than zero{why}"));
        }
        parsed
    }

    /// A quantity that must parse and be above zero (0 when it is not).
    fn positive_quantity(
        &mut self,
        path: &str,
        s: &str,
        parse: fn(&str) -> Result<u64, QuantityError>,
    ) -> u64 {
        match parse(s) {
            Ok(0) => {
                self.error(path, "must be greater than zero");
                0
            }
            Ok(n) => n,
            Err(e) => {
                self.error(path, e.to_string());
                0
            }
        }
    }

    fn fraction(&mut self, path: &str, v: f64) {
        if !(v > 0.0 && v <= 1.0) {
            self.error(
                path,
                format!("{v} is not a utilization between 0 (excluded) and 1"),
            );
        }
    }

    /// Exactly one of a `_file` / `_env` pair, for secrets.
    fn secret_source(&mut self, path: &str, file: &Option<String>, env: &Option<String>, what: &str) {
        match (file, env) {
            (Some(_), Some(_)) => self.error(path, format!("set only one of {what}_file and {what}_env")),
            (None, None) => self.error(
                path,
                format!("{what} is required: set {what}_file or {what}_env (secrets are never written in the config)"),
            ),
            _ => {}
        }
    }
}

fn build(c: &Config, v: &mut Validator<'_>) -> (Policy, Duration) {
    if !is_dns_label(&c.cluster) {
        v.error(
            "cluster",
            format!(
                "{:?} must be a DNS label (lowercase letters, digits, '-')",
                c.cluster
            ),
        );
    }
    let interval = v.positive_duration("policy.interval", &c.policy.interval, "");
    let metrics_max_age = v.duration("metrics.max_age", &c.metrics.max_age);
    check_metrics(&c.metrics, v);

    let up = &c.policy.scale_up;
    v.fraction("policy.scale_up.cpu_above", up.cpu_above);
    v.fraction("policy.scale_up.memory_above", up.memory_above);
    if up.max_step == 0 {
        v.error("policy.scale_up.max_step", "must be at least 1");
    }
    let scale_up = ScaleUpRules {
        cpu_above: up.cpu_above,
        cpu_for: v.duration("policy.scale_up.cpu_for", &up.cpu_for),
        memory_above: up.memory_above,
        memory_for: v.duration("policy.scale_up.memory_for", &up.memory_for),
        pending_grace: v.duration("policy.scale_up.pending_grace", &up.pending_grace),
        pending_pods: up.pending_pods,
        max_step: up.max_step,
        cooldown: v.duration("policy.scale_up.cooldown", &up.cooldown),
        trust_scheduler_after: v.duration("policy.scale_up.trust_scheduler_after", &up.trust_scheduler_after),
    };
    let down = &c.policy.scale_down;
    v.fraction("policy.scale_down.cpu_below", down.cpu_below);
    v.fraction("policy.scale_down.memory_below", down.memory_below);
    v.fraction(
        "policy.scale_down.node_utilization_below",
        down.node_utilization_below,
    );
    if down.cpu_below >= up.cpu_above {
        v.error(
            "policy.scale_down.cpu_below",
            format!(
                "{} must be below policy.scale_up.cpu_above ({}), or the cluster flaps",
                down.cpu_below, up.cpu_above
            ),
        );
    }
    if down.memory_below >= up.memory_above {
        v.error(
            "policy.scale_down.memory_below",
            format!(
                "{} must be below policy.scale_up.memory_above ({})",
                down.memory_below, up.memory_above
            ),
        );
    }
    let scale_down = ScaleDownRules {
        enabled: down.enabled,
        unneeded_time: v.duration("policy.scale_down.unneeded_time", &down.unneeded_time),
        delay_after_scale_up: v.duration(
            "policy.scale_down.delay_after_scale_up",
            &down.delay_after_scale_up,
        ),
        cluster_gate: down.cluster_gate,
        cpu_below: down.cpu_below,
        cpu_for: v.duration("policy.scale_down.cpu_for", &down.cpu_for),
        memory_below: down.memory_below,
        memory_for: v.duration("policy.scale_down.memory_for", &down.memory_for),
        max_step: down.max_step,
        max_empty_step: down.max_empty_step,
        cooldown: v.duration("policy.scale_down.cooldown", &down.cooldown),
        node_utilization_below: down.node_utilization_below,
        evict_local_storage: down.evict_local_storage,
        skip_nodes_with_system_pods: down.skip_nodes_with_system_pods,
        ignore_daemonsets_utilization: down.ignore_daemonsets_utilization,
        drain_timeout: v.positive_duration("policy.scale_down.drain_timeout", &down.drain_timeout, ""),
        unready_enabled: down.unready_enabled,
        unready_time: v.positive_duration("policy.scale_down.unready_time", &down.unready_time, ""),
    };
    for (i, key) in c.policy.startup_taints.iter().enumerate() {
        if key.trim().is_empty() || key.contains(char::is_whitespace) {
            v.error(
                &format!("policy.startup_taints[{i}]"),
                format!("{key:?} is not a taint key"),
            );
        }
    }

    let custom = c
        .metrics
        .custom
        .iter()
        .enumerate()
        .map(|(i, m)| CustomRule {
            name: m.name.clone(),
            query: m.query.clone(),
            scale_up_above: m.scale_up_above,
            scale_down_below: m.scale_down_below,
            window: v.duration(&format!("metrics.custom[{i}].for"), &m.window),
        })
        .collect();

    if c.pools.is_empty() {
        v.error("pools", "at least one pool is required");
    }
    let mut names = HashSet::new();
    let pools = c
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = format!("pools[{i}]");
            if !names.insert(p.name.as_str()) {
                v.error(
                    &format!("{path}.name"),
                    format!("duplicate pool name {:?}", p.name),
                );
            }
            build_pool(p, &path, v)
        })
        .collect();

    if c.server.listen.parse::<SocketAddr>().is_err() {
        v.error(
            "server.listen",
            format!("{:?} is not an address:port", c.server.listen),
        );
    }
    if let Some(slack) = &c.notify.slack {
        v.secret_source("notify.slack", &slack.url_file, &slack.url_env, "url");
    }
    v.duration(
        "notify.metrics_unavailable_after",
        &c.notify.metrics_unavailable_after,
    );
    v.duration("notify.repeat_after", &c.notify.repeat_after);
    if let Some(hook) = &c.notify.webhook {
        v.secret_source("notify.webhook", &hook.url_file, &hook.url_env, "url");
    }
    if let Some(i) = &c.interruptions {
        if !i.sqs_queue_url.starts_with("https://") && !i.sqs_queue_url.starts_with("http://") {
            v.error(
                "interruptions.sqs_queue_url",
                format!("{:?} is not a queue URL", i.sqs_queue_url),
            );
        }
        if i.region.trim().is_empty() {
            v.error("interruptions.region", "must not be empty");
        }
    }
    if c.limits.max_nodes == Some(0) {
        v.error("limits.max_nodes", "must be at least 1");
    }
    if c.state.backend == StateBackend::Dynamodb && c.state.table.is_none() {
        v.error("state.table", "required with backend dynamodb");
    }

    let predictive = c.policy.predictive.enabled.then(|| {
        if c.policy.predictive.max_extra_nodes == 0 {
            v.error(
                "policy.predictive.max_extra_nodes",
                "must be at least 1 (set enabled: false to turn forecasts off)",
            );
        }
        Predictive {
            max_extra_nodes: c.policy.predictive.max_extra_nodes,
        }
    });
    let disruption = budgets(&c.policy.disruption, "policy.disruption", v);
    let consolidation = c.policy.consolidation.enabled.then(|| {
        let saving = c.policy.consolidation.min_saving_per_hour;
        if !(saving.is_finite() && saving >= 0.0) {
            v.error(
                "policy.consolidation.min_saving_per_hour",
                "must be zero or a positive number of dollars per hour",
            );
        }
        crate::policy::Consolidation {
            min_saving_per_hour: saving,
        }
    });
    let policy = Policy {
        predictive,
        disruption,
        consolidation,
        scale_up,
        scale_down,
        custom,
        expander: c.policy.expander,
        dry_run: c.policy.dry_run,
        metrics_max_age,
        expendable_pods_priority_cutoff: c.policy.expendable_pods_priority_cutoff,
        startup_taints: c.policy.startup_taints.clone(),
        balance_similar_pools: c.policy.balance_similar_pools,
        limits: ClusterLimits {
            max_nodes: c.limits.max_nodes,
            max_cpu_milli: c
                .limits
                .max_cpu
                .as_ref()
                .map(|q| v.positive_quantity("limits.max_cpu", q, parse_cpu)),
            max_memory_bytes: c
                .limits
                .max_memory
                .as_ref()
                .map(|q| v.positive_quantity("limits.max_memory", q, parse_memory)),
        },
        pools,
    };
    (policy, interval)
}

fn election(c: &LeaderElectionConfig, v: &mut Validator<'_>) -> ElectionConfig {
    if let Some(ns) = &c.namespace
        && !is_dns_label(ns)
    {
        v.error(
            "leader_election.namespace",
            format!("{ns:?} is not a namespace name (a DNS label)"),
        );
    }
    let election = ElectionConfig {
        lease_duration: v.duration("leader_election.lease_duration", &c.lease_duration),
        renew_deadline: v.duration("leader_election.renew_deadline", &c.renew_deadline),
        retry_period: v.positive_duration("leader_election.retry_period", &c.retry_period, ""),
    };
    if !election.retry_period.is_zero()
        && let Err(e) = election.check()
    {
        v.error("leader_election", e);
    }
    election
}

/// Whether a URL carries `user[:password]@` before its host.
fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())].contains('@')
}

fn check_metrics(m: &MetricsConfig, v: &mut Validator<'_>) {
    if m.source == MetricsSourceKind::Prometheus {
        let p = &m.prometheus;
        if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
            v.error(
                "metrics.prometheus.url",
                format!("{:?} must start with http:// or https://", p.url),
            );
        } else if url_has_credentials(&p.url) {
            // Never echo the URL: it holds a password.
            v.error(
                "metrics.prometheus.url",
                "holds credentials (user:password@): they would show in status, logs and the state store; use metrics.prometheus.basic_auth with password_file or password_env",
            );
        }
        v.duration("metrics.prometheus.timeout", &p.timeout);
        if p.bearer_token_file.is_some() && p.bearer_token_env.is_some() {
            v.error(
                "metrics.prometheus",
                "set only one of bearer_token_file and bearer_token_env",
            );
        }
        if let Some(auth) = &p.basic_auth {
            v.secret_source(
                "metrics.prometheus.basic_auth",
                &auth.password_file,
                &auth.password_env,
                "password",
            );
        }
    }
    if m.source == MetricsSourceKind::MetricsServer && !m.custom.is_empty() {
        v.error(
            "metrics.custom",
            "custom PromQL rules need `metrics.source: prometheus` (metrics-server has CPU and memory only)",
        );
    }
    let mut seen = HashSet::new();
    for (i, rule) in m.custom.iter().enumerate() {
        let path = format!("metrics.custom[{i}]");
        let valid_name = !rule.name.is_empty()
            && rule
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_name {
            v.error(
                &format!("{path}.name"),
                format!("{:?} must be lowercase letters, digits and '_'", rule.name),
            );
        } else if matches!(rule.name.as_str(), "cpu" | "memory") || !seen.insert(rule.name.as_str()) {
            v.error(
                &format!("{path}.name"),
                format!("duplicate signal name {:?}", rule.name),
            );
        }
        if rule.query.trim().is_empty() {
            v.error(&format!("{path}.query"), "must not be empty");
        }
        if rule.scale_up_above.is_none() && rule.scale_down_below.is_none() {
            v.error(&path, "set scale_up_above, scale_down_below or both");
        }
        for (key, value) in [
            ("scale_up_above", rule.scale_up_above),
            ("scale_down_below", rule.scale_down_below),
        ] {
            if value.is_some_and(|x| !x.is_finite()) {
                v.error(&format!("{path}.{key}"), "must be a finite number");
            }
        }
    }
}

/// The budgets of a `disruption` section at `path`, each checked.
fn budgets(d: &DisruptionConfig, path: &str, v: &mut Validator<'_>) -> Vec<crate::disruption::Budget> {
    use crate::disruption::{Amount, Budget, Window};
    let mut out = Vec::new();
    for (i, b) in d.budgets.iter().enumerate() {
        let bpath = format!("{path}.budgets[{i}]");
        let nodes = match &b.nodes {
            NodesValue::Count(n) => Ok(Amount::Nodes(*n)),
            NodesValue::Text(t) => t.parse::<Amount>(),
        };
        let nodes = match nodes {
            Ok(n) => n,
            Err(e) => {
                v.error(&format!("{bpath}.nodes"), e);
                continue;
            }
        };
        let window = match (&b.schedule, &b.duration) {
            (None, None) => {
                if b.timezone.is_some() {
                    v.error(&format!("{bpath}.timezone"), "is only used with a schedule");
                }
                None
            }
            (Some(_), None) => {
                v.error(
                    &format!("{bpath}.duration"),
                    "required with a schedule: how long the budget applies each time it starts",
                );
                continue;
            }
            (None, Some(_)) => {
                v.error(
                    &format!("{bpath}.schedule"),
                    "required with a duration: when the budget starts to apply (cron, e.g. \"0 9 * * 1-5\")",
                );
                continue;
            }
            (Some(schedule), Some(duration)) => {
                let duration = v.positive_duration(&format!("{bpath}.duration"), duration, "");
                match Window::new(schedule, duration, b.timezone.as_deref().unwrap_or("")) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        let key = if e.starts_with("timezone") {
                            "timezone"
                        } else {
                            "schedule"
                        };
                        v.error(&format!("{bpath}.{key}"), e);
                        continue;
                    }
                }
            }
        };
        out.push(Budget {
            name: b.name.clone().unwrap_or(bpath),
            nodes,
            reasons: b.reasons.clone(),
            window,
        });
    }
    out
}

fn build_pool(p: &PoolConfig, path: &str, v: &mut Validator<'_>) -> Pool {
    // Node names are `<pool>-<suffix>`: keep room for the suffix in a 63-character label.
    if !is_dns_label(&p.name) || p.name.len() > 40 {
        v.error(
            &format!("{path}.name"),
            format!(
                "{:?} must be a DNS label of at most 40 characters (lowercase letters, digits, '-')",
                p.name
            ),
        );
    }
    if p.min > p.max {
        v.error(
            &format!("{path}.min"),
            format!("min ({}) is greater than max ({})", p.min, p.max),
        );
    }
    if p.max == 0 {
        v.error(&format!("{path}.max"), "must be at least 1");
    }
    let t = &p.template;
    let tpath = format!("{path}.template");
    let cpu = v.positive_quantity(&format!("{tpath}.cpu"), &t.cpu, parse_cpu);
    let memory = v.positive_quantity(&format!("{tpath}.memory"), &t.memory, parse_memory);
    if t.pods == 0 {
        v.error(&format!("{tpath}.pods"), "must be at least 1");
    }
    if !(t.price_per_hour.is_finite() && t.price_per_hour >= 0.0) {
        v.error(
            &format!("{tpath}.price_per_hour"),
            "must be zero or a positive number",
        );
    }
    let boot_time = v.duration(&format!("{tpath}.boot_time"), &t.boot_time);
    let drain_timeout = p
        .drain_timeout
        .as_ref()
        .map(|d| v.positive_duration(&format!("{path}.drain_timeout"), d, ""));
    check_provider(&p.provider, &format!("{path}.provider"), v);
    let defaults = crate::lifecycle::LifecycleConfig::for_boot_time(boot_time);
    let mut timing = |key: &str, given: &Option<HumanDuration>, default: Duration| match given {
        None => default,
        Some(d) => v.positive_duration(&format!("{path}.{key}"), d, ""),
    };
    let provision_timeout = timing(
        "provision_timeout",
        &p.provision_timeout,
        defaults.provision_timeout,
    );
    let join_timeout = timing("join_timeout", &p.join_timeout, defaults.join_timeout);

    for name in t.extended_resources.keys() {
        if !crate::quantity::is_extended_resource(name) {
            v.error(
                &format!("{tpath}.extended_resources.{name}"),
                "is not an extended resource: it needs a domain other than kubernetes.io, as in nvidia.com/gpu",
            );
        }
    }
    let allocatable = Resources::new(cpu, memory, u64::from(t.pods));
    let headroom = p.headroom.as_ref().map(|h| {
        let hpath = format!("{path}.headroom");
        if h.pods == 0 {
            v.error(
                &format!("{hpath}.pods"),
                "must be at least 1 (leave headroom out for none)",
            );
        }
        let requests = Resources::pod(
            v.positive_quantity(&format!("{hpath}.cpu"), &h.cpu, parse_cpu),
            v.positive_quantity(&format!("{hpath}.memory"), &h.memory, parse_memory),
        );
        if cpu > 0 && memory > 0 && !requests.fits_in(&allocatable) {
            v.error(
                &hpath,
                format!(
                    "one pod of {} CPU / {} memory does not fit a node of the pool ({} / {})",
                    h.cpu, h.memory, t.cpu, t.memory
                ),
            );
        }
        Headroom {
            pods: h.pods,
            requests,
        }
    });
    let mut labels: Labels = p.labels.clone();
    labels.insert(POOL_LABEL.to_string(), p.name.clone());
    let settings_hash = settings_hash(p);
    labels.insert(crate::model::HASH_LABEL.to_string(), settings_hash.clone());
    let expire_after = p
        .expire_after
        .as_ref()
        .map(|d| v.positive_duration(&format!("{path}.expire_after"), d, ""));
    Pool {
        name: p.name.clone(),
        min: p.min,
        max: p.max,
        template: NodeTemplate {
            allocatable,
            extended: t.extended_resources.clone(),
            labels,
            taints: p.taints.clone(),
            price_per_hour: t.price_per_hour,
            boot_time,
        },
        priority: p.priority,
        provider: p.provider.kind().to_string(),
        drain_timeout,
        provision_timeout,
        join_timeout,
        scale_down_utilization_below: p.scale_down_utilization_below.inspect(|&u| {
            v.fraction(&format!("{path}.scale_down_utilization_below"), u);
        }),
        headroom,
        disruption: budgets(&p.disruption, &format!("{path}.disruption"), v),
        expire_after,
        settings_hash,
    }
}

/// The hash of what shapes a pool's nodes (template, labels, taints,
/// provider settings; not min, max or timing): a node launched with
/// another is drifted. Versioned, so a change of how it is computed can be
/// told from a change of the settings.
fn settings_hash(p: &PoolConfig) -> String {
    #[derive(serde::Serialize)]
    struct Shaping<'a> {
        template: &'a TemplateConfig,
        labels: &'a std::collections::BTreeMap<String, String>,
        taints: &'a [crate::model::Taint],
        provider: &'a ProviderConfig,
    }
    let text = serde_saphyr::to_string(&Shaping {
        template: &p.template,
        labels: &p.labels,
        taints: &p.taints,
        provider: &p.provider,
    })
    .unwrap_or_default();
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("v1-{hash:016x}")
}

fn check_provider(provider: &ProviderConfig, path: &str, v: &mut Validator<'_>) {
    match provider {
        ProviderConfig::Docker(d) => {
            let path = format!("{path}.docker");
            if d.image.trim().is_empty() {
                v.error(&format!("{path}.image"), "must not be empty");
            }
            if d.network.trim().is_empty() {
                v.error(&format!("{path}.network"), "must not be empty");
            }
            if !d.server_url.starts_with("https://") {
                v.error(
                    &format!("{path}.server_url"),
                    format!("{:?} must start with https://", d.server_url),
                );
            }
            v.secret_source(&path, &d.token_file, &d.token_env, "token");
            v.duration(&format!("{path}.stop_timeout"), &d.stop_timeout);
        }
        ProviderConfig::AwsEc2(a) => {
            let path = format!("{path}.aws_ec2");
            if a.region.trim().is_empty() {
                v.error(&format!("{path}.region"), "must not be empty");
            }
            if a.subnets.is_empty() {
                v.error(&format!("{path}.subnets"), "at least one subnet is required");
            }
            if !a.server_url.starts_with("https://") {
                v.error(
                    &format!("{path}.server_url"),
                    format!("{:?} must start with https://", a.server_url),
                );
            }
            if a.token_secret.trim().is_empty() {
                v.error(
                    &format!("{path}.token_secret"),
                    "name the Secrets Manager secret or ssm:<parameter> holding the K3s token",
                );
            }
            match (&a.launch_template, &a.ami) {
                (None, None) => v.error(&path, "set launch_template, or ami with instance_types"),
                (None, Some(_)) if a.instance_types.is_empty() => v.error(
                    &format!("{path}.instance_types"),
                    "required when launching from an ami",
                ),
                _ => {}
            }
        }
        ProviderConfig::AwsAsg(a) => {
            let path = format!("{path}.aws_asg");
            if a.region.trim().is_empty() {
                v.error(&format!("{path}.region"), "must not be empty");
            }
            if a.group.trim().is_empty() {
                v.error(&format!("{path}.group"), "name the Auto Scaling group");
            }
            v.duration(&format!("{path}.launch_wait"), &a.launch_wait);
        }
        ProviderConfig::Exec(e) => {
            let path = format!("{path}.exec");
            for (key, cmd) in [("create", &e.create), ("delete", &e.delete), ("list", &e.list)] {
                if cmd.trim().is_empty() {
                    v.error(&format!("{path}.{key}"), "must not be empty");
                }
            }
            v.positive_duration(
                &format!("{path}.timeout"),
                &e.timeout,
                " (every command would time out)",
            );
            if e.token_file.is_some() && e.token_env.is_some() {
                v.error(&path, "set only one of token_file and token_env");
            }
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The effective configuration as YAML (what `k3scale validate` prints).
pub fn to_yaml(config: &Config) -> String {
    serde_saphyr::to_string(config).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
}
