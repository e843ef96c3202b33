//! A local AWS emulator (moto_server from PyPI, installed by
//! scripts/test.sh) on 127.0.0.1, stopped when dropped, and SDK clients
//! pointed at it with dummy credentials.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Dummy credentials: they must never show up in an error or a log.
pub const SECRET_KEY: &str = "k3scale-test-secret-access-key";

#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]') is installed by scripts/test.sh");
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
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
