//! Phone numbers and e-mail addresses are replaced (`[phone]`, `[email]`) before text goes to a
//! model outside the engine.
//!
//! Detection reads the text as a reader sees it ([`Seen`]): format characters (zero-width
//! spaces and joiners, word joiner, BOM, soft hyphen, bidi controls) are dropped, Unicode spaces
//! read as spaces and dashes as `-`, compatibility forms (full-width `＋`, `＠`, letters) as
//! their plain form, and the decimal digits of every script as ASCII digits. Replacements are
//! made in the original text, so whatever is not redacted reaches the model unchanged (emoji
//! joined with U+200D included).
//!
//! E-mail addresses are found by `linkify` (RFC 5321/6531 local parts and domains, non-ASCII
//! ones included, and dotless domains such as `localhost`), plus the two forms it leaves out:
//! quoted local parts and address literals (`user@[IPv6:2001:db8::1]`).
//!
//! Phone numbers are every run of at least 7 digits written as numbers are written: led by `+`
//! or `(` or not, grouped by spaces, dots, dashes, slashes or parentheses. libphonenumber's
//! validation is deliberately not applied: it needs the writer's region to read a national
//! number and refuses fictional or unassigned ranges, and a number it would refuse is still
//! someone's personal data. What is written like a number but is something else is kept: dates
//! (`2024-05-01`, `01.05.2024`), amounts with a currency (`€1.299,00`, `1 299 000 €`),
//! references (`#100234567`, `INV-2024-000123`, the number after `order`, `invoice`, `ticket`
//! and their kin) and UUIDs. A digit run glued to letters (`SKU12345678`) is redacted: text
//! with a zero-width space between a word and a number reads the same way.

use linkify::{LinkFinder, LinkKind};
use regex::Regex;
use std::ops::Range;
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

const PHONE: &str = "[phone]";
const EMAIL: &str = "[email]";
/// Digits from which a run is a phone number (shorter: house numbers, quantities, years).
const MIN_PHONE_DIGITS: usize = 7;
/// Separators between two digit groups of one number at most (`) - ` is three).
const MAX_SEPARATORS: usize = 3;

pub fn redact(text: &str) -> String {
    let seen = Seen::of(text);
    let emails = emails(&seen.text);
    let mut kept = emails.clone();
    kept.extend(not_phones(&seen.text));
    let phones = phones(&seen.text, &kept);
    let mut found: Vec<(Range<usize>, &str)> = emails
        .into_iter()
        .map(|r| (seen.original(r), EMAIL))
        .chain(phones.into_iter().map(|r| (seen.original(r), PHONE)))
        .collect();
    found.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, marker) in found {
        if range.start < at {
            continue;
        }
        out.push_str(&text[at..range.start]);
        out.push_str(marker);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The text as a reader sees it, with the way back to the original.
struct Seen {
    text: String,
    /// For each byte of `text`, the byte range of the original character it came from; `None`
    /// when the text is read as it is (plain ASCII).
    origin: Option<Vec<Range<usize>>>,
}

impl Seen {
    fn of(text: &str) -> Self {
        if text.is_ascii() {
            return Self {
                text: text.to_owned(),
                origin: None,
            };
        }
        let mut seen = String::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len());
        for (at, c) in text.char_indices() {
            let before = seen.len();
            read_as(c, &mut seen);
            origin.extend(std::iter::repeat_n(
                at..at + c.len_utf8(),
                seen.len() - before,
            ));
        }
        Self {
            text: seen,
            origin: Some(origin),
        }
    }

    /// The original bytes of a non-empty range of the seen text.
    fn original(&self, range: Range<usize>) -> Range<usize> {
        match &self.origin {
            None => range,
            Some(origin) => origin[range.start].start..origin[range.end - 1].end,
        }
    }
}

/// Appends what a reader sees for `c`.
fn read_as(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c);
        return;
    }
    match c.general_category() {
        GeneralCategory::Format => {}
        GeneralCategory::SpaceSeparator => out.push(' '),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => out.push('\n'),
        GeneralCategory::DashPunctuation => out.push('-'),
        GeneralCategory::DecimalNumber => out.push(ascii_digit(c)),
        _ if c == '\u{2212}' => out.push('-'),
        _ => out.extend(std::iter::once(c).nfkc()),
    }
}

