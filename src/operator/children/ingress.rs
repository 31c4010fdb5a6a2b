//! Ingress objects for the tenant's n8n host and its frontend host.

use super::meta;
use crate::operator::plan::Plan;
use crate::tenant::Tenant;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};

fn rule(host: &str, service: &str, port: i32) -> IngressRule {
    IngressRule {
        host: Some(host.to_owned()),
        http: Some(HTTPIngressRuleValue {
            paths: vec![HTTPIngressPath {
                path: Some("/".to_owned()),
                path_type: "Prefix".to_owned(),
                backend: IngressBackend {
                    service: Some(IngressServiceBackend {
                        name: service.to_owned(),
                        port: Some(ServiceBackendPort {
                            number: Some(port),
                            name: None,
                        }),
                    }),
                    resource: None,
                },
            }],
        }),
    }
}

pub fn n8n_ingress(tenant: &Tenant, plan: &Plan) -> Ingress {
    Ingress {
        metadata: meta(tenant, plan, "n8n", "ingress", true),
        spec: Some(IngressSpec {
            ingress_class_name: plan.ingress_class.clone(),
            rules: Some(vec![rule(&plan.n8n_host, "n8n", super::n8n::PORT)]),
            ..IngressSpec::default()
        }),
        status: None,
    }
}

/// The frontend host, routed to the shared frontend through an ExternalName Service in the
/// tenant's namespace. The slug travels as the `flomastr.io/tenant-slug` annotation for
/// ingress controllers that map annotations to request headers; the Caddy routes set the
/// `X-Tenant-Slug` header themselves.
pub fn frontend_ingress(tenant: &Tenant, plan: &Plan, service: &str, port: i32) -> Ingress {
    let mut metadata = meta(tenant, plan, "frontend", "ingress", true);
    metadata.annotations = Some([("flomastr.io/tenant-slug".to_owned(), plan.slug.clone())].into());
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: plan.ingress_class.clone(),
            rules: Some(vec![rule(&plan.frontend_host, service, port)]),
            ..IngressSpec::default()
        }),
        status: None,
    }
}

/// `frontend` in the tenant's namespace, an alias of the shared frontend Service.
pub fn frontend_service(
    tenant: &Tenant,
    plan: &Plan,
    external_name: &str,
) -> k8s_openapi::api::core::v1::Service {
    k8s_openapi::api::core::v1::Service {
        metadata: meta(tenant, plan, "frontend", "frontend", true),
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            type_: Some("ExternalName".to_owned()),
            external_name: Some(external_name.to_owned()),
            ..Default::default()
        }),
        status: None,
    }
}
