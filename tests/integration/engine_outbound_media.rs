//! Media, interactive messages and templates with headers and buttons: each reaches the
//! sandbox in its provider's exact wire format; what a provider cannot carry, what breaks
//! WhatsApp's limits or points a provider at a private host is a 400 naming the field with
//! nothing queued; the window and consent rules of every send still apply.

use crate::engine_harness::{TestEngine, TestTenant};
use crate::policy_harness::{Sandbox, count, engine_and_sandbox, inbound, tenants, wait_for_sent};
use serde_json::{Value, json};

const CONTACT: &str = "447700900001";

/// Sends `body` and returns the path and body the provider received for it.
async fn delivered(
    engine: &TestEngine,
    sandbox: &Sandbox,
    tenant: &TestTenant,
    body: Value,
) -> (String, Value) {
    let response = engine.send(tenant, None, body.clone()).await;
    assert_eq!(response.status(), 202, "{body}");
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    let view = wait_for_sent(engine, tenant, &id).await;
    let provider_id = view["provider_message_id"].as_str().unwrap_or_default();
    let request = sandbox
        .state
        .requests()
        .into_iter()
        .find(|r| {
            (200..300).contains(&r.status)
                && (r.message_id.as_deref() == Some(provider_id)
                    || r.body["biz_opaque_callback_data"] == id.as_str())
        })
        .unwrap_or_else(|| panic!("no accepted request for {id}: {view}"));
    (request.path, request.body)
}

/// The field a 400 names, and that nothing was queued.
async fn refused(engine: &TestEngine, tenant: &TestTenant, body: Value) -> (u16, Value) {
    let before = count(engine, "SELECT count(*) FROM outbound_messages").await;
    let response = engine.send(tenant, None, body.clone()).await;
    let status = response.status().as_u16();
    let error: Value = response.json().await.unwrap();
    let after = count(engine, "SELECT count(*) FROM outbound_messages").await;
    assert_eq!(
        before, after,
        "nothing queued on a refusal of {body}: {error}"
    );
    (status, error)
}

fn image() -> Value {
    json!({"type": "image", "url": "https://cdn.example.com/p/owl.png", "caption": "An owl"})
}

fn pdf() -> Value {
    json!({"type": "document", "url": "https://cdn.example.com/invoice-42.pdf"})
}

