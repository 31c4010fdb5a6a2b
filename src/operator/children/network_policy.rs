//! n8n reachable only from the ingress namespace; egress only to DNS, the engine and the web
//! (the tenant's workflows call external APIs over HTTPS).

use super::meta;
use crate::operator::plan::Plan;
use crate::tenant::Tenant;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

fn namespace_peer(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                name.to_owned(),
            )])),
            ..LabelSelector::default()
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

pub fn network_policy(
    tenant: &Tenant,
    plan: &Plan,
    ingress_namespace: &str,
    engine_namespace: &str,
) -> NetworkPolicy {
    let public_web = NetworkPolicyPeer {
        // Anything outside the cluster's private ranges: provider APIs, the tenant's own APIs.
        ip_block: Some(IPBlock {
            cidr: "0.0.0.0/0".to_owned(),
            except: Some(vec![
                "10.0.0.0/8".into(),
                "172.16.0.0/12".into(),
                "192.168.0.0/16".into(),
            ]),
        }),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: meta(tenant, plan, "n8n", "network-policy", true),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![namespace_peer(ingress_namespace)]),
                ports: Some(vec![port("TCP", super::n8n::PORT)]),
            }]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: None,
                    ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![namespace_peer(engine_namespace)]),
                    ports: None,
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![public_web]),
                    ports: Some(vec![port("TCP", 443)]),
                },
            ]),
        }),
    }
}
