//! The n8n encryption key's fingerprint. n8n encrypts every credential it stores with this key:
//! started with another one it can decrypt nothing (the worker credential included), and what
//! it saves from then on is under the wrong key. The operator never reads the key (its RBAC
//! cannot): it fingerprints the key it mints, and the n8n pod's provisioning container, which
//! has the key, reports the fingerprint in its termination message and refuses to go on when
//! the key is not the recorded one, so n8n is never started with it (`manifests/n8n/provision.js`).

use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest, Sha256};

/// The provisioning container's termination message on success: `fingerprint sha256:...`.
const REPORT_PREFIX: &str = "fingerprint ";
/// Its termination message when the key is not the recorded one, or missing.
pub const CHANGED: &str = "EncryptionKeyChanged";
pub const MISSING: &str = "EncryptionKeyMissing";

/// `sha256:` and the first 16 hex digits of the key's SHA-256: enough to tell keys apart,
/// nothing to recover the key from. provision.js computes the same.
pub fn fingerprint(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..16])
}

/// The fingerprint a provisioning container of these pods reported after it succeeded.
pub fn reported(pods: &[Pod], container: &str) -> Option<String> {
    pods.iter()
        .filter_map(|pod| pod.status.as_ref()?.init_container_statuses.as_ref())
        .flatten()
        .filter(|status| status.name == container)
        .filter_map(|status| status.state.as_ref()?.terminated.as_ref())
        .filter(|terminated| terminated.exit_code == 0)
        .filter_map(|terminated| terminated.message.as_deref())
        .find_map(parse_report)
}

fn parse_report(message: &str) -> Option<String> {
    let print = message.trim().strip_prefix(REPORT_PREFIX)?;
    let valid = print.len() == "sha256:".len() + 16
        && print.starts_with("sha256:")
        && print["sha256:".len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit());
    valid.then(|| print.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_fingerprint_is_short_stable_and_not_the_key() {
        let key = "0f".repeat(32);
        let print = fingerprint(&key);
        assert_eq!(print, fingerprint(&key));
        assert_eq!(print.len(), "sha256:".len() + 16);
        assert!(!print.contains(&key[..16]));
        assert_ne!(print, fingerprint("another key"));
        // What provision.js computes: node -e "crypto.createHash('sha256').update('k1')..."
        assert_eq!(fingerprint("k1"), "sha256:6ab9f1eb8f7d3388");
    }

    #[test]
    fn the_reported_fingerprint_comes_from_a_successful_provisioning_container() {
        let pod = |code: i32, message: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"initContainerStatuses": [
                {"name": "provision", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                 "state": {"terminated": {"exitCode": code, "message": message}}}]}}))
            .unwrap()
        };
        let print = fingerprint("k1");
        assert_eq!(
            reported(&[pod(0, &format!("fingerprint {print}\n"))], "provision"),
            Some(print.clone())
        );
        assert_eq!(
            reported(&[pod(1, &format!("fingerprint {print}"))], "provision"),
            None
        );
        assert_eq!(
            reported(&[pod(0, &format!("fingerprint {print}"))], "other"),
            None
        );
        assert_eq!(
            reported(
                &[pod(0, "fingerprint sha256:nothex!!nothex!!")],
                "provision"
            ),
            None
        );
    }
}
