//! The exec provider with real scripts: the shipped example against the real
//! Docker Engine, and small scripts for every failure the contract names.

use k3scale::provider::exec::ExecProvider;
use k3scale::provider::{NodeProvider, ProviderError};
use k3scale_core::config::ExecProviderConfig;
use k3scale_core::testkit::{GI, pool};
use k3scale_testsupport::contract::Subject;
use k3scale_testsupport::support;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{TOKEN, TestCluster, engine_allows_privileged, standin_image};

/// Each test's scripts, in a directory of its own.
fn scripts(tag: &str) -> support::TempDir {
    support::TempDir::new(&format!("exec-{tag}"))
}

fn provider(
    create: &str,
    delete: &str,
    list: &str,
    timeout: &str,
    env: BTreeMap<String, String>,
) -> ExecProvider {
    // The token comes from a file, as users configure it. Written once per
    // test binary: rewriting it while a parallel test reads it was a race
    // (a reader could find it empty).
    static TOKEN_DIR: std::sync::OnceLock<support::TempDir> = std::sync::OnceLock::new();
    let token_file = TOKEN_DIR
        .get_or_init(|| {
            let dir = support::TempDir::new("exec-token");
            std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
            dir
        })
        .join("token");
    let cfg = ExecProviderConfig {
        create: create.into(),
        delete: delete.into(),
        list: list.into(),
        timeout: timeout.into(),
        env,
        token_file: Some(token_file.display().to_string()),
        token_env: None,
    };
    ExecProvider::new("home", pool("workers", 0, 10, 2000, 4 * GI, 0.04), cfg).unwrap()
}

/// The shipped example script (`deploy/exec/docker-agents.sh`) running
/// pool `pool_name` of `cluster` on the real engine.
fn example_script_provider(cluster: &TestCluster, pool_name: &str) -> ExecProvider {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/exec/docker-agents.sh");
    let env = BTreeMap::from([
        ("K3S_IMAGE".to_string(), standin_image().to_string()),
        ("K3S_NETWORK".to_string(), cluster.network.clone()),
        ("K3S_URL".to_string(), "https://k3s-server:6443".to_string()),
        (
            "K3S_PRIVILEGED".to_string(),
            engine_allows_privileged().to_string(),
        ),
    ]);
    let cfg = ExecProviderConfig {
        create: script.into(),
        delete: script.into(),
        list: script.into(),
        timeout: "60s".into(),
        env,
        token_file: None,
        token_env: None,
    };
    ExecProvider::new(&cluster.name, pool(pool_name, 0, 10, 2000, 4 * GI, 0.04), cfg).unwrap()
}

#[tokio::test]
async fn example_script_runs_a_pool_on_the_real_engine() {
    let cluster = TestCluster::new("exec");
    let p = example_script_provider(&cluster, "workers");
    let a = format!("workers-{}-a", cluster.name);
    let b = format!("workers-{}-b", cluster.name);
    assert!(p.create(&a).await.unwrap().provider_id.starts_with("docker://"));
    p.create(&b).await.unwrap();
    p.create(&b).await.unwrap(); // idempotent
    let mut names: Vec<String> = p.list().await.unwrap().into_iter().map(|m| m.name).collect();
    names.sort();
    assert_eq!(names, vec![a.clone(), b.clone()]);
    assert!(p.list().await.unwrap().iter().all(|m| m.running));
    assert_eq!(cluster.containers(), names);
    p.delete(&a).await.unwrap();
    p.delete(&a).await.unwrap(); // exit 10: already gone is success
    assert_eq!(p.list().await.unwrap().len(), 1);
    assert_eq!(cluster.inspect(&b)["Config"]["Hostname"], b);
}

/// The shipped example script running pools `workers` and `others` of one
/// cluster on the real engine.
async fn contract_subject() -> (TestCluster, Subject) {
    let cluster = TestCluster::new("exec-contract");
    let on = |name: &str| Box::new(example_script_provider(&cluster, name));
    let subject = Subject {
        ours: on("workers"),
        foreign: on("others"),
        our_name: format!("workers-{}", cluster.name),
        foreign_name: format!("others-{}", cluster.name),
    };
    (cluster, subject)
}