/// The ASCII digit of a decimal digit of any script. Unicode encodes each script's digits as
/// ten consecutive code points from zero to nine, so the value is the count of digits before
/// `c` in its block, modulo ten (some blocks hold several sets, like the mathematical digits).
fn ascii_digit(c: char) -> char {
    let is_digit = |code: u32| {
        char::from_u32(code).is_some_and(|d| d.general_category() == GeneralCategory::DecimalNumber)
    };
    let mut before = 0u32;
    while before < 100 && is_digit(c as u32 - before - 1) {
        before += 1;
    }
    char::from(b'0' + (before % 10) as u8)
}

static EMAIL_FINDER: LazyLock<LinkFinder> = LazyLock::new(|| {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Email]);
    finder.email_domain_must_have_dot(false);
    finder
});

/// E-mail addresses: linkify's, then what it leaves out: quoted local parts, address literals,
/// and domains whose top level is not Latin (`пример.рф`: linkify wants two ASCII letters).
fn emails(text: &str) -> Vec<Range<usize>> {
    let mut found: Vec<Range<usize>> = EMAIL_FINDER
        .links(text)
        .map(|link| link.start()..link.end())
        .collect();
    let linkify_found = found.clone();
    for (at, _) in text.match_indices('@') {
        if linkify_found.iter().any(|r| r.contains(&at)) {
            continue;
        }
        let (before, after) = (&text[..at], &text[at + 1..]);
        let (Some(start), Some(end)) = (local_part_start(before), domain_end(after)) else {
            continue;
        };
        let unusual = before.ends_with('"') || after.starts_with('[') || !after[..end].is_ascii();
        if unusual {
            found.push(start..at + 1 + end);
        }
    }
    found
}

/// Where the local part ending at `before`'s end starts: a quoted string, or dot-atoms.
fn local_part_start(before: &str) -> Option<usize> {
    if let Some(inside) = before.strip_suffix('"') {
        let open = inside.rfind('"')?;
        let quoted = &inside[open + 1..];
        return (quoted.len() <= 64 && !quoted.contains('\n')).then_some(open);
    }
    let kept = before.trim_end_matches(|c: char| {
        c.is_alphanumeric() || c == '.' || "!#$%&'*+-/=?^_`{|}~".contains(c)
    });
    (kept.len() < before.len()).then_some(kept.len())
}

/// Where the domain at `after`'s start ends: an address literal in brackets, or a host name.
fn domain_end(after: &str) -> Option<usize> {
    if let Some(inside) = after.strip_prefix('[') {
        let close = inside.find(']')?;
        let literal = &inside[..close];
        let plausible = (1..=64).contains(&literal.len())
            && literal
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-'));
        return plausible.then_some(close + 2);
    }
    let host = after
        .find(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-'))
        .unwrap_or(after.len());
    let host = after[..host].trim_end_matches(['.', '-']).len();
    (host > 0).then_some(host)
}

/// Digit runs of at least `MIN_PHONE_DIGITS` outside `kept`, with a leading `+` or `(`.
fn phones(text: &str, kept: &[Range<usize>]) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut blocked = vec![false; bytes.len()];
    for range in kept {
        blocked[range.clone()].iter_mut().for_each(|b| *b = true);
    }
    let digit = |i: usize| i < bytes.len() && bytes[i].is_ascii_digit() && !blocked[i];
    let separator =
        |i: usize| matches!(bytes[i], b' ' | b'.' | b'-' | b'/' | b'(' | b')') && !blocked[i];
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !digit(i) {
            i += 1;
            continue;
        }
        let mut start = i;
        while start > 0 && matches!(bytes[start - 1], b'+' | b'(') && !blocked[start - 1] {
            start -= 1;
        }
        let (mut end, mut digits) = (i, 0);
        let mut next = i;
        while digit(next) {
            while digit(next) {
                digits += 1;
                next += 1;
            }
            end = next;
            let mut gap = 0;
            while gap < MAX_SEPARATORS && next < bytes.len() && separator(next) {
                next += 1;
                gap += 1;
            }
        }
        if digits >= MIN_PHONE_DIGITS {
            found.push(start..end);
        }
        i = end;
    }
    found
}

