//! The send policy the engine enforces in front of every send, whoever asks for it (a worker's
//! reply, a campaign): the contact's consent (opt-out keywords, provider opt-out errors, the API),
//! message categories and quiet hours, the marketing frequency cap and the provider's per-user
//! marketing limit, and the template's status in the tenant's catalog.

pub mod caller;
pub mod category;
pub mod consent;
pub mod consent_api;
pub mod contacts;
pub mod gate;
pub mod keywords;
pub mod marketing_limit;
pub mod settings;
pub mod template_sync;
pub mod templates;

use crate::engine::error::ApiError;
use crate::engine::tenants::normalize_address;

/// A contact as the engine keys it (no `whatsapp:`, no `+`): 1 to 64 characters, no white space.
pub fn valid_contact(field: &str, value: &str) -> Result<String, ApiError> {
    let contact = normalize_address(value);
    if contact.is_empty() || contact.len() > 64 || contact.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid_field(
            field,
            "must be a number or provider id of 1 to 64 characters without spaces",
        ));
    }
    Ok(contact.to_owned())
}
