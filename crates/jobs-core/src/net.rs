//! Which addresses outbound requests (webhooks) may reach. By default only public ones:
//! a tenant-supplied URL must not make Offload call into its own network (loopback, private
//! ranges, link-local — where cloud metadata endpoints live — and the like), nor reach one
//! through an address that embeds or translates to an IPv4 one (NAT64, 6to4, Teredo,
//! IPv4-compatible), nor Azure's platform endpoint `168.63.129.16`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// `Retry-After` as seconds or as an HTTP date (relative to `now`), cut to `cap`. A remote
/// party chooses this number: `Retry-After: 9000000000000` must neither overflow the time
/// arithmetic that schedules the retry nor park the work for centuries. A number of
/// seconds too large to read is taken as `cap`.
pub fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: DateTime<Utc>,
    cap: Duration,
) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(cap));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
    Some(
        at.signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(cap),
    )
}

/// `url` as logs and error messages may show it: scheme, host, port and path, without the
/// credentials (`user:password@`), the query (tokens often ride there) and the fragment.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<not a valid URL>".to_owned(),
    }
}

/// Azure's virtual public IP for platform services (DHCP, DNS, health probes, the
/// wireserver): reachable from every Azure VM and container, never a webhook receiver.
const AZURE_PLATFORM: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

fn v4_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, 198.18.0.0/15
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated)
        || ip == AZURE_PLATFORM
        || a >= 240) // reserved
}

fn v6_public(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_public(v4);
    }
    let s = ip.segments();
    let first = s[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || s[..6] == [0; 6] // IPv4-compatible ::/96 (deprecated)
        || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]) // NAT64 well-known prefix 64:ff9b::/96
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48
        || first == 0x2002 // 6to4
        || (first == 0x2001 && s[1] == 0) // Teredo 2001::/32
        || (s[..4] == [0x100, 0, 0, 0]) // discard-only 100::/64
        || first == 0x2001 && s[1] == 0x0db8) // documentation
}

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_takes_seconds_and_dates_and_is_capped() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let cap = Duration::from_secs(3600);
        let mut h = HeaderMap::new();
        let mut says = |v: &'static str| {
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            retry_after(&h, now, cap)
        };
        assert_eq!(says("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            says("Thu, 01 Jan 2026 00:00:07 GMT"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(says("Wed, 31 Dec 2025 23:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(says("soon"), None);
        assert_eq!(says("-5"), None);
        // What a hostile or broken receiver may say: cut to the cap, never an overflow.
        assert_eq!(says("9000000000000"), Some(cap));
        assert_eq!(says("99999999999999999999999999"), Some(cap));
        assert_eq!(says("Fri, 31 Dec 9999 23:59:59 GMT"), Some(cap));
        assert_eq!(retry_after(&HeaderMap::new(), now, cap), None);
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(
            redacted("https://user:s3cret@hooks.example.com:8443/in/abc?token=t0k3n#frag"),
            "https://hooks.example.com:8443/in/abc"
        );
        assert_eq!(redacted("http://example.com"), "http://example.com/");
        assert_eq!(redacted("not a url ?token=t0k3n"), "<not a valid URL>");
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            // Found missing in review (issue 12): each reaches an internal or translated
            // address.
            "64:ff9b::a9fe:a9fe",  // NAT64 of 169.254.169.254
            "64:ff9b::808:808",    // NAT64 of a public address: still refused
            "64:ff9b:1::a00:1",    // local-use NAT64
            "::a9fe:a9fe",         // IPv4-compatible 169.254.169.254
            "::7f00:1",            // IPv4-compatible 127.0.0.1
            "2002:a9fe:a9fe::1",   // 6to4 of 169.254.169.254
            "2001:0:4136:e378::1", // Teredo
            "fec0::1",             // site-local
            "100::1",              // discard-only
            "198.18.0.1",
            "198.19.255.254",
            "168.63.129.16", // Azure platform endpoint
            "192.88.99.1",
        ] {
            assert!(!is_public(s.parse().unwrap()), "{s}");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "198.20.0.1",
            "168.63.129.17",
            "2001:4860:4860::8888",
        ] {
            assert!(is_public(s.parse().unwrap()), "{s}");
        }
    }
}
