//! Which addresses a send may connect to: public ones only, unless the platform allows a
//! non-public network with `--provider-private-networks` (e.g. `127.0.0.1/32` for the local
//! sandbox). The check runs inside the HTTP client's resolver, on the very addresses it then
//! connects to, so a name that resolves differently the second time (DNS rebinding) gains
//! nothing. IP-literal hosts never reach a resolver: they are checked before the request.

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

/// Not reachable on the public internet, or not meant to be connected to: loopback, private
/// (RFC 1918), CGNAT, link-local (cloud metadata), documentation, benchmarking, multicast,
/// reserved and broadcast.
const NON_PUBLIC_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// The IPv6 equivalents: unspecified, loopback and IPv4-compatible (`::/96`), local-use NAT64,
/// discard, IETF protocol assignments (Teredo among them), documentation, 6to4 (it reaches an
/// embedded IPv4 address through a relay), unique local, site-local, link-local and multicast.
/// IPv4-mapped addresses are checked as the IPv4 address they carry; so are NAT64 addresses
/// (`64:ff9b::/96`), which DNS64 hands out for public IPv4 hosts on IPv6-only clusters.
const NON_PUBLIC_V6: &[&str] = &[
    "::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fec0::/10",
    "fe80::/10",
    "ff00::/8",
];

static NON_PUBLIC: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    NON_PUBLIC_V4
        .iter()
        .chain(NON_PUBLIC_V6)
        .map(|net| net.parse().expect("the constant networks parse"))
        .collect()
});

const NAT64: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// Whether `ip` is an ordinary public address.
pub fn is_public(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = nat64_embedded(v6)
    {
        return is_public(IpAddr::V4(v4));
    }
    !NON_PUBLIC.iter().any(|net| net.contains(&ip))
}

fn nat64_embedded(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    (segments[..6] == NAT64.segments()[..6]).then(|| {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
}

/// The platform's policy: public addresses, plus the networks it allows explicitly.
#[derive(Clone, Debug, Default)]
pub struct Destinations {
    allowed: Vec<IpNet>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "--provider-private-networks: `{0}` is not a network (CIDR such as 127.0.0.1/32 or fd00::/8) or an address"
)]
pub struct NetworkEntryError(String);

impl Destinations {
    /// `entries`: networks in CIDR notation, or single addresses.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, NetworkEntryError> {
        let allowed = entries
            .iter()
            .map(|entry| entry.as_ref().trim())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| NetworkEntryError(entry.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    /// Whether a send may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed.iter().any(|net| net.contains(&ip)) || is_public(ip)
    }

    pub fn describe(&self) -> Vec<String> {
        self.allowed.iter().map(ToString::to_string).collect()
    }
}

/// A name resolved only to addresses sends may not connect to.
#[derive(Debug, thiserror::Error)]
#[error("the provider's host resolves only to addresses sends may not connect to")]
pub struct DestinationRefused;

/// The system resolver, with every address the policy refuses removed from its answer.
pub struct GuardedResolver {
    destinations: Arc<Destinations>,
}

impl GuardedResolver {
    pub fn new(destinations: Arc<Destinations>) -> Self {
        Self { destinations }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let destinations = self.destinations.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if found.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the provider's host has no addresses",
                )
                .into());
            }
            let permitted: Vec<SocketAddr> = found
                .into_iter()
                .filter(|address| destinations.permits(address.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(DestinationRefused.into());
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// Whether a failed request failed because the policy refused every address of its host.
pub fn refused_by_policy(error: &reqwest::Error) -> bool {
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if error.is::<DestinationRefused>() {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_of_both_families_are_refused() {
        for address in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.170",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip(address)), "{address}");
            assert!(!Destinations::default().permits(ip(address)), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "193.0.0.1",
            "2a03:2880:f12f:83:face:b00c:0:25de",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(address)), "{address}");
        }
    }

    #[test]
    fn the_platform_allows_private_networks_explicitly() {
        let allowed = Destinations::new(&["127.0.0.1/32", " 10.20.0.0/16", "fd00::1", ""]).unwrap();
        assert!(allowed.permits(ip("127.0.0.1")));
        assert!(
            allowed.permits(ip("::ffff:127.0.0.1")),
            "the mapped form of an allowed address"
        );
        assert!(!allowed.permits(ip("127.0.0.2")));
        assert!(!allowed.permits(ip("::1")));
        assert!(allowed.permits(ip("10.20.99.1")));
        assert!(!allowed.permits(ip("10.21.0.1")));
        assert!(allowed.permits(ip("fd00::1")));
        assert!(!allowed.permits(ip("169.254.169.254")));
        assert_eq!(
            allowed.describe(),
            ["127.0.0.1/32", "10.20.0.0/16", "fd00::1/128"]
        );
        assert!(Destinations::new(&["localhost"]).is_err());
        assert!(Destinations::new(&["10.0.0.0/33"]).is_err());
    }
}