fn buttons() -> Value {
    json!({"type": "button", "header": {"type": "text", "text": "Your order"},
           "body": {"text": "Deliver tomorrow?"}, "footer": {"text": "Reply below"},
           "action": {"buttons": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No, later"}]}})
}

fn list() -> Value {
    json!({"type": "list", "body": {"text": "Pick a slot"},
           "action": {"button": "Slots", "sections": [
               {"title": "Morning", "rows": [{"id": "m9", "title": "09:00", "description": "Early"}]},
               {"title": "Evening", "rows": [{"id": "e6", "title": "18:00"}]}]}})
}

#[tokio::test]
async fn media_of_each_kind_reaches_each_provider_in_its_wire_format() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenants = tenants(&engine, &sandbox, json!({})).await;
    for (provider, tenant) in &tenants {
        assert_eq!(
            inbound(&engine, provider, tenant, CONTACT, "hola").await,
            200
        );
    }
    let (ib, meta, tw) = (&tenants[0].1, &tenants[1].1, &tenants[2].1);

    // InfoBip: one endpoint per kind, the URL as mediaUrl.
    let kinds = [
        (
            image(),
            "image",
            json!({"mediaUrl": "https://cdn.example.com/p/owl.png", "caption": "An owl"}),
        ),
        (
            json!({"type": "document", "url": "https://cdn.example.com/invoice-42.pdf", "caption": "Invoice", "filename": "invoice.pdf"}),
            "document",
            json!({"mediaUrl": "https://cdn.example.com/invoice-42.pdf", "caption": "Invoice", "filename": "invoice.pdf"}),
        ),
        (
            json!({"type": "audio", "url": "https://cdn.example.com/a.ogg"}),
            "audio",
            json!({"mediaUrl": "https://cdn.example.com/a.ogg"}),
        ),
        (
            json!({"type": "video", "url": "https://cdn.example.com/v.mp4"}),
            "video",
            json!({"mediaUrl": "https://cdn.example.com/v.mp4"}),
        ),
        (
            json!({"type": "sticker", "url": "https://cdn.example.com/s.webp"}),
            "sticker",
            json!({"mediaUrl": "https://cdn.example.com/s.webp"}),
        ),
    ];
    for (media, kind, content) in kinds {
        let (path, body) = delivered(
            &engine,
            &sandbox,
            ib,
            json!({"to": CONTACT, "media": media}),
        )
        .await;
        assert_eq!(path, format!("/whatsapp/1/message/{kind}"));
        assert_eq!(body["content"], content, "{kind}");
        assert_eq!(body["from"], ib.sender.as_str());
        assert_eq!(body["to"], CONTACT);
    }

    // Meta: `type` and the object of that name; by link or by a media id uploaded to Meta.
    let (path, body) = delivered(
        &engine,
        &sandbox,
        meta,
        json!({"to": CONTACT, "media": image()}),
    )
    .await;
    assert_eq!(path, format!("/v21.0/{}/messages", meta.sender));
    assert_eq!(body["type"], "image");
    assert_eq!(
        body["image"],
        json!({"link": "https://cdn.example.com/p/owl.png", "caption": "An owl"})
    );
    let by_id = json!({"type": "document", "id": "1013859600285441", "filename": "menu.pdf"});
    let (_, body) = delivered(
        &engine,
        &sandbox,
        meta,
        json!({"to": CONTACT, "media": by_id}),
    )
    .await;
    assert_eq!(
        body["document"],
        json!({"id": "1013859600285441", "filename": "menu.pdf"})
    );
    let sticker = json!({"type": "sticker", "url": "https://cdn.example.com/s.webp"});
    let (_, body) = delivered(
        &engine,
        &sandbox,
        meta,
        json!({"to": CONTACT, "media": sticker}),
    )
    .await;
    assert_eq!(body["type"], "sticker");
    assert_eq!(
        body["sticker"],
        json!({"link": "https://cdn.example.com/s.webp"})
    );

    // Twilio: one MediaUrl; an image's caption is the Body.
    let (path, body) = delivered(
        &engine,
        &sandbox,
        tw,
        json!({"to": CONTACT, "media": image()}),
    )
    .await;
    assert!(path.ends_with("/Messages.json"), "{path}");
    assert_eq!(body["MediaUrl"], "https://cdn.example.com/p/owl.png");
    assert_eq!(body["Body"], "An owl");
    let (_, body) = delivered(
        &engine,
        &sandbox,
        tw,
        json!({"to": CONTACT, "media": pdf()}),
    )
    .await;
    assert_eq!(body["MediaUrl"], "https://cdn.example.com/invoice-42.pdf");
    assert!(body.get("Body").is_none(), "{body}");
}

#[tokio::test]
async fn interactive_messages_and_rich_templates_reach_meta_and_infobip_exactly() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenants = tenants(&engine, &sandbox, json!({})).await;
    let (ib, meta) = (&tenants[0].1, &tenants[1].1);
    for (provider, tenant) in &tenants[..2] {
        assert_eq!(
            inbound(&engine, provider, tenant, CONTACT, "hola").await,
            200
        );
    }

    let (path, body) = delivered(
        &engine,
        &sandbox,
        meta,
        json!({"to": CONTACT, "interactive": buttons()}),
    )
    .await;
    assert!(path.ends_with("/messages"));
    assert_eq!(body["type"], "interactive");
    assert_eq!(
        body["interactive"],
        json!({"type": "button", "header": {"type": "text", "text": "Your order"},
               "body": {"text": "Deliver tomorrow?"}, "footer": {"text": "Reply below"},
               "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                                      {"type": "reply", "reply": {"id": "no", "title": "No, later"}}]}})
    );
    let (_, body) = delivered(
        &engine,
        &sandbox,
        meta,
        json!({"to": CONTACT, "interactive": list()}),
    )
    .await;
    assert_eq!(
        body["interactive"],
        json!({"type": "list", "body": {"text": "Pick a slot"},
        "action": {"button": "Slots", "sections": [
            {"title": "Morning", "rows": [{"id": "m9", "title": "09:00", "description": "Early"}]},
            {"title": "Evening", "rows": [{"id": "e6", "title": "18:00"}]}]}})
    );

    let (path, body) = delivered(
        &engine,
        &sandbox,
        ib,
        json!({"to": CONTACT, "interactive": buttons()}),
    )
    .await;
    assert_eq!(path, "/whatsapp/1/message/interactive/buttons");
    assert_eq!(
        body["content"],
        json!({"header": {"type": "TEXT", "text": "Your order"}, "body": {"text": "Deliver tomorrow?"},
               "footer": {"text": "Reply below"},
               "action": {"buttons": [{"type": "REPLY", "id": "yes", "title": "Yes"},
                                      {"type": "REPLY", "id": "no", "title": "No, later"}]}})
    );
    let (path, body) = delivered(
        &engine,
        &sandbox,
        ib,
        json!({"to": CONTACT, "interactive": list()}),
    )
    .await;
    assert_eq!(path, "/whatsapp/1/message/interactive/list");
    assert_eq!(body["content"]["action"]["title"], "Slots");
    assert_eq!(
        body["content"]["action"]["sections"][1],
        json!({"title": "Evening", "rows": [{"id": "e6", "title": "18:00"}]})
    );

    // A template with a media header and button parameters, to a contact whose window is closed.
    let template = json!({"name": "order_ready", "language": "en_US", "params": ["42"],
        "header": {"type": "document", "url": "https://cdn.example.com/invoice-42.pdf", "filename": "invoice.pdf"},
        "buttons": [{"type": "quick_reply", "payload": "stop-42"}, {"type": "url", "param": "orders/42"}]});
    let (_, body) = delivered(
        &engine,
        &sandbox,
        meta,
        json!({"to": "447700900077", "template": template}),
    )
    .await;
    assert_eq!(
        body["template"]["components"],
        json!([
            {"type": "header", "parameters": [{"type": "document", "document": {"link": "https://cdn.example.com/invoice-42.pdf", "filename": "invoice.pdf"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "42"}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "stop-42"}]},
            {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "orders/42"}]},
        ])
    );
    let (path, body) = delivered(
        &engine,
        &sandbox,
        ib,
        json!({"to": "447700900077", "template": template}),
    )
    .await;
    assert_eq!(path, "/whatsapp/1/message/template");
    assert_eq!(
        body["messages"][0]["content"]["templateData"],
        json!({"body": {"placeholders": ["42"]},
               "header": {"type": "DOCUMENT", "mediaUrl": "https://cdn.example.com/invoice-42.pdf", "filename": "invoice.pdf"},
               "buttons": [{"type": "QUICK_REPLY", "parameter": "stop-42"}, {"type": "URL", "parameter": "orders/42"}]})
    );
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_nothing_is_queued() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenants = tenants(&engine, &sandbox, json!({})).await;
    for (provider, tenant) in &tenants {
        assert_eq!(
            inbound(&engine, provider, tenant, CONTACT, "hola").await,
            200
        );
    }
    let (ib, meta, tw) = (&tenants[0].1, &tenants[1].1, &tenants[2].1);
    let mut four = buttons();
    four["action"]["buttons"] = json!([{"id": "a", "title": "A"}, {"id": "b", "title": "B"},
                                       {"id": "c", "title": "C"}, {"id": "d", "title": "D"}]);
    let mut long_title = buttons();
    long_title["action"]["buttons"][1]["title"] = json!("A title that is too long");
    let mut eleven_rows = list();
    eleven_rows["action"]["sections"][0]["rows"] = json!(
        (0..10)
            .map(|i| json!({"id": format!("r{i}"), "title": format!("Row {i}")}))
            .collect::<Vec<_>>()
    );
    let with_media = |media: Value| json!({"to": CONTACT, "media": media});
    let cases = [
        (
            meta,
            json!({"to": CONTACT, "interactive": four}),
            "interactive.action.buttons[3]",
        ),
        (
            ib,
            json!({"to": CONTACT, "interactive": long_title}),
            "interactive.action.buttons[1].title",
        ),
        (
            meta,
            json!({"to": CONTACT, "interactive": eleven_rows}),
            "interactive.action.sections[1].rows[0]",
        ),
        (
            meta,
            with_media(json!({"type": "image", "url": "http://cdn.example.com/a.png"})),
            "media.url",
        ),
        (
            meta,
            with_media(json!({"type": "image", "url": "https://10.0.0.7/a.png"})),
            "media.url",
        ),
        (
            meta,
            with_media(json!({"type": "image", "url": "https://169.254.169.254/latest/meta-data"})),
            "media.url",
        ),
        (
            meta,
            with_media(json!({"type": "image", "url": "https://user:pw@cdn.example.com/a.png"})),
            "media.url",
        ),
        (
            meta,
            with_media(json!({"type": "image", "url": "https://localhost/a.png"})),
            "media.url",
        ),
        (
            meta,
            with_media(
                json!({"type": "audio", "url": "https://cdn.example.com/a.ogg", "caption": "x"}),
            ),
            "media.caption",
        ),
        (
            meta,
            with_media(json!({"type": "gif", "url": "https://cdn.example.com/a.gif"})),
            "media.type",
        ),
        (
            ib,
            with_media(json!({"type": "image", "id": "1013859600285441"})),
            "media.id",
        ),
        (
            tw,
            with_media(
                json!({"type": "document", "url": "https://cdn.example.com/a.pdf", "filename": "a.pdf"}),
            ),
            "media.filename",
        ),
        (
            tw,
            with_media(
                json!({"type": "audio", "url": "https://cdn.example.com/a.ogg", "caption": "x"}),
            ),
            "media.caption",
        ),
        (
            tw,
            json!({"to": CONTACT, "interactive": buttons()}),
            "interactive",
        ),
        (
            tw,
            json!({"to": CONTACT, "template": {"name": "HX00000000000000000000000000000001", "language": "en",
                   "header": {"type": "image", "url": "https://cdn.example.com/a.png"}}}),
            "template.header",
        ),
        (
            meta,
            json!({"to": CONTACT, "message": "hi", "media": image()}),
            "media",
        ),
        (
            meta,
            with_media(
                json!({"type": "image", "url": "https://cdn.example.com/big.png", "size": 6_000_000}),
            ),
            "media.size",
        ),
        (
            tw,
            with_media(
                json!({"type": "video", "url": "https://cdn.example.com/v.mp4", "size": 17_000_000}),
            ),
            "media.size",
        ),
    ];
    for (tenant, body, field) in cases {
        let (status, error) = refused(&engine, tenant, body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["details"]["field"], field, "{body}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{error}"
        );
    }
    // A sender of another tenant: refused before anything is queued.
    let (status, error) = refused(
        &engine,
        meta,
        json!({"to": CONTACT, "media": image(), "sender": ib.sender}),
    )
    .await;
    assert_eq!(error["error"]["details"]["field"], "sender", "{error}");
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (403, Some("wrong_sender")),
        "{error}"
    );
    assert!(
        sandbox.state.requests().is_empty(),
        "nothing reached a provider"
    );
}

#[tokio::test]
async fn window_and_consent_rules_apply_to_media_and_interactive_messages() {
    let (engine, sandbox) = engine_and_sandbox().await;
    let tenants = tenants(&engine, &sandbox, json!({})).await;
    let meta = &tenants[1].1;
    // Never wrote: free-form media and interactive need the window; a template does not.
    for body in [
        json!({"to": CONTACT, "media": image()}),
        json!({"to": CONTACT, "interactive": buttons()}),
    ] {
        let (status, error) = refused(&engine, meta, body).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (422, Some("window_closed"))
        );
    }
    // Wrote STOP: the contact is opted out, media or not.
    assert_eq!(inbound(&engine, "meta", meta, CONTACT, "STOP").await, 200);
    let (status, error) = refused(&engine, meta, json!({"to": CONTACT, "media": image()})).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (409, Some("opted_out")),
        "{error}"
    );
    // Another contact writes: now it goes out.
    assert_eq!(
        inbound(&engine, "meta", meta, "447700900002", "hola").await,
        200
    );
    let (_, body) = delivered(
        &engine,
        &sandbox,
        meta,
        json!({"to": "447700900002", "interactive": list()}),
    )
    .await;
    assert_eq!(body["interactive"]["type"], "list");
}
