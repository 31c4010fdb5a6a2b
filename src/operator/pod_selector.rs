//! An equality-based label selector given on the command line (`key=value[,key=value…]`), for
//! the pods a tenant's NetworkPolicy lets n8n reach (the engine's pods, the cluster DNS pods).
//! Set-based selectors are refused: a NetworkPolicy peer that selects more than intended is a
//! hole, so the operator accepts only what it can write as `matchLabels` exactly.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSelector(BTreeMap<String, String>);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a label selector of the form key=value[,key=value...]")]
pub struct PodSelectorError(String);

impl PodSelector {
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn label_selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.0.clone()),
            ..LabelSelector::default()
        }
    }
}

impl FromStr for PodSelector {
    type Err = PodSelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || PodSelectorError(text.to_owned());
        let mut labels = BTreeMap::new();
        for term in text.split(',') {
            let (key, value) = term.split_once('=').ok_or_else(invalid)?;
            // `key==value` is the same selector as `key=value`; `key!=value` is not equality.
            let value = value.strip_prefix('=').unwrap_or(value);
            let (key, value) = (key.trim(), value.trim());
            if key.ends_with('!') || !is_label_key(key) || !is_label_value(value) {
                return Err(invalid());
            }
            if labels.insert(key.to_owned(), value.to_owned()).is_some() {
                return Err(invalid());
            }
        }
        Ok(Self(labels))
    }
}

impl fmt::Display for PodSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&terms.join(","))
    }
}

/// `[prefix/]name`: a DNS subdomain prefix and a name of at most 63 characters.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// At most 63 characters of `[A-Za-z0-9._-]`, beginning and ending with an alphanumeric.
fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value
            .bytes()
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_none_or(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_terms_become_match_labels() {
        let selector: PodSelector =
            "app.kubernetes.io/component=engine, app.kubernetes.io/instance==flomastr"
                .parse()
                .unwrap();
        assert_eq!(
            selector.label_selector().match_labels.unwrap(),
            BTreeMap::from([
                (
                    "app.kubernetes.io/component".to_owned(),
                    "engine".to_owned()
                ),
                (
                    "app.kubernetes.io/instance".to_owned(),
                    "flomastr".to_owned()
                ),
            ])
        );
        assert_eq!(
            selector.to_string(),
            "app.kubernetes.io/component=engine,app.kubernetes.io/instance=flomastr"
        );
    }

    #[test]
    fn anything_but_equality_is_refused() {
        for text in [
            "",
            "k8s-app",
            "k8s-app!=kube-dns",
            "k8s-app in (kube-dns)",
            "a=b,a=c",
            "-bad=x",
            "Example.COM/x=y",
            "k=value with spaces",
            "k=-leading",
            &format!("k={}", "v".repeat(64)),
        ] {
            assert!(text.parse::<PodSelector>().is_err(), "{text:?} accepted");
        }
        assert!("k8s-app=".parse::<PodSelector>().is_ok(), "an empty value");
    }
}