const CURRENCY: &str = r"(?:[$€£¥₹₽₩₺₪₫฿¢]|\b(?i:usd|eur|gbp|chf|jpy|cny|inr|brl|mxn|cop|ars|clp|pen|zar|ngn|kes|aed|sar|try|rub|pln|sek|nok|dkk|czk|huf|aud|cad|nzd)\b)";
/// An amount: thousands grouped (`1.299.000`, `1 299`), or at most six digits; cents optional.
const AMOUNT: &str = r"(?:\d{1,3}(?:[ .,']\d{3})+|\d{1,6})(?:[.,]\d{1,2})?";

static DATE_YMD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{4})[-./](\d{1,2})[-./](\d{1,2})\b").expect("valid regex"));
static DATE_DMY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{1,2})[-./](\d{1,2})[-./](\d{4})\b").expect("valid regex"));
static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"{CURRENCY}\s?{AMOUNT}\b|\b{AMOUNT}\s?{CURRENCY}")).expect("valid regex")
});
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)#\s?[a-z0-9][a-z0-9\-/]*|\b(order|invoice|receipt|ref|reference|ticket|tracking|booking|reservation|confirmation|sku|pedido|factura|referencia|commande|facture|bestellung|rechnung|ordine|fattura)\b(?:\s*(?:no|nr|n°|nº|num|number|nummer|número|numero|id)\b\.?)?\s*[:#]?\s*[a-z0-9][a-z0-9\-/]*",
    )
    .expect("valid regex")
});
/// Letters, a dash, digits: `INV-2024-000123`, `A-100`.
static CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([A-Za-z]{1,6})-\d[\d\-/]*").expect("valid regex"));
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
        .expect("valid regex")
});

/// Words that lead a phone number, not a reference, when written as `tel-0612…`.
const PHONE_WORDS: &[&str] = &["tel", "phone", "fax", "mob", "mobile", "cell", "call", "wa"];

