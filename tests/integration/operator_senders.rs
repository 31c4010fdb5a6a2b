//! A Tenant's senders through the operator on the real API server: a multi-number Tenant is
//! registered with every number, a number another Tenant holds shows in the Tenant's status
//! (EngineRegistered False, reason SenderInUse), and the API server refuses bad sender lists.

use crate::common::{admin_client, install_tenant_crd, unique};
use crate::engine_harness::start_engine;
use crate::operator::{
    CREDENTIALS_NAMESPACE, context, create_tenant, credentials, credentials_name, credentials_with,
    operator_args, operator_client, reconcile_now,
};
use flomastr::tenant::Tenant;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// A Meta credentials Secret (access token only: its numbers use the platform's shared app).
async fn meta_credentials(client: &kube::Client, name: &str, owner: &str) {
    let data = json!({"accessToken": "meta-token-from-secret", "wabaId": "102290129340398"});
    credentials_with(client, CREDENTIALS_NAMESPACE, name, owner, data).await;
}

fn registered(tenant: &Tenant) -> (String, String, String) {
    let condition = tenant
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "EngineRegistered"))
        .expect("an EngineRegistered condition");
    (
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    )
}

#[tokio::test]
async fn every_number_is_registered_and_a_number_of_another_tenant_is_a_condition() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let engine = start_engine().await;
    let ctx = context(operator_client(&client).await, operator_args(&engine)).await;
    let tenants = Api::<Tenant>::all(client.clone());

    // A Tenant with an InfoBip and a Meta number, each with its own Secret.
    let multi = unique("multi");
    credentials(&client, &multi).await;
    let meta_secret = format!("{multi}-meta");
    meta_credentials(&client, &meta_secret, &multi).await;
    let reference = |name: &str| json!({"name": name, "namespace": CREDENTIALS_NAMESPACE});
    create_tenant(
        &client,
        &multi,
        json!({"whatsapp": {"senders": [
            {"provider": "Infobip", "sender": "441134960000", "label": "sales",
             "credentialsSecretRef": reference(&credentials_name(&multi))},
            {"provider": "Meta", "sender": "106540352242922", "label": "support",
             "displayNumber": "+1 555 078 3881", "credentialsSecretRef": reference(&meta_secret)},
        ]}}),
    )
    .await;
    reconcile_now(&client, &ctx, &multi)
        .await
        .expect("the multi-number Tenant reconciles");
    let (status, reason, _) = registered(&tenants.get(&multi).await.unwrap());
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Registered"));
    let view: Value = engine.admin_get(&multi).await.json().await.unwrap();
    let senders: Vec<(&str, &str, &str)> = view["senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["provider"].as_str().unwrap(),
                s["sender"].as_str().unwrap(),
                s["label"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        senders,
        [
            ("infobip", "441134960000", "sales"),
            ("meta", "106540352242922", "support")
        ]
    );
    assert_eq!(view["senders"][1]["display_number"], "+1 555 078 3881");
    assert_eq!(
        view["senders"][1]["credentials_set"],
        json!(["access_token", "waba_id"])
    );

    // A second Tenant claiming the InfoBip number (single-sender form): refused, and said so.
    let late = unique("late");
    credentials(&client, &late).await;
    let claim = json!({"whatsapp": {"provider": "Infobip", "sender": "441134960000",
        "credentialsSecretRef": {"name": credentials_name(&late), "namespace": CREDENTIALS_NAMESPACE}}});
    create_tenant(&client, &late, claim).await;
    let error = reconcile_now(&client, &ctx, &late).await.unwrap_err();
    assert!(error.contains("EngineRegistered"), "{error}");
    let (status, reason, message) = registered(&tenants.get(&late).await.unwrap());
    assert_eq!((status.as_str(), reason.as_str()), ("False", "SenderInUse"));
    assert!(message.contains("441134960000"), "{message}");
    assert!(
        !message.contains(&multi),
        "the holder is not named: {message}"
    );
    let late_view = engine.admin_get(&late).await;
    assert_eq!(
        late_view.status(),
        404,
        "nothing of the refused Tenant is in the engine"
    );
}

#[tokio::test]
async fn the_api_server_refuses_bad_sender_lists() {
    let client = admin_client().await;
    install_tenant_crd(&client).await;
    let tenants = Api::<Tenant>::all(client.clone());
    let reference = json!({"name": "x", "namespace": CREDENTIALS_NAMESPACE});
    let infobip =
        json!({"provider": "Infobip", "sender": "441134960000", "credentialsSecretRef": reference});
    let refused = [
        (
            json!({"senders": [infobip, infobip]}),
            "must not list a sender twice",
        ),
        (
            json!({"senders": [infobip], "provider": "Infobip", "sender": "441134960000", "credentialsSecretRef": reference}),
            "not both",
        ),
        (
            json!({"provider": "Infobip", "sender": "441134960000"}),
            "all three",
        ),
        (json!({}), "all three"),
        (
            json!({"senders": [{"provider": "Meta", "sender": "+441134960000", "credentialsSecretRef": reference}]}),
            "numeric phone-number-id",
        ),
        (
            json!({"senders": [{"provider": "Infobip", "sender": "441134960000", "label": "", "credentialsSecretRef": reference}]}),
            "label",
        ),
        (
            json!({"senders": (0..21).map(|i| json!({"provider": "Infobip", "sender": format!("4411349600{i:02}"), "credentialsSecretRef": reference})).collect::<Vec<_>>()}),
            "senders",
        ),
    ];
    for (whatsapp, expected) in refused {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant", "metadata": {"name": unique("bad")},
            "spec": {"displayName": "Bad", "whatsapp": whatsapp}
        }))
        .unwrap();
        let error = tenants
            .create(&PostParams::default(), &tenant)
            .await
            .expect_err("refused");
        assert!(error.to_string().contains(expected), "{whatsapp}: {error}");
    }
}
