//! The tenant's provider credentials: the Secrets its senders' `credentialsSecretRef` name, read
//! only from the operator's credentials namespace and used only when each Secret is labelled for
//! this tenant.
//!
//! Whoever may write a Tenant chooses that reference. Without these checks they could make the
//! operator read any Secret in the cluster, or another tenant's credentials, and hand it to the
//! engine as their own channel. The namespace is checked before anything is read (and the
//! operator's RBAC allows reading Secrets in that namespace only); the label is the platform
//! admin's statement of which tenant a Secret belongs to.

use crate::operator::plan::SLUG_LABEL;
use crate::operator::status::Finding;
use crate::tenant::{ConditionType, SecretRef, Tenant};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

const KIND: ConditionType = ConditionType::EngineRegistered;

/// A refusal when a sender's reference names a namespace other than `allowed`: nothing is
/// read then. `field` is where the sender is written (`spec.whatsapp.senders[0]`).
pub fn namespace_refusal(field: &str, reference: &SecretRef, allowed: &str) -> Option<Finding> {
    (reference.namespace != allowed).then(|| {
        Finding::failed(
            KIND,
            "CredentialsNamespaceNotAllowed",
            format!(
                "{field}.credentialsSecretRef names namespace {}: credentials Secrets are read only from {allowed}",
                reference.namespace
            ),
        )
    })
}

/// A refusal when `secret` is not labelled `flomastr.io/tenant: <slug>` for this tenant.
pub fn ownership_refusal(
    tenant: &Tenant,
    reference: &SecretRef,
    secret: &Secret,
) -> Option<Finding> {
    let slug = tenant.slug();
    let owner = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SLUG_LABEL));
    (owner.map(String::as_str) != Some(slug)).then(|| {
        Finding::failed(
            KIND,
            "CredentialsNotForTenant",
            format!(
                "the Secret {}/{} is not labelled {SLUG_LABEL}: {slug}, so it is not this tenant's",
                reference.namespace, reference.name
            ),
        )
    })
}

/// Each sender's credentials Secret, in the order of the tenant's senders, or the finding that
/// says why one cannot be used. A Secret several senders name is read once.
pub async fn fetch_all(
    client: &kube::Client,
    tenant: &Tenant,
    allowed: &str,
) -> Result<Vec<Secret>, Finding> {
    let senders = tenant.spec.whatsapp.senders();
    for (field, sender) in &senders {
        if let Some(refusal) = namespace_refusal(field, &sender.credentials_secret_ref, allowed) {
            return Err(refusal);
        }
    }
    let mut read: Vec<(&SecretRef, Secret)> = Vec::new();
    for (field, sender) in &senders {
        let reference = &sender.credentials_secret_ref;
        if !read.iter().any(|(r, _)| *r == reference) {
            let secret = fetch(client, tenant, field, reference).await?;
            read.push((reference, secret));
        }
    }
    Ok(senders
        .iter()
        .filter_map(|(_, sender)| {
            read.iter()
                .find(|(r, _)| **r == sender.credentials_secret_ref)
                .map(|(_, secret)| secret.clone())
        })
        .collect())
}

/// One credentials Secret (its namespace already checked), or the finding that says why there
/// is none to use.
async fn fetch(
    client: &kube::Client,
    tenant: &Tenant,
    field: &str,
    reference: &SecretRef,
) -> Result<Secret, Finding> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &reference.namespace);
    let secret = match secrets.get_opt(&reference.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(Finding::failed(
                KIND,
                "CredentialsSecretMissing",
                format!(
                    "create the Secret {}/{} named in {field}.credentialsSecretRef, labelled {SLUG_LABEL}: {}",
                    reference.namespace,
                    reference.name,
                    tenant.slug()
                ),
            ));
        }
        Err(error) => {
            return Err(Finding::failed(
                KIND,
                "CredentialsUnreadable",
                error.to_string(),
            ));
        }
    };
    match ownership_refusal(tenant, reference, &secret) {
        Some(refusal) => Err(refusal),
        None => Ok(secret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant(namespace: &str) -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
            "spec": {"displayName": "ACME", "whatsapp": {"provider": "Infobip", "sender": "441134960000",
                     "credentialsSecretRef": {"name": "acme-infobip", "namespace": namespace}}}
        }))
        .unwrap()
    }

    fn secret(labels: serde_json::Value) -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "acme-infobip", "namespace": "flomastr-credentials", "labels": labels},
            "stringData": {"apiKey": "k"}
        }))
        .unwrap()
    }

    #[test]
    fn only_the_credentials_namespace_is_allowed() {
        let refusal = |namespace: &str| {
            let (field, sender) = tenant(namespace).spec.whatsapp.senders().remove(0);
            namespace_refusal(
                &field,
                &sender.credentials_secret_ref,
                "flomastr-credentials",
            )
        };
        assert_eq!(refusal("flomastr-credentials"), None);
        for other in ["kube-system", "tenant-globex", "flomastr-system"] {
            let refusal = refusal(other).unwrap();
            assert_eq!(refusal.reason, "CredentialsNamespaceNotAllowed");
            assert!(!refusal.ok);
            assert!(refusal.message.contains(other), "{}", refusal.message);
        }
    }

    #[test]
    fn a_secret_is_used_only_by_the_tenant_it_is_labelled_for() {
        let acme = tenant("flomastr-credentials");
        let reference = acme
            .spec
            .whatsapp
            .senders()
            .remove(0)
            .1
            .credentials_secret_ref;
        assert_eq!(
            ownership_refusal(
                &acme,
                &reference,
                &secret(json!({"flomastr.io/tenant": "acme"}))
            ),
            None
        );
        for labels in [
            json!({"flomastr.io/tenant": "globex"}),
            json!({"flomastr.io/tenant": "acme-2"}),
            json!({"app": "acme"}),
            json!(null),
        ] {
            let refusal = ownership_refusal(&acme, &reference, &secret(labels.clone())).unwrap();
            assert_eq!(refusal.reason, "CredentialsNotForTenant", "{labels}");
        }
    }
}
