//! Opt-out and opt-in keywords: an inbound message whose whole text is one of them changes the
//! contact's consent. Pure code: the tenant's lists come from [`super::settings`].
//!
//! "Whole text" means nothing else in the message: `STOP` and ` stop\n` match, `stop please`
//! and `STOP!` do not (a customer writing a sentence is talking to the business, not opting out).
//! Case is ignored in the Unicode sense (`СТОП` matches `стоп`), and so are surrounding white
//! space and invisible formatting characters some keyboards add.

use serde::Serialize;

/// Keywords every tenant has (WhatsApp's and carriers' conventions).
pub const DEFAULT_OPT_OUT: [&str; 2] = ["STOP", "UNSUBSCRIBE"];
pub const DEFAULT_OPT_IN: [&str; 1] = ["START"];
/// A keyword is short; longer texts are never compared.
pub const MAX_KEYWORD_CHARS: usize = 40;

/// What a keyword does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    OptedIn,
    OptedOut,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedIn => "opted_in",
            Self::OptedOut => "opted_out",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "opted_in" => Some(Self::OptedIn),
            "opted_out" => Some(Self::OptedOut),
            _ => None,
        }
    }
}

/// A tenant's keywords, normalised for comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keywords {
    opt_out: Vec<String>,
    opt_in: Vec<String>,
}

impl Keywords {
    /// The built-in keywords plus the tenant's own.
    pub fn new(opt_out: &[String], opt_in: &[String]) -> Self {
        let list = |defaults: &[&str], own: &[String]| {
            let mut all: Vec<String> = defaults
                .iter()
                .copied()
                .chain(own.iter().map(String::as_str))
                .filter_map(normalize)
                .collect();
            all.sort();
            all.dedup();
            all
        };
        Self {
            opt_out: list(&DEFAULT_OPT_OUT, opt_out),
            opt_in: list(&DEFAULT_OPT_IN, opt_in),
        }
    }

    /// The change this message's text asks for, and the keyword as normalised.
    pub fn classify(&self, text: &str) -> Option<(ConsentState, String)> {
        let word = normalize(text)?;
        // Opt-out wins when a tenant lists a word in both lists: refusing a send is the safe side.
        if self.opt_out.binary_search(&word).is_ok() {
            return Some((ConsentState::OptedOut, word));
        }
        if self.opt_in.binary_search(&word).is_ok() {
            return Some((ConsentState::OptedIn, word));
        }
        None
    }
}

/// Lowercased (Unicode), without surrounding white space or invisible formatting characters;
/// None when empty or longer than a keyword can be.
pub fn normalize(text: &str) -> Option<String> {
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || is_invisible(c));
    if trimmed.is_empty() || trimmed.chars().count() > MAX_KEYWORD_CHARS {
        return None;
    }
    Some(trimmed.to_lowercase())
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords() -> Keywords {
        Keywords::new(
            &["BAJA".into(), "стоп".into(), "  Arrêt ".into()],
            &["alta".into()],
        )
    }

    #[test]
    fn whole_text_keywords_match_without_case_or_surrounding_space() {
        let k = keywords();
        for text in [
            "STOP",
            "stop",
            " Stop\n",
            "\u{FEFF}UNSUBSCRIBE\u{200B}",
            "baja",
            "СТОП",
            "ARRÊT",
        ] {
            assert_eq!(
                k.classify(text).map(|c| c.0),
                Some(ConsentState::OptedOut),
                "{text:?}"
            );
        }
        for text in ["START", " start ", "Alta"] {
            assert_eq!(
                k.classify(text).map(|c| c.0),
                Some(ConsentState::OptedIn),
                "{text:?}"
            );
        }
    }

    #[test]
    fn anything_else_in_the_message_is_not_a_keyword() {
        let k = keywords();
        for text in [
            "stop please",
            "STOP!",
            "don't stop",
            "",
            "   ",
            "st op",
            "startup",
        ] {
            assert_eq!(k.classify(text), None, "{text:?}");
        }
        assert_eq!(k.classify(&"stop ".repeat(20)), None);
    }

    #[test]
    fn opt_out_wins_a_word_listed_twice() {
        let k = Keywords::new(&["ok".into()], &["ok".into()]);
        assert_eq!(k.classify("OK").map(|c| c.0), Some(ConsentState::OptedOut));
    }

    #[test]
    fn the_defaults_hold_without_tenant_lists() {
        let k = Keywords::new(&[], &[]);
        assert_eq!(k.classify("stop").map(|c| c.1), Some("stop".to_owned()));
        assert_eq!(k.classify("baja"), None);
    }
}
