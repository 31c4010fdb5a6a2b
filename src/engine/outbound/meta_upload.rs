//! Meta's media upload (`POST /{version}/{phone-number-id}/media`, multipart: `messaging_product`,
//! `type`, `file`), with the sender's token: how a file the engine keeps is sent through Meta,
//! which sends media by its own id. Same client, allow-list and address checks as sends.

use super::clients::{Clients, SendOutcome};
use super::provider_error;
use crate::engine::tenants::Channel;
use rand::RngCore;

/// The file to upload.
pub struct Upload<'a> {
    pub bytes: &'a [u8],
    pub content_type: &'a str,
    pub filename: Option<&'a str>,
}

impl Clients {
    /// Uploads the file for the channel's number; Meta's media id, or the outcome the send
    /// ends in (retry on throttling and 5xx, permanent on a refusal).
    pub async fn meta_upload(
        &self,
        channel: &Channel,
        file: &Upload<'_>,
    ) -> Result<String, SendOutcome> {
        let base = self.destination_for(channel)?;
        let token = channel
            .secrets
            .access_token
            .as_ref()
            .map(|s| s.expose().to_owned())
            .unwrap_or_default();
        let (content_type, body) = multipart(file);
        let url = base.url_with_segments(&[self.meta_version(), &channel.sender, "media"]);
        let response = self
            .http()
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|error| SendOutcome::Retry {
                code: "media_upload".into(),
                message: format!(
                    "the media upload to Meta failed: {}",
                    if error.is_timeout() {
                        "timed out"
                    } else {
                        "no answer"
                    }
                ),
                after: None,
            })?;
        let status = response.status().as_u16();
        let body = provider_error::read_json(response).await;
        if (200..300).contains(&status)
            && let Some(id) = body["id"]
                .as_str()
                .filter(|id| !id.is_empty() && id.len() <= 256)
        {
            return Ok(id.to_owned());
        }
        let code = body["error"]["code"].as_i64().unwrap_or(0).to_string();
        let message = format!(
            "Meta refused the media upload (HTTP {status}): {}",
            provider_error::description(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("no reason given")
            )
        );
        Err(if status == 429 || status >= 500 {
            SendOutcome::Retry {
                code,
                message,
                after: None,
            }
        } else {
            SendOutcome::Permanent { code, message }
        })
    }
}

/// `multipart/form-data` with Meta's three fields; the boundary is random so no file can contain it
/// by chance (and a filename cannot break out of its quotes).
fn multipart(file: &Upload<'_>) -> (String, Vec<u8>) {
    let mut random = [0u8; 16];
    rand::rng().fill_bytes(&mut random);
    let boundary = format!("flomastr-{}", hex::encode(random));
    let name: String = file
        .filename
        .unwrap_or("file")
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut body = Vec::with_capacity(file.bytes.len() + 512);
    for (field, value) in [
        ("messaging_product", "whatsapp"),
        ("type", file.content_type),
    ] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {}\r\n\r\n",
            file.content_type
        )
        .as_bytes(),
    );
    body.extend_from_slice(file.bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
