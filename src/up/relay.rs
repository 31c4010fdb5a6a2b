//! Plain TCP relays that `flomastr up` runs beside the stack:
//!
//! - the engine listens on loopback only; the tenants' n8n pods reach this machine at the node's
//!   bridge address, so a relay there forwards to the engine (nothing else on the machine is
//!   exposed to the pods, and nothing at all to the network);
//! - a tenant's n8n is a pod on the bridge; a relay on loopback forwards to a ready endpoint of
//!   its Service, so a browser on this machine opens it at `http://127.0.0.1:<port>` (a secure
//!   context: n8n's cookies work without TLS there).

use crate::up::UpError;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams};
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Where a relay's connections go.
#[derive(Clone)]
pub enum Target {
    /// A fixed address.
    Address(SocketAddr),
    /// A ready endpoint of a Service, looked up for every connection (pods come and go).
    Service {
        client: Client,
        namespace: String,
        name: String,
    },
}

impl Target {
    async fn resolve(&self) -> Option<SocketAddr> {
        match self {
            Self::Address(address) => Some(*address),
            Self::Service {
                client,
                namespace,
                name,
            } => ready_endpoint(client, namespace, name).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Address(address) => address.to_string(),
            Self::Service {
                namespace, name, ..
            } => format!("Service {namespace}/{name}"),
        }
    }
}

/// Binds `listen` (so a taken port fails `up` at once) and relays every connection to `target`
/// until `stop` fires.
pub async fn start(
    listen: SocketAddr,
    target: Target,
    stop: CancellationToken,
) -> Result<(), UpError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| UpError::Spawn {
            what: format!("a relay on {listen} to {}", target.describe()),
            source,
        })?;
    tokio::spawn(accept_loop(listener, target, stop));
    Ok(())
}

async fn accept_loop(listener: TcpListener, target: Target, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((inbound, _)) => {
                tokio::spawn(relay(inbound, target.clone(), stop.clone()));
            }
            Err(error) => tracing::warn!(%error, "relay: accept failed"),
        }
    }
}

async fn relay(mut inbound: TcpStream, target: Target, stop: CancellationToken) {
    let Some(address) = target.resolve().await else {
        tracing::warn!(
            target = target.describe(),
            "relay: no ready endpoint; connection closed"
        );
        return;
    };
    let mut outbound = match TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%error, %address, "relay: cannot connect");
            return;
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
    }
}

/// The address and port of a ready endpoint of Service `namespace/name`.
async fn ready_endpoint(client: &Client, namespace: &str, name: &str) -> Option<SocketAddr> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let selector = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    let list = slices.list(&selector).await.ok()?;
    list.items.iter().find_map(|slice| {
        let port = slice.ports.as_ref()?.first()?.port?;
        let endpoint = slice.endpoints.as_ref()?.iter().find(|endpoint| {
            endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(false)
        })?;
        let ip: IpAddr = endpoint.addresses.first()?.parse().ok()?;
        Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
    })
}