k3scale_testsupport::provider_contract!(contract_subject());

#[tokio::test]
async fn request_arrives_on_stdin_and_in_the_environment() {
    let s = scripts("req");
    let create = s.script(
        "create",
        &format!(
            "cat > {dir}/request.json\nenv | grep -E '^K3SCALE_|^K3S_TOKEN=|^SITE=' | sort > {dir}/env\nprintf '{{\"name\":\"%s\",\"provider_id\":\"metal://%s\"}}' \"$K3SCALE_NAME\" \"$K3SCALE_NAME\"",
            dir = s.path().display()
        ),
    );
    let p = provider(
        &create,
        "true",
        "true",
        "10s",
        BTreeMap::from([("SITE".to_string(), "rack-4".to_string())]),
    );
    let m = p.create("workers-abc").await.unwrap();
    assert_eq!(m.provider_id, "metal://workers-abc");
    let req: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.join("request.json")).unwrap()).unwrap();
    assert_eq!(req["version"], 1);
    assert_eq!(req["action"], "create");
    assert_eq!(req["cluster"], "home");
    assert_eq!(req["pool"], "workers");
    assert_eq!(req["name"], "workers-abc");
    assert_eq!(req["template"]["cpu_milli"], 2000);
    assert_eq!(req["template"]["labels"]["k3scale.io/pool"], "workers");
    let env = std::fs::read_to_string(s.join("env")).unwrap();
    assert!(
        env.contains("K3SCALE_ACTION=create\n")
            && env.contains("K3SCALE_NAME=workers-abc\n")
            && env.contains("SITE=rack-4\n"),
        "{env}"
    );
    assert!(
        env.contains(&format!("K3S_TOKEN={TOKEN}\n")),
        "the script gets the token"
    );
}

#[tokio::test]
async fn exit_codes_map_to_typed_errors_with_redacted_stderr() {
    let s = scripts("codes");
    let cases = [
        ("exit 11", "InsufficientCapacity"),
        ("exit 12", "Transient"),
        ("exit 10", "NotFound"),
        ("echo \"join failed with token $K3S_TOKEN\" >&2; exit 3", "Fatal"),
        ("kill -9 $$", "Transient"),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let create = s.script(&format!("c{i}"), body);
        let err = provider(&create, "true", "true", "10s", BTreeMap::new())
            .create("workers-x")
            .await
            .unwrap_err();
        let kind = match &err {
            ProviderError::NotFound(_) => "NotFound",
            ProviderError::InsufficientCapacity(_) => "InsufficientCapacity",
            ProviderError::Transient(_) => "Transient",
            ProviderError::Fatal(_) => "Fatal",
        };
        assert_eq!(kind, *want, "{body}: {err}");
        assert!(!err.to_string().contains(TOKEN), "token leaked: {err}");
    }
    let create = s.script("stderr", "echo \"join failed with token $K3S_TOKEN\" >&2; exit 3");
    let err = provider(&create, "true", "true", "10s", BTreeMap::new())
        .create("workers-x")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "fatal: create command of pool workers exited with 3: join failed with token [redacted]"
    );
}

#[tokio::test]
async fn timeouts_kill_the_command_and_everything_it_started() {
    let s = scripts("timeout");
    let marker = s.join("still-running");
    let create = s.script(
        "slow",
        &format!("(sleep 3; touch {}) &\nsleep 30", marker.display()),
    );
    let started = Instant::now();
    let err = provider(&create, "true", "true", "1s", BTreeMap::new())
        .create("workers-x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Transient(ref m) if m.contains("timed out after 1s")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!marker.exists(), "a background child survived the timeout");
}

#[tokio::test]
async fn bad_json_huge_output_and_wrong_names_are_fatal() {
    let s = scripts("bad");
    let cases = [
        ("echo 'created it!'", "printed invalid JSON"),
        ("yes '{\"name\":\"x\"}'", "wrote more than 1048576 bytes"),
        (
            "echo '{\"name\":\"someone-else\"}'",
            "answered for \"someone-else\"",
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let create = s.script(&format!("b{i}"), body);
        let started = Instant::now();
        let err = provider(&create, "true", "true", "20s", BTreeMap::new())
            .create("workers-x")
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Fatal(ref m) if m.contains(want)),
            "{body}: {err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{body} took {:?}",
            started.elapsed()
        );
    }
    let list = s.script("list", "echo '{\"machines\":[{\"name\":\"workers-a\",\"created_at\":1700000000,\"running\":false},{\"name\":\"workers-b\"}]}'");
    let machines = provider("true", "true", &list, "5s", BTreeMap::new())
        .list()
        .await
        .unwrap();
    assert_eq!(machines.len(), 2);
    assert_eq!(
        machines[0].created_at,
        k3scale_core::Time::from_secs(1_700_000_000)
    );
    assert!(!machines[0].running && machines[1].running);
    assert_eq!(machines[1].provider_id, "exec://workers-b");
}

