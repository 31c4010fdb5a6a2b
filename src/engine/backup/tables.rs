//! The tables of a tenant's data, in the order an archive holds them and a restore writes them
//! (a row's references come before it). Each has its export query (`$1` the tenant; one JSON row
//! per result) and its import statement (`$1` a JSON array of archived rows, `$2` the target
//! tenant, `$3` the id salt where the table has ids others refer to).

pub struct Table {
    pub name: &'static str,
    pub export: &'static str,
    pub import: &'static str,
    /// Whether the import takes the id salt (`$3`): ids of its own or references to restored rows.
    pub salted: bool,
}

macro_rules! table {
    ($name:literal, $salted:expr) => {
        Table {
            name: $name,
            export: include_str!(concat!("sql/export/", $name, ".sql")),
            import: include_str!(concat!("sql/import/", $name, ".sql")),
            salted: $salted,
        }
    };
}

pub const TABLES: &[Table] = &[
    table!("jobs", true),
    table!("media", true),
    table!("blocked_conversations", true),
    table!("status_reports", false),
    table!("outbound_messages", true),
    table!("outbound_events", true),
    table!("contact_windows", false),
    table!("kb_documents", true),
    table!("kb_chunks", true),
    table!("ai_memory", false),
    table!("ai_usage", false),
    table!("ai_audit", false),
    table!("message_templates", false),
    table!("template_events", false),
    table!("send_policies", false),
    table!("contact_time_zones", false),
    table!("contact_marketing_limits", false),
    table!("consent_events", false),
    table!("contact_consent", false),
    table!("campaign_segments", false),
    table!("campaigns", true),
    table!("campaign_runs", true),
    table!("campaign_recipients", true),
];

/// Tables of the schema that hold tenant rows but are not archived, with the reason (a test
/// checks that every table with a `tenant_id` is in one list or the other).
pub const NOT_ARCHIVED: &[(&str, &str)] = &[
    (
        "media_provider_ids",
        "a cache of Meta's ids of uploaded files (30 days): a restored file is uploaded again",
    ),
    (
        "tenants",
        "the header carries the settings; the registration is the operator's",
    ),
    (
        "worker_tokens",
        "registration: the operator sends the hashes again",
    ),
    (
        "channels",
        "registration with sealed credentials: the header carries ids and addresses",
    ),
    (
        "tenant_ai_settings",
        "registration: the operator sends the Tenant's `ai` again",
    ),
    ("nl_query_scopes", "per connection, gone when it closes"),
];

pub fn position(name: &str) -> Option<usize> {
    TABLES.iter().position(|t| t.name == name)
}

pub fn names() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name).collect()
}
