//! n8n reachable only from the ingress namespace; egress only to the cluster DNS pods, the
//! engine's pods on the engine's port, and public HTTPS (the tenant's workflows call external
//! APIs). Nothing else in the cluster: not the engine's admin or metrics port, not the operator,
//! not other tenants, not the nodes, the cloud metadata service or carrier-grade NAT ranges.

use super::meta;
use crate::operator::config::OperatorArgs;
use crate::operator::plan::Plan;
use crate::operator::pod_selector::PodSelector;
use crate::tenant::Tenant;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// IPv4 ranges that are not the public web: private (RFC 1918), carrier-grade NAT (RFC 6598,
/// also used for pod and service networks), link-local (cloud metadata at 169.254.169.254),
/// loopback and "this network".
pub const NON_PUBLIC_V4: [&str; 7] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "0.0.0.0/8",
];

/// IPv6 ranges that are not the public web: loopback, NAT64 (would reach the IPv4 ranges above
/// through a translator), unique local (RFC 4193) and link-local. IPv4-mapped addresses leave a
/// dual-stack socket as IPv4 and meet the IPv4 exceptions (the API server refuses them here).
pub const NON_PUBLIC_V6: [&str; 5] = [
    "::1/128",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "fc00::/7",
    "fe80::/10",
];

/// Where a tenant's n8n may connect from and to, from the operator's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkReach {
    pub ingress_namespace: String,
    pub engine_namespace: String,
    pub engine_pods: PodSelector,
    pub engine_port: i32,
    pub dns_namespace: String,
    pub dns_pods: PodSelector,
}

impl NetworkReach {
    pub fn from_config(config: &OperatorArgs) -> Self {
        Self {
            ingress_namespace: config.ingress_namespace.clone(),
            engine_namespace: config.namespace.clone(),
            engine_pods: config.engine_pod_selector.clone(),
            engine_port: i32::from(config.engine_pod_port),
            dns_namespace: config.cluster_dns_namespace.clone(),
            dns_pods: config.cluster_dns_pod_selector.clone(),
        }
    }
}

fn namespace_selector(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            name.to_owned(),
        )])),
        ..LabelSelector::default()
    }
}

fn namespace_peer(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_selector(name)),
        ..NetworkPolicyPeer::default()
    }
}

/// Pods matching `pods` in namespace `namespace`: both selectors in one peer, so both must hold.
fn pods_peer(namespace: &str, pods: &PodSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_selector(namespace)),
        pod_selector: Some(pods.label_selector()),
        ..NetworkPolicyPeer::default()
    }
}

fn public_peer(cidr: &str, except: &[&str]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.to_owned(),
            except: Some(except.iter().map(|&range| range.to_owned()).collect()),
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(number)),
        ..NetworkPolicyPort::default()
    }
}