#[tokio::test]
async fn providers_are_built_from_the_configuration_file() {
    let yaml = "pools:\n  - name: metal\n    template: { cpu: \"4\", memory: 8Gi }\n    provider:\n      exec: { create: ./c, delete: ./d, list: ./l, token_env: K3SCALE_TEST_MISSING_TOKEN }\n  - name: cloud\n    template: { cpu: \"4\", memory: 8Gi }\n    provider:\n      aws_ec2: { region: eu-west-1, server_url: \"https://k3s:6443\", subnets: [a], launch_template: lt, token_secret: k3s-token }\n";
    let loaded = k3scale_core::config::load("k.yaml", yaml).unwrap();
    let err =
        k3scale::provider::from_config("home", &loaded.policy.pools[0], &loaded.config.pools[0].provider)
            .await
            .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Fatal(
            "pool metal: K3s token: environment variable K3SCALE_TEST_MISSING_TOKEN is not set".into()
        )
    );
    let built =
        k3scale::provider::from_config("home", &loaded.policy.pools[1], &loaded.config.pools[1].provider)
            .await;
    #[cfg(feature = "aws")]
    assert_eq!(built.unwrap().kind(), "aws_ec2");
    #[cfg(not(feature = "aws"))]
    assert!(matches!(built.unwrap_err(), ProviderError::Fatal(ref m) if m.contains("--features aws")));
}

#[tokio::test]
async fn a_token_cut_by_the_stderr_tail_or_the_stdout_head_never_leaks_a_piece() {
    let s = scripts("cut");
    // Pad so the token straddles the 4 KiB tail (and, below, the 200-character head).
    for pad in [4070usize, 4080, 4090, 4096, 4100] {
        let body = format!(
            "printf \"join failed with token %s\" \"$K3S_TOKEN\" >&2; head -c {pad} /dev/zero | tr '\\\\0' x >&2; exit 3"
        );
        let create = s.script(&format!("tail{pad}"), &body);
        let err = provider(&create, "true", "true", "10s", BTreeMap::new())
            .create("workers-x")
            .await
            .unwrap_err()
            .to_string();
        for piece in TOKEN.as_bytes().windows(6) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(
                !err.contains(piece),
                "pad {pad}: a piece {piece:?} of the token leaked"
            );
        }
    }
    for pad in [180usize, 190, 195, 199] {
        let body = format!("head -c {pad} /dev/zero | tr '\\\\0' x; printf \"%s not json\" \"$K3S_TOKEN\"");
        let create = s.script(&format!("head{pad}"), &body);
        let err = provider(&create, "true", "true", "10s", BTreeMap::new())
            .create("workers-x")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid JSON"), "{err}");
        for piece in TOKEN.as_bytes().windows(6) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(
                !err.contains(piece),
                "pad {pad}: a piece {piece:?} of the token leaked: {err}"
            );
        }
    }
}

