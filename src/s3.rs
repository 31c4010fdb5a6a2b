//! A client of an S3-compatible object store (AWS or any server speaking its API, path-style),
//! built the same way for the engine's media store and the operator's backup targets.

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ClientOptions, RetryConfig};
use std::time::Duration;

/// Where and as whom: `endpoint` absent means AWS itself.
pub struct S3Connection<'a> {
    pub endpoint: Option<&'a str>,
    pub bucket: &'a str,
    pub region: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

/// The client. A store that does not answer is reported in seconds, not after minutes of
/// retries; `request_timeout` bounds one request (a large object's part included).
/// The error names what is wrong, never the secret key.
pub fn client(
    connection: &S3Connection<'_>,
    request_timeout: Duration,
) -> Result<AmazonS3, String> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(connection.bucket)
        .with_region(connection.region)
        .with_access_key_id(connection.access_key_id)
        .with_secret_access_key(connection.secret_access_key)
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(15),
            ..RetryConfig::default()
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(request_timeout),
        );
    if let Some(endpoint) = connection.endpoint {
        let url = url::Url::parse(endpoint).map_err(|e| format!("endpoint: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("endpoint: must be an http(s) URL".into());
        }
        builder = builder
            .with_endpoint(endpoint.trim_end_matches('/'))
            .with_allow_http(url.scheme() == "http")
            .with_virtual_hosted_style_request(false);
    }
    builder.build().map_err(|e| e.to_string())
}
