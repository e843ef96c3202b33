//! Machines behind user commands: bare metal, Proxmox, Hetzner, anything.
//!
//! Each call runs one configured command with `sh -c`. Contract (README,
//! "Exec provider"): the request is JSON on stdin and also in `K3SCALE_*`
//! environment variables; the answer is JSON on stdout; the exit code says
//! what kind of failure it was. Commands time out (the whole process group
//! is killed), output is bounded, stderr is kept (secrets redacted) for the
//! error message.

use super::secret::Secret;
use super::{Machine, NodeProvider, ProviderError, unix_now};
use k3scale_core::config::ExecProviderConfig;
use k3scale_core::{Pool, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tracing::{info, warn};

/// Exit codes of the contract.
pub const EXIT_NOT_FOUND: i32 = 10;
pub const EXIT_INSUFFICIENT_CAPACITY: i32 = 11;
pub const EXIT_TRANSIENT: i32 = 12;
/// Largest stdout accepted from a command.
pub const MAX_STDOUT: usize = 1 << 20;
/// How long the output of a command that has exited is still read: enough
/// for what is in the pipes, not for a child it left holding them.
const EXIT_GRACE: Duration = Duration::from_millis(500);
/// How much of stderr goes into an error message (the end of it).
const STDERR_TAIL: usize = 4096;
/// The only variables of k3scale's own environment a command sees (plus
/// `env:` of the pool and the `K3SCALE_*` request): a script echoing its
/// environment must not leak a secret k3scale was given (`*_env`).
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "SSH_AUTH_SOCK",
];

#[derive(Debug)]
pub struct ExecProvider {
    cluster: String,
    pool: Pool,
    config: ExecProviderConfig,
    timeout: Duration,
    token: Option<Secret>,
}

/// What a command receives on stdin.
#[derive(Debug, Serialize)]
struct Request<'a> {
    version: u32,
    action: &'a str,
    cluster: &'a str,
    pool: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    template: Template<'a>,
}

#[derive(Debug, Serialize)]
struct Template<'a> {
    cpu_milli: u64,
    memory_bytes: u64,
    pods: u64,
    labels: &'a BTreeMap<String, String>,
    taints: &'a [k3scale_core::model::Taint],
}

#[derive(Debug, Deserialize)]
struct Created {
    name: String,
    #[serde(default)]
    provider_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Listed {
    machines: Vec<ListedMachine>,
}

#[derive(Debug, Deserialize)]
struct ListedMachine {
    name: String,
    #[serde(default)]
    provider_id: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    created_at: Option<u64>,
    #[serde(default = "running_default")]
    running: bool,
}

fn running_default() -> bool {
    true
}

impl ExecProvider {
    pub fn new(cluster: &str, pool: Pool, config: ExecProviderConfig) -> Result<Self, ProviderError> {
        let timeout = config.timeout.get();
        let token = match (&config.token_file, &config.token_env) {
            (None, None) => None,
            (file, env) => Some(
                Secret::load(file.as_deref(), env.as_deref())
                    .map_err(|e| ProviderError::Fatal(format!("pool {}: K3s token: {e}", pool.name)))?,
            ),
        };
        Ok(ExecProvider {
            cluster: cluster.to_string(),
            pool,
            config,
            timeout,
            token,
        })
    }

    /// The end of a command's stderr for an error message: redacted, then cut.
    fn stderr_tail(&self, raw: &[u8]) -> String {
        let text = String::from_utf8_lossy(raw);
        match &self.token {
            Some(t) => t.redact_tail(text.trim(), STDERR_TAIL),
            None => text.trim().to_string(),
        }
    }

