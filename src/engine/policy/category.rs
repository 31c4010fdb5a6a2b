//! Message categories: what a send is, for the policy. `service` is a reply inside the contact's
//! 24-hour window; `utility` (updates the contact asked for: orders, appointments) and
//! `marketing` (promotions, the weekly pulse) are business-initiated and are held in quiet hours;
//! only marketing counts toward the frequency cap.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Service,
    Utility,
    Marketing,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Utility => "utility",
            Self::Marketing => "marketing",
        }
    }

    /// A template's category in the provider's catalog (`MARKETING`, `UTILITY`,
    /// `AUTHENTICATION`). One-time codes are answers to the contact's own request: never held.
    pub fn of_template(catalog: &str) -> Self {
        match catalog {
            "MARKETING" => Self::Marketing,
            "AUTHENTICATION" => Self::Service,
            _ => Self::Utility,
        }
    }

    /// The category when the sender names none: a reply inside the window is service, a
    /// template outside it is its catalog category (utility when the catalog does not know it).
    pub fn default_for(window_open: bool, template_category: Option<&str>) -> Self {
        match (window_open, template_category) {
            (true, _) => Self::Service,
            (false, Some(catalog)) => Self::of_template(catalog),
            (false, None) => Self::Utility,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_window_then_the_catalog() {
        assert_eq!(
            Category::default_for(true, Some("MARKETING")),
            Category::Service
        );
        assert_eq!(
            Category::default_for(false, Some("MARKETING")),
            Category::Marketing
        );
        assert_eq!(
            Category::default_for(false, Some("UTILITY")),
            Category::Utility
        );
        assert_eq!(
            Category::default_for(false, Some("AUTHENTICATION")),
            Category::Service
        );
        assert_eq!(Category::default_for(false, None), Category::Utility);
    }
}
