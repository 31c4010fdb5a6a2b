//! The Tenant custom resource: spec, status, conditions and the generated CRD.

mod crd;
mod rollout;
mod spec;
mod status;

pub use crd::{
    CRD_FILE, CrdInstallError, ROLLOUT_CRD_FILE, crd_yaml, install_crd, rollout_crd_yaml,
};
pub use rollout::*;
pub use spec::*;
pub use status::*;

impl Tenant {
    /// The tenant slug: the Tenant's name, validated by the API server as a DNS label.
    pub fn slug(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}
