//! DNS block and allow lists (RFC 5782), asked about each client at
//! connect, as Postfix's postscreen asks them: each list has a weight
//! (negative for an allow list such as DNSWL), the weights of the lists
//! that name the client are added up, and a client whose score reaches the
//! threshold is refused with a reply that names the list.
//!
//! Answers in 127.255.255.0/24 are the list's own error codes (Spamhaus:
//! a query from a public resolver, or over the free limit), not listings;
//! they are logged and count for nothing. The lookups themselves are the
//! caller's (this is sans-IO): it asks for the A records of
//! [`query_name`] and gives them to [`Outcome::of`].

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// One list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    /// Its DNS zone (`zen.spamhaus.org`).
    pub zone: String,
    /// What a listing adds to the score; negative for an allow list.
    pub weight: i32,
    /// The answers that count as a listing; empty: any in 127.0.0.0/8
    /// outside 127.255.255.0/24.
    pub answers: Vec<IpNet>,
}

/// The name to look up for `ip` in `zone`: the address reversed, by octet
/// for IPv4 and by nibble for IPv6 (RFC 5782 2.1, 2.4).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len());
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str(zone);
            name.push('.');
            name
        }
    }
}

/// Whether `a` is one of the list error codes (127.255.255.0/24).
fn is_error_code(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 127 && o[1] == 255 && o[2] == 255
}

/// What one list said about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Listed: its answer.
    Listed(Ipv4Addr),
    /// Not listed (no answer, or no answer that counts).
    NotListed,
    /// The list answered with an error code: not a listing.
    ListError(Ipv4Addr),
}

impl Outcome {
    /// What `answers` (the A records found) mean for `list`.
    pub fn of(list: &List, answers: &[Ipv4Addr]) -> Outcome {
        if let Some(e) = answers.iter().copied().find(|a| is_error_code(*a)) {
            return Outcome::ListError(e);
        }
        let counts = |a: &Ipv4Addr| {
            if list.answers.is_empty() {
                // RFC 5782 5: 127.0.0.1 is never a listing.
                a.octets()[0] == 127 && *a != Ipv4Addr::LOCALHOST
            } else {
                list.answers.iter().any(|n| n.contains(&IpAddr::V4(*a)))
            }
        };
        answers
            .iter()
            .copied()
            .find(counts)
            .map_or(Outcome::NotListed, Outcome::Listed)
    }
}

/// The score of a client, and the block list that named it with the
/// greatest weight (for the reply).
pub fn score<'a>(results: &[(&'a List, Outcome)]) -> (i32, Option<&'a str>) {
    let mut total = 0i32;
    let mut worst: Option<&List> = None;
    for (list, outcome) in results {
        if let Outcome::Listed(_) = outcome {
            total = total.saturating_add(list.weight);
            if list.weight > 0 && worst.is_none_or(|w| list.weight > w.weight) {
                worst = Some(list);
            }
        }
    }
    (total, worst.map(|l| l.zone.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(zone: &str, weight: i32, answers: &[&str]) -> List {
        List {
            zone: zone.into(),
            weight,
            answers: answers.iter().map(|a| a.parse().expect("net")).collect(),
        }
    }

    #[test]
    fn query_names_reverse_the_address() {
        let v4: IpAddr = "192.0.2.99".parse().expect("ip");
        assert_eq!(query_name(v4, "zen.example."), "99.2.0.192.zen.example.");
        let mapped: IpAddr = "::ffff:192.0.2.99".parse().expect("ip");
        assert_eq!(query_name(mapped, "zen.example"), "99.2.0.192.zen.example.");
        // RFC 5782 2.4's example.
        let v6: IpAddr = "2001:db8:1:2:3:4:567:89ab".parse().expect("ip");
        assert_eq!(
            query_name(v6, "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."
        );
    }

    #[test]
    fn error_codes_are_not_listings_and_answers_can_be_filtered() {
        let zen = list("zen.test", 3, &[]);
        let a = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        assert_eq!(
            Outcome::of(&zen, &[a("127.0.0.2")]),
            Outcome::Listed(a("127.0.0.2"))
        );
        assert_eq!(Outcome::of(&zen, &[]), Outcome::NotListed);
        assert_eq!(
            Outcome::of(&zen, &[a("127.255.255.254")]),
            Outcome::ListError(a("127.255.255.254"))
        );
        assert_eq!(Outcome::of(&zen, &[a("10.0.0.1")]), Outcome::NotListed);
        assert_eq!(Outcome::of(&zen, &[a("127.0.0.1")]), Outcome::NotListed);
        let only_sbl = list("zen.test", 3, &["127.0.0.2/32"]);
        assert_eq!(
            Outcome::of(&only_sbl, &[a("127.0.0.10")]),
            Outcome::NotListed
        );
    }

    #[test]
    fn allow_lists_take_weight_away() {
        let (bl, wl) = (list("bl.test", 2, &[]), list("wl.test", -2, &[]));
        let hit = Outcome::Listed("127.0.0.2".parse().expect("ip"));
        assert_eq!(
            score(&[(&bl, hit.clone()), (&wl, Outcome::NotListed)]),
            (2, Some("bl.test"))
        );
        assert_eq!(score(&[(&bl, hit.clone()), (&wl, hit)]).0, 0);
    }
}
