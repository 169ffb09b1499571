//! From a captured packet to a TCP segment: link layers (Ethernet with VLAN tags, Linux cooked
//! SLL and SLL2, raw IP, BSD loopback), IPv4 and IPv6 (with extension headers), TCP.
//!
//! Header parsing is `etherparse`'s lax slicer: it accepts packets the snap length cut short and
//! says so, which matters because a cut segment leaves a hole in the stream.

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use std::net::{IpAddr, SocketAddr};

/// `LINKTYPE_*` values this module reads.
pub mod linktype {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    /// Ethernet II (VLAN tags allowed).
    pub const ETHERNET: u32 = 1;
    /// Raw IP as some BSDs number it in `DLT_RAW`.
    pub const RAW_BSD: u32 = 12;
    /// Raw IP as OpenBSD numbers it.
    pub const RAW_OPENBSD: u32 = 14;
    /// Raw IPv4 or IPv6.
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1 (`tcpdump -i any`).
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;
}

/// A TCP segment with its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<'a> {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number, when the ACK flag is set.
    pub ack: Option<u32>,
    /// SYN flag.
    pub syn: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// Captured payload.
    pub payload: &'a [u8],
    /// The snap length cut the packet: the payload is only a prefix.
    pub cut: bool,
}

/// Why a packet yielded no TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not TCP over IP (ARP, UDP, ICMP, …): nothing to report.
    NotTcp,
    /// A link type this reader does not know.
    UnsupportedLinktype(u32),
    /// An IP fragment; TCP over fragmented IP is not reassembled.
    Fragment,
    /// Headers that could not be read.
    Malformed(String),
}

/// Parses one packet of link type `linktype`.
pub fn parse(linktype: u32, data: &[u8]) -> Result<TcpPacket<'_>, Skip> {
    let sliced = match linktype {
        linktype::ETHERNET => {
            LaxSlicedPacket::from_ethernet(data).map_err(|e| Skip::Malformed(e.to_string()))?
        }
        linktype::LINUX_SLL => {
            // packet type (2), ARPHRD (2), address length (2), address (8), protocol (2).
            let (hdr, rest) = split(data, 16, "Linux cooked header")?;
            LaxSlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([hdr[14], hdr[15]])),
                rest,
            )
        }
        linktype::LINUX_SLL2 => {
            // protocol (2), reserved (2), interface index (4), ARPHRD (2), packet type (1),
            // address length (1), address (8).
            let (hdr, rest) = split(data, 20, "Linux cooked v2 header")?;
            LaxSlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([hdr[0], hdr[1]])), rest)
        }
        linktype::NULL | linktype::LOOP => {
            let (_, rest) = split(data, 4, "loopback header")?;
            from_ip(rest)?
        }
        linktype::RAW
        | linktype::RAW_BSD
        | linktype::RAW_OPENBSD
        | linktype::IPV4
        | linktype::IPV6 => from_ip(data)?,
        other => return Err(Skip::UnsupportedLinktype(other)),
    };
    let (src_ip, dst_ip, ip_payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            v4.payload(),
        ),
        Some(LaxNetSlice::Ipv6(v6)) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            v6.payload(),
        ),
        _ => return Err(Skip::NotTcp),
    };
    if ip_payload.ip_number != etherparse::IpNumber::TCP {
        return Err(Skip::NotTcp);
    }
    if ip_payload.fragmented {
        return Err(Skip::Fragment);
    }
    let tcp = match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => t,
        _ => {
            let why = sliced
                .stop_err
                .as_ref()
                .map(|(e, _)| e.to_string())
                .unwrap_or_else(|| "TCP header missing".into());
            return Err(Skip::Malformed(why));
        }
    };
    Ok(TcpPacket {
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.ack().then(|| tcp.acknowledgment_number()),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        payload: tcp.payload(),
        cut: ip_payload.incomplete,
    })
}

fn from_ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    LaxSlicedPacket::from_ip(data).map_err(|e| Skip::Malformed(e.to_string()))
}

