//! Phone numbers and e-mail addresses are replaced before text goes to an external model.

use regex::Regex;
use std::sync::LazyLock;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+").expect("valid regex")
});

// Seven or more digits, optionally led by + and separated by spaces, dots, dashes or
// parentheses: international and local numbers, WhatsApp ids. Dates and amounts are shorter.
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\(?\d(?:[\s().\-]{0,2}\d){6,}").expect("valid regex"));

static ISO_DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("valid regex"));

pub fn redact(text: &str) -> String {
    let text = EMAIL.replace_all(text, "[email]");
    PHONE
        .replace_all(&text, |found: &regex::Captures| {
            let found = &found[0];
            // A date has eight digits too; it is not personal data on its own.
            if ISO_DATE.is_match(found) {
                found.to_owned()
            } else {
                "[phone]".to_owned()
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn phones_and_emails_are_replaced() {
        assert_eq!(
            redact("Call +44 20 7946 0958 or write to jane.doe+shop@example.co.uk today"),
            "Call [phone] or write to [email] today"
        );
        assert_eq!(redact("my number: (555) 123-4567."), "my number: [phone].");
        assert_eq!(redact("whatsapp 447911123456"), "whatsapp [phone]");
        assert_eq!(
            redact("Order 1234 costs 19.99 on 2024-05-01"),
            "Order 1234 costs 19.99 on 2024-05-01"
        );
    }
}