    /// Run the command for `action`; `Ok(stdout)` on exit 0.
    async fn run(&self, action: &str, command: &str, name: Option<&str>) -> Result<Vec<u8>, ProviderError> {
        let t = &self.pool.template;
        let request = Request {
            version: 1,
            action,
            cluster: &self.cluster,
            pool: &self.pool.name,
            name,
            template: Template {
                cpu_milli: t.allocatable.cpu_milli,
                memory_bytes: t.allocatable.memory_bytes,
                pods: t.allocatable.pods,
                labels: &t.labels,
                taints: &t.taints,
            },
        };
        let input = serde_json::to_vec(&request).map_err(|e| ProviderError::Fatal(e.to_string()))?;
        let mut cmd = Command::new("sh");
        // Only what a script needs of k3scale's environment: never the
        // secrets k3scale was given by `*_env` (a webhook URL, AWS keys).
        cmd.env_clear().envs(
            INHERITED_ENV
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
        );
        cmd.arg("-c")
            .arg(command)
            .envs(&self.config.env)
            .env("K3SCALE_ACTION", action)
            .env("K3SCALE_CLUSTER", &self.cluster)
            .env("K3SCALE_POOL", &self.pool.name)
            .env("K3SCALE_NAME", name.unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(token) = &self.token {
            cmd.env("K3S_TOKEN", token.expose());
        }
        let what = format!("{action} command of pool {}", self.pool.name);
        let mut child = cmd
            .spawn()
            .map_err(|e| ProviderError::Fatal(format!("{what}: cannot start sh: {e}")))?;
        let pgid = child.id();
        let (mut stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let work = async {
            if let Some(stdin) = stdin.as_mut() {
                // A command that does not read its input is fine.
                let _ = stdin.write_all(&input).await;
            }
            drop(stdin);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            // Margin before the tail: a token cut at its start is found and redacted.
            let keep = STDERR_TAIL + self.token.as_ref().map_or(0, |t| t.expose().len());
            let status = {
                let bounded_stdout = async {
                    if !read_bounded(stdout, MAX_STDOUT, &mut out).await {
                        kill_group(pgid); // it would block on a full pipe otherwise
                    }
                };
                let reading = async { tokio::join!(bounded_stdout, read_tail(stderr, keep, &mut err)) };
                tokio::pin!(reading);
                let exited = tokio::select! {
                    _ = &mut reading => None,
                    status = child.wait() => Some(status),
                };
                match exited {
                    // The answer is complete when the script exits: a child it
                    // left holding the pipes (a daemon it started) must not keep
                    // k3scale waiting. What is in the pipes is read at once.
                    Some(status) => {
                        let _ = tokio::time::timeout(EXIT_GRACE, &mut reading).await;
                        status
                    }
                    None => child.wait().await,
                }
            };
            let out = (out.len() <= MAX_STDOUT).then_some(out);
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                kill_group(pgid);
                return Err(ProviderError::Transient(format!(
                    "{what} timed out after {}s and was killed",
                    self.timeout.as_secs()
                )));
            }
        };
        let status = status.map_err(|e| ProviderError::Transient(format!("{what}: {e}")))?;
        let stderr = self.stderr_tail(&err);
        let Some(stdout) = out else {
            return Err(ProviderError::Fatal(format!(
                "{what} wrote more than {MAX_STDOUT} bytes to stdout"
            )));
        };
        let detail = |msg: String| {
            if stderr.is_empty() {
                msg
            } else {
                format!("{msg}: {stderr}")
            }
        };
        match status.code() {
            Some(0) => Ok(stdout),
            Some(EXIT_NOT_FOUND) => Err(ProviderError::NotFound(detail(format!("{what}: not found")))),
            Some(EXIT_INSUFFICIENT_CAPACITY) => Err(ProviderError::InsufficientCapacity(detail(what))),
            Some(EXIT_TRANSIENT) => Err(ProviderError::Transient(detail(format!("{what} asked to retry")))),
            // 128 + N: the script was killed by signal N (OOM killer, reboot...).
            Some(code @ 129..=192) => Err(ProviderError::Transient(detail(format!(
                "{what} was killed by signal {}",
                code - 128
            )))),
            Some(code) => Err(ProviderError::Fatal(detail(format!("{what} exited with {code}")))),
            None => Err(ProviderError::Transient(detail(format!(
                "{what} was killed by a signal"
            )))),
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, action: &str, stdout: &[u8]) -> Result<T, ProviderError> {
        serde_json::from_slice(stdout).map_err(|e| {
            let text = String::from_utf8_lossy(stdout);
            let head = match &self.token {
                Some(t) => t.redact_head(&text, 200),
                None => text.chars().take(200).collect(),
            };
            // serde names the value it choked on: that may be the token.
            let why = self.scrub(&e.to_string());
            ProviderError::Fatal(format!(
                "{action} command of pool {} printed invalid JSON ({why}): {head:?}",
                self.pool.name
            ))
        })
    }

    /// `text` from a command's answer, with the token taken out.
    fn scrub(&self, text: &str) -> String {
        match &self.token {
            Some(t) => t.redact(text),
            None => text.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl NodeProvider for ExecProvider {
    fn kind(&self) -> &'static str {
        "exec"
    }

    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        info!(pool = %self.pool.name, node = %name, "running create command");
        let out = self.run("create", &self.config.create, Some(name)).await?;
        self.created_from(name, &out)
    }

    async fn delete(&self, name: &str) -> Result<(), ProviderError> {
        info!(pool = %self.pool.name, node = %name, "running delete command");
        match self.run("delete", &self.config.delete, Some(name)).await {
            Ok(_) | Err(ProviderError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        let out = self.run("list", &self.config.list, None).await?;
        self.listed_from(&out)
    }
}

impl ExecProvider {
    /// The machine a `create` command's answer (its stdout) describes.
    pub fn created_from(&self, name: &str, stdout: &[u8]) -> Result<Machine, ProviderError> {
        let created: Created = self.parse("create", stdout)?;
        if created.name != name {
            return Err(ProviderError::Fatal(format!(
                "create command of pool {} answered for {:?}, not {name:?}",
                self.pool.name,
                self.scrub(&created.name)
            )));
        }
        Ok(Machine {
            name: created.name,
            pool: self.pool.name.clone(),
            provider_id: created.provider_id.unwrap_or_else(|| format!("exec://{name}")),
            created_at: unix_now(),
            running: true,
        })
    }

    /// The pool's machines a `list` command's answer (its stdout) names.
    pub fn listed_from(&self, stdout: &[u8]) -> Result<Vec<Machine>, ProviderError> {
        let listed: Listed = self.parse("list", stdout)?;
        // Names are `<pool>-<suffix>`: anything else is not one of this pool's
        // machines, and adopting it would put it under k3scale's lifecycle.
        let prefix = format!("{}-", self.pool.name);
        Ok(listed
            .machines
            .into_iter()
            .filter(|m| {
                let ours = m.name.starts_with(&prefix) && m.name.len() > prefix.len();
                if !ours {
                    warn!(pool = %self.pool.name, name = %self.scrub(&m.name), "list command answered a machine not named {prefix}…: ignored");
                }
                ours
            })
            .map(|m| Machine {
                provider_id: m.provider_id.unwrap_or_else(|| format!("exec://{}", m.name)),
                name: m.name,
                pool: self.pool.name.clone(),
                created_at: m.created_at.map_or_else(unix_now, Time::from_secs),
                running: m.running,
            })
            .collect())
    }
}

/// Read `r` into `buf` until its end; false once it passes `limit` bytes.
/// Reads straight into `buf`, so a read cut short leaves what came so far.
async fn read_bounded(r: Option<impl AsyncRead + Unpin>, limit: usize, buf: &mut Vec<u8>) -> bool {
    let Some(mut r) = r else { return true };
    let mut chunk = [0u8; 8192];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > limit {
            return false;
        }
    }
    true
}

/// Keep the last `keep` bytes of `r` in `tail`, reading it to the end so
/// the child never blocks.
async fn read_tail(r: Option<impl AsyncRead + Unpin>, keep: usize, tail: &mut Vec<u8>) {
    let Some(mut r) = r else { return };
    let mut chunk = [0u8; 8192];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > keep {
            tail.drain(..tail.len() - keep);
        }
    }
}

/// Kill the command and everything it started (it leads its own process group).
fn kill_group(pgid: Option<u32>) {
    if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}