fn split<'a>(data: &'a [u8], n: usize, what: &str) -> Result<(&'a [u8], &'a [u8]), Skip> {
    if data.len() < n {
        return Err(Skip::Malformed(format!("{what} cut short")));
    }
    Ok(data.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn v4_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1040, 50122, 7, 1000)
            .ack(99)
            .psh();
        let mut out = vec![];
        b.write(&mut out, payload).unwrap();
        out
    }

    fn v6_tcp(payload: &[u8]) -> Vec<u8> {
        let mut src = [0u8; 16];
        src[15] = 1;
        let b = PacketBuilder::ipv6(src, src, 64)
            .tcp(5000, 1040, 0xffff_fff0, 1000)
            .syn();
        let mut out = vec![];
        b.write(&mut out, payload).unwrap();
        out
    }

    fn check_v4(p: &TcpPacket<'_>) {
        assert_eq!(p.src.to_string(), "10.0.0.1:1040");
        assert_eq!(p.dst.to_string(), "10.0.0.2:50122");
        assert_eq!((p.seq, p.ack, p.syn, p.fin), (7, Some(99), false, false));
        assert_eq!(p.payload, b"<x/>");
        assert!(!p.cut);
    }

    #[test]
    fn every_link_type() {
        let ip = v4_tcp(b"<x/>");
        // Ethernet, with and without a VLAN tag, and with trailing padding.
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&ip);
        eth.extend_from_slice(&[0; 6]);
        check_v4(&parse(linktype::ETHERNET, &eth).unwrap());
        let mut vlan = vec![0u8; 12];
        vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        vlan.extend_from_slice(&ip);
        check_v4(&parse(linktype::ETHERNET, &vlan).unwrap());
        // SLL: protocol in the last two of 16 bytes.
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        check_v4(&parse(linktype::LINUX_SLL, &sll).unwrap());
        // SLL2: protocol in the first two of 20 bytes.
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        check_v4(&parse(linktype::LINUX_SLL2, &sll2).unwrap());
        for lt in [linktype::RAW, linktype::IPV4, linktype::RAW_BSD] {
            check_v4(&parse(lt, &ip).unwrap());
        }
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        check_v4(&parse(linktype::NULL, &null).unwrap());
        assert_eq!(parse(147, &ip), Err(Skip::UnsupportedLinktype(147)));
    }

    #[test]
    fn ipv6_and_flags() {
        let syn = v6_tcp(b"");
        let p = parse(linktype::RAW, &syn).unwrap();
        assert_eq!(p.src.to_string(), "[::1]:5000");
        assert_eq!((p.seq, p.ack, p.syn), (0xffff_fff0, None, true));
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x86, 0xdd]);
        sll.extend_from_slice(&v6_tcp(b"abc"));
        assert_eq!(parse(linktype::LINUX_SLL, &sll).unwrap().payload, b"abc");
    }

    #[test]
    fn cut_packets_fragments_and_non_tcp() {
        let ip = v4_tcp(b"<a-longer-payload/>");
        let p = parse(linktype::RAW, &ip[..ip.len() - 5]).unwrap();
        assert!(p.cut);
        assert_eq!(p.payload, b"<a-longer-payl");
        // Cut inside the TCP header.
        assert!(matches!(
            parse(linktype::RAW, &ip[..30]),
            Err(Skip::Malformed(_))
        ));
        // More-fragments flag set.
        let mut frag = ip.clone();
        frag[6] |= 0x20;
        assert_eq!(parse(linktype::RAW, &frag), Err(Skip::Fragment));
        let mut udp = vec![];
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 1)
            .udp(1, 2)
            .write(&mut udp, b"x")
            .unwrap();
        assert_eq!(parse(linktype::RAW, &udp), Err(Skip::NotTcp));
        assert!(matches!(
            parse(linktype::ETHERNET, &[0; 5]),
            Err(Skip::Malformed(_))
        ));
        assert!(matches!(parse(linktype::RAW, &[]), Err(Skip::Malformed(_))));
        assert!(matches!(
            parse(linktype::LINUX_SLL2, &[0; 19]),
            Err(Skip::Malformed(_))
        ));
    }
}
