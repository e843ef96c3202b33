//! A local AWS emulator (moto_server from PyPI, installed by
//! scripts/test.sh) on 127.0.0.1, stopped when dropped, and SDK clients
//! pointed at it with dummy credentials.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

/// Dummy credentials: they must never show up in an error or a log.
pub const SECRET_KEY: &str = "k3scale-test-secret-access-key";

#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    /// Start an emulator on a port it picks itself (`-p 0`) and read which
    /// from its banner: a port chosen here and handed over could be taken
    /// by another test's listener before the emulator binds it, and the
    /// test would then talk to that listener.
    pub async fn start() -> Moto {
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server (pip install 'moto[server]') is installed by scripts/test.sh");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the banner, then keeps draining so the emulator never blocks on a full pipe.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("Running on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("moto_server did not say where it listens within 30 s");
        Moto { child, url }
    }

    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config(&self.url)
    }
}

/// An SDK configuration for `url`: region us-east-1, dummy credentials,
/// the standard retry policy.
pub fn sdk_config(url: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("AKIDK3SCALETEST", SECRET_KEY, None, None, "test"),
        ))
        .retry_config(
            aws_config::retry::RetryConfig::standard().with_initial_backoff(Duration::from_millis(20)),
        )
        .build()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a fault rule answers instead of the emulator: status, content type, body.
pub type Fault = (u16, &'static str, String);

/// A proxy that hands the emulator one request at a time. moto checks a
/// write's condition and then writes without a lock, so two conditional
/// writes racing on one item can both pass there; real DynamoDB decides
/// them atomically. Tests of what two contenders see go through this.
pub async fn serial_proxy(target: String) -> String {
    faulty_proxy(target, |_, _| None).await.0
}

/// A proxy in front of the emulator, forwarding one request at a time (see
/// [`serial_proxy`]): for each request (its number from 0 and its body),
/// `rule` may answer with a fault; otherwise the request is forwarded.
/// Returns the proxy's URL and the count of requests seen.
pub async fn faulty_proxy(
    target: String,
    rule: impl Fn(usize, &str) -> Option<Fault> + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let rule = Arc::new(rule);
    let http = reqwest::Client::new();
    let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    let app =
        axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (seen, http, target, rule) = (counter.clone(), http.clone(), target.clone(), rule.clone());
            let one_at_a_time = one_at_a_time.clone();
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if let Some((status, content_type, fault)) = rule(n, &String::from_utf8_lossy(&body)) {
                    return (
                        StatusCode::from_u16(status).unwrap(),
                        [("content-type", content_type)],
                        fault,
                    )
                        .into_response();
                }
                let _turn = one_at_a_time.lock().await;
                let mut req = http.request(method, format!("{target}{uri}")).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        req = req.header(name, value);
                    }
                }
                let resp = req.send().await.unwrap();
                let status = resp.status();
                let content_type = resp.headers().get("content-type").cloned();
                let mut out = (status, resp.bytes().await.unwrap()).into_response();
                if let Some(ct) = content_type {
                    out.headers_mut().insert("content-type", ct);
                }
                out
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// An EC2 (query protocol) error answer.
pub fn ec2_error(status: u16, code: &str) -> Fault {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message></Error></Errors><RequestID>k3scale-test</RequestID></Response>"
    );
    (status, "text/xml", body)
}

/// A DynamoDB (JSON 1.0 protocol) error answer.
pub fn dynamodb_error(status: u16, code: &str) -> Fault {
    let body = format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected"}}"#);
    (status, "application/x-amz-json-1.0", body)
}

/// A launch template `k3s-agent` (an emulator image, t3.medium).
pub async fn launch_template(config: &aws_config::SdkConfig) {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let images = ec2.describe_images().owners("amazon").send().await.unwrap();
    let image = images.images()[0].image_id().unwrap().to_string();
    ec2.create_launch_template()
        .launch_template_name("k3s-agent")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(image)
                .instance_type("t3.medium".into())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// One default subnet in each of two availability zones.
pub async fn two_az_subnets(config: &aws_config::SdkConfig) -> Vec<String> {
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("default-for-az")
        .values("true")
        .build();
    let out = aws_sdk_ec2::Client::new(config)
        .describe_subnets()
        .filters(filter)
        .send()
        .await
        .unwrap();
    let mut by_az = std::collections::BTreeMap::new();
    for s in out.subnets() {
        by_az
            .entry(s.availability_zone().unwrap().to_string())
            .or_insert(s.subnet_id().unwrap().to_string());
    }
    let subnets: Vec<String> = by_az.into_values().take(2).collect();
    assert_eq!(subnets.len(), 2, "two AZs");
    subnets
}

/// k3scale's state table, as deploy/terraform/aws creates it.
pub async fn state_table(config: &aws_config::SdkConfig, table: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let attr = |name: &str, t| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .unwrap()
    };
    let key = |name: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .unwrap()
    };
    aws_sdk_dynamodb::Client::new(config)
        .create_table()
        .table_name(table)
        .attribute_definitions(attr("pk", ScalarAttributeType::S))
        .attribute_definitions(attr("sk", ScalarAttributeType::N))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}