pub fn network_policy(tenant: &Tenant, plan: &Plan, reach: &NetworkReach) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(tenant, plan, "n8n", "network-policy", true),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![namespace_peer(&reach.ingress_namespace)]),
                ports: Some(vec![port("TCP", super::n8n::PORT)]),
            }]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![pods_peer(&reach.dns_namespace, &reach.dns_pods)]),
                    ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![pods_peer(&reach.engine_namespace, &reach.engine_pods)]),
                    ports: Some(vec![port("TCP", reach.engine_port)]),
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![
                        public_peer("0.0.0.0/0", &NON_PUBLIC_V4),
                        public_peer("::/0", &NON_PUBLIC_V6),
                    ]),
                    ports: Some(vec![port("TCP", 443)]),
                },
            ]),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::plan::Plan;

    fn tenant() -> Tenant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "flomastr.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme", "uid": "6a1c7a52-0000-4000-8000-000000000001"},
            "spec": {"displayName": "ACME", "whatsapp": {"provider": "Infobip", "sender": "441134960000",
                     "credentialsSecretRef": {"name": "acme-infobip", "namespace": "flomastr-credentials"}}}
        }))
        .unwrap()
    }

    fn plan() -> Plan {
        Plan {
            slug: "acme".into(),
            namespace: "tenant-acme".into(),
            n8n_host: "acme.n8n.example.com".into(),
            frontend_host: "acme.example.com".into(),
            n8n_url: "https://acme.n8n.example.com".into(),
            image: "n8nio/n8n:1.116.2".into(),
            replicas: 1,
            suspended: false,
            ingress_class: None,
            engine_url: "http://flomastr-engine.flomastr-system.svc:8080".into(),
            dns: None,
            encryption_key_fingerprint: None,
            n8n_data_filling: false,
        }
    }

    fn reach() -> NetworkReach {
        NetworkReach {
            ingress_namespace: "ingress".into(),
            engine_namespace: "flomastr-system".into(),
            engine_pods: "app.kubernetes.io/instance=flomastr,app.kubernetes.io/component=engine"
                .parse()
                .unwrap(),
            engine_port: 8080,
            dns_namespace: "kube-system".into(),
            dns_pods: "k8s-app=kube-dns".parse().unwrap(),
        }
    }

    fn egress() -> Vec<NetworkPolicyEgressRule> {
        network_policy(&tenant(), &plan(), &reach())
            .spec
            .unwrap()
            .egress
            .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn ports(rule: &NetworkPolicyEgressRule) -> Vec<(String, IntOrString)> {
        rule.ports
            .iter()
            .flatten()
            .map(|p| (p.protocol.clone().unwrap(), p.port.clone().unwrap()))
            .collect()
    }

    #[test]
    fn every_egress_rule_names_its_peers_and_its_ports() {
        for rule in egress() {
            assert!(
                rule.to.as_ref().is_some_and(|to| !to.is_empty()),
                "a rule without peers allows every destination: {rule:?}"
            );
            assert!(
                rule.ports.as_ref().is_some_and(|p| !p.is_empty()),
                "a rule without ports allows every port: {rule:?}"
            );
        }
    }

    #[test]
    fn dns_only_to_the_cluster_dns_pods() {
        let rules = egress();
        let dns = &rules[0];
        let peer = &dns.to.as_ref().unwrap()[0];
        assert_eq!(
            peer.namespace_selector.as_ref().unwrap().match_labels,
            labels(&[("kubernetes.io/metadata.name", "kube-system")])
        );
        assert_eq!(
            peer.pod_selector.as_ref().unwrap().match_labels,
            labels(&[("k8s-app", "kube-dns")])
        );
        assert_eq!(
            ports(dns),
            [
                ("UDP".to_owned(), IntOrString::Int(53)),
                ("TCP".to_owned(), IntOrString::Int(53))
            ]
        );
    }

    #[test]
    fn the_engine_only_on_its_pods_and_port() {
        let rules = egress();
        let engine = &rules[1];
        let peers = engine.to.as_ref().unwrap();
        assert_eq!(peers.len(), 1, "one peer: namespace AND pods, not either");
        assert_eq!(
            peers[0].namespace_selector.as_ref().unwrap().match_labels,
            labels(&[("kubernetes.io/metadata.name", "flomastr-system")])
        );
        assert_eq!(
            peers[0].pod_selector.as_ref().unwrap().match_labels,
            labels(&[
                ("app.kubernetes.io/component", "engine"),
                ("app.kubernetes.io/instance", "flomastr"),
            ])
        );
        assert_eq!(ports(engine), [("TCP".to_owned(), IntOrString::Int(8080))]);
    }

    #[test]
    fn the_public_web_only_on_443_and_never_private_ranges() {
        let rules = egress();
        let web = &rules[2];
        assert_eq!(ports(web), [("TCP".to_owned(), IntOrString::Int(443))]);
        let blocks: Vec<&IPBlock> = web
            .to
            .as_ref()
            .unwrap()
            .iter()
            .map(|peer| {
                assert!(peer.namespace_selector.is_none() && peer.pod_selector.is_none());
                peer.ip_block.as_ref().unwrap()
            })
            .collect();
        let v4 = blocks.iter().find(|b| b.cidr == "0.0.0.0/0").unwrap();
        for range in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "169.254.0.0/16",
            "127.0.0.0/8",
            "0.0.0.0/8",
        ] {
            assert!(
                v4.except.as_ref().unwrap().iter().any(|e| e == range),
                "{range} not excluded"
            );
        }
        let v6 = blocks.iter().find(|b| b.cidr == "::/0").unwrap();
        for range in ["fc00::/7", "fe80::/10", "::1/128", "64:ff9b::/96"] {
            assert!(
                v6.except.as_ref().unwrap().iter().any(|e| e == range),
                "{range} not excluded"
            );
        }
    }

    #[test]
    fn ingress_only_from_the_ingress_namespace_to_n8n() {
        let spec = network_policy(&tenant(), &plan(), &reach()).spec.unwrap();
        assert_eq!(spec.pod_selector, Some(LabelSelector::default()));
        assert_eq!(
            spec.policy_types,
            Some(vec!["Ingress".to_owned(), "Egress".to_owned()])
        );
        let ingress = spec.ingress.unwrap();
        assert_eq!(ingress.len(), 1);
        let from = ingress[0].from.as_ref().unwrap();
        assert_eq!(
            from[0].namespace_selector.as_ref().unwrap().match_labels,
            labels(&[("kubernetes.io/metadata.name", "ingress")])
        );
        assert_eq!(
            ingress[0].ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(5678))
        );
    }
}