#[tokio::test]
async fn commands_see_only_the_environment_they_need() {
    let s = scripts("env");
    let out = s.join("env.txt");
    let create = s.script("env", &format!("env > {}; exit 3", out.display()));
    let env = BTreeMap::from([("SITE".to_string(), "lab".to_string())]);
    let _ = provider(&create, "true", "true", "10s", env)
        .create("workers-x")
        .await
        .unwrap_err();
    let seen = std::fs::read_to_string(&out).unwrap();
    let names: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    // The test process has CARGO_* and RUST* variables: a command must not
    // inherit them, nor anything else k3scale was given (webhook URLs, AWS keys).
    assert!(!names.iter().any(|n| n.starts_with("CARGO")), "{names:?}");
    for n in &names {
        assert!(
            k3scale::provider::exec::INHERITED_ENV.contains(n)
                || n.starts_with("K3SCALE_")
                || ["K3S_TOKEN", "SITE", "PWD", "SHLVL", "_", "OLDPWD"].contains(n),
            "{n} leaked into the command's environment"
        );
    }
    assert!(seen.contains("SITE=lab") && seen.contains("K3SCALE_ACTION=create"));
    assert!(names.contains(&"PATH"), "PATH is kept: {names:?}");
}

#[tokio::test]
async fn a_script_that_exits_answers_even_if_a_child_still_holds_its_output() {
    let s = scripts("child");
    // Prints its answer, starts something in the background that keeps
    // stdout and stderr open, and exits.
    let create = s.script(
        "create",
        "echo '{\"name\": \"workers-x\"}'; echo started >&2; sleep 30 & exit 0",
    );
    // Waiting for the child (30 s) would end in the 10 s timeout, an error.
    let machine = provider(&create, "true", "true", "10s", BTreeMap::new())
        .create("workers-x")
        .await
        .unwrap();
    assert_eq!(machine.name, "workers-x");
}

#[tokio::test]
async fn a_list_answer_outside_the_pools_names_is_ignored() {
    let s = scripts("names");
    let list = s.script(
        "list",
        r#"echo '{"machines": [{"name": "workers-a1b2c3d4"}, {"name": "db-primary"}, {"name": "workers-"}, {"name": "workersx-1"}]}'"#,
    );
    let machines = provider("true", "true", &list, "10s", BTreeMap::new())
        .list()
        .await
        .unwrap();
    let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["workers-a1b2c3d4"]);
}

mod answers {
    //! The answer parser on arbitrary stdout: a machine list or a Fatal
    //! error, never a panic, and never a piece of the token in the error.
    use super::*;
    use proptest::prelude::*;

    fn answers_provider() -> &'static ExecProvider {
        static P: std::sync::OnceLock<ExecProvider> = std::sync::OnceLock::new();
        P.get_or_init(|| provider("true", "true", "true", "10s", BTreeMap::new()))
    }

    /// JSON-ish stdout built from the answer's own keys, with the token
    /// dropped in somewhere, so inputs often get past the first byte.
    fn jsonish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("\"machines\"".to_string()),
            Just("\"name\"".to_string()),
            Just("\"workers-a\"".to_string()),
            Just("\"provider_id\"".to_string()),
            Just("\"created_at\"".to_string()),
            Just("\"running\"".to_string()),
            Just("true".to_string()),
            Just("null".to_string()),
            Just(format!("\"{TOKEN}\"")),
            "-?[0-9]{1,25}",
            "\"[a-z\\-]{0,10}\"",
        ];
        proptest::collection::vec(token, 0..30).prop_map(|t| t.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn random_bytes_are_an_answer_or_a_fatal_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let p = answers_provider();
            for result in [p.listed_from(&bytes).map(|_| ()), p.created_from("workers-a", &bytes).map(|_| ())] {
                if let Err(e) = result {
                    prop_assert!(matches!(e, ProviderError::Fatal(_)), "{e:?}");
                }
            }
        }

        #[test]
        fn json_like_answers_never_panic_or_leak_the_token(text in jsonish()) {
            let p = answers_provider();
            match p.listed_from(text.as_bytes()) {
                Ok(machines) => prop_assert!(machines.iter().all(|m| m.name.starts_with("workers-") && m.name.len() > 8)),
                Err(e) => prop_assert!(!e.to_string().contains(TOKEN), "{e}"),
            }
            if let Err(e) = p.created_from("workers-a", text.as_bytes()) {
                prop_assert!(!e.to_string().contains(TOKEN), "{e}");
            }
        }
    }
}