/// What is written like a number but is not a phone number: dates, amounts, references, UUIDs.
fn not_phones(text: &str) -> Vec<Range<usize>> {
    let number = |s: &str| s.parse::<u32>().unwrap_or(u32::MAX);
    let year = |s: &str| (1900..=2099).contains(&number(s));
    let month = |s: &str| (1..=12).contains(&number(s));
    let day = |s: &str| (1..=31).contains(&number(s));
    let ymd = DATE_YMD
        .captures_iter(text)
        .filter(|c| year(&c[1]) && month(&c[2]) && day(&c[3]));
    let dmy = DATE_DMY
        .captures_iter(text)
        .filter(|c| year(&c[3]) && ((day(&c[1]) && month(&c[2])) || (month(&c[1]) && day(&c[2]))));
    let codes = CODE
        .captures_iter(text)
        .filter(|c| !PHONE_WORDS.contains(&c[1].to_ascii_lowercase().as_str()));
    ymd.chain(dmy)
        .chain(codes)
        .map(|c| c.get(0).expect("the whole match").range())
        .chain(MONEY.find_iter(text).map(|m| m.range()))
        .chain(UUID.find_iter(text).map(|m| m.range()))
        .chain(
            REFERENCE
                .find_iter(text)
                .filter(|m| m.as_str().bytes().any(|b| b.is_ascii_digit()))
                .map(|m| m.range()),
        )
        .collect()
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

    /// Phone numbers hidden with format characters, Unicode separators and other digits.
    #[test]
    fn hostile_phone_numbers_are_replaced() {
        let cases = [
            "+44\u{200B}7911\u{200B}123456",
            "+44\u{200C}7911\u{200D}123456",
            "4\u{2060}4\u{2060}7\u{2060}9\u{2060}1\u{2060}1\u{2060}1\u{2060}2\u{2060}3\u{2060}4\u{2060}5\u{2060}6",
            "4479\u{FEFF}11123456",
            "+44\u{00A0}7911\u{00A0}123456",
            "+44\u{2009}7911\u{202F}123456",
            "+44 7911\u{2011}123\u{2012}456",
            "555\u{2013}123\u{2013}4567",
            "555\u{2014}123\u{2212}4567",
            "+44.7911.123.456",
            "+44/7911/123456",
            "+44 (0) 7911 123456",
            "(+44) 7911-123-456",
            "06 12 34 56 78",
            "06.12.34.56.78",
            "+１ ５５５ １２３ ４５６７",
            "＋４４７９１１１２３４５６",
            "+٤٤٧٩١١١٢٣٤٥٦",
            "۰۶۱۲۳۴۵۶۷۸",
            "+९१ ९८७६५ ४३२१०",
            "𝟒𝟒𝟕𝟗𝟏𝟏𝟏𝟐𝟑𝟒𝟓𝟔",
            "0044 7911 123456",
            "+44\u{00AD}7911\u{00AD}123456",
            "+44\u{202A}7911\u{202C}123456",
        ];
        for case in cases {
            let out = redact(&format!("reach me at {case} please"));
            assert_eq!(out, "reach me at [phone] please", "{case:?}");
        }
    }

    /// E-mail addresses with non-ASCII parts, dotless domains, literals and disguises.
    #[test]
    fn hostile_email_addresses_are_replaced() {
        let cases = [
            "josé.garcía@correo.españa",
            "用户@例子.广告",
            "пользователь@пример.рф",
            "user@xn--80ak6aa92e.com",
            "root@localhost",
            "admin@intranet",
            "user@[IPv6:2001:db8::1]",
            "user@[192.168.0.1]",
            "\"john doe\"@example.com",
            "john\u{200B}@\u{200B}example.com",
            "john＠example．com",
            "ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "john\u{FE6B}example.com",
            "o'brien+tag@example.ie",
            "0612345678@example.com",
        ];
        for case in cases {
            let out = redact(&format!("write to {case} today"));
            assert_eq!(out, "write to [email] today", "{case:?}");
        }
    }

    /// Dates, amounts, references and ordinary numbers are not personal data on their own.
    #[test]
    fn numbers_that_are_not_phones_are_kept() {
        let cases = [
            "Order 1234 costs 19.99 on 2024-05-01",
            "delivered on 01.05.2024 or 05/31/2024, from 2024/05/01",
            "between 2024-05-01\u{2013}2024-05-03",
            "the total is €1.299,00 (was $1,299.99)",
            "about 1 299 000 € or 12345 EUR or USD 250000",
            "order #100234567 and ticket #55512345",
            "invoice INV-2024-000123, parcel A-100234567",
            "your order number 12345678 has shipped",
            "Bestellung Nr. 987654321 ist unterwegs",
            "reference: 20240501-0042",
            "request 3f2a1b4c-1234-5678-9abc-def012345678 failed",
            "open 9:00-17:30, 2 shops, 150 m²",
            "version 1.2.3, room 101, 3 x 4",
            "family 👨\u{200D}👩\u{200D}👧 and\u{00A0}spaces",
            "@john said hi",
        ];
        for case in cases {
            assert_eq!(redact(case), case);
        }
    }

    #[test]
    fn everything_else_is_left_as_written() {
        assert_eq!(
            redact("Ｈｉ\u{00A0}Ana, call +44\u{200B}7911 123456 — thanks\u{2009}!"),
            "Ｈｉ\u{00A0}Ana, call [phone] — thanks\u{2009}!"
        );
        assert_eq!(
            redact("a@b.co, 555-123-4567; c@d.co"),
            "[email], [phone]; [email]"
        );
        assert_eq!(redact(""), "");
        assert_eq!(redact("tel:+447911123456"), "tel:[phone]");
        assert_eq!(redact("SKU\u{200B}0612345678"), "SKU\u{200B}[phone]");
    }
}
