// What an IP address is, by the special-purpose ranges of the IANA registries, as ipaddr.js names
// them (`range()`); Sigil only maps those names onto the classes its destination policy decides on.
// Parsing is ipaddr.js too, with two guards: node:net decides what is an address at all (ipaddr.js
// also takes classful and octal spellings such as 1.2.3 or 01.2.3.4), and IPv6 text goes through the
// WHATWG URL parser first, because ipaddr.js reads the deprecated ::a.b.c.d as ::ffff:a.b.c.d.
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';

/** What an address is; only `public` is fetched from without an explicit allowance. */
export type AddressClass =
  | 'public' | 'unspecified' | 'loopback' | 'private' | 'link-local' | 'cgnat' | 'multicast' | 'broadcast'
  | 'documentation' | 'benchmarking' | 'reserved';

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];
const cidr = (text: string): Range => ipaddr.parseCIDR(text);

// ipaddr.js puts these under `reserved` (v4); Sigil names them, so a refusal says what the address is
const V4_DOCUMENTATION = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'].map(cidr); // RFC 5737
const V4_BENCHMARKING = cidr('198.18.0.0/15'); // RFC 2544
const V6_DOCUMENTATION = ['2001:db8::/32', '3fff::/20'].map(cidr); // RFC 3849, RFC 9637
const NAT64_WELL_KNOWN = cidr('64:ff9b::/96'); // RFC 6052: the last 32 bits are the IPv4 address reached
const GLOBAL_UNICAST = cidr('2000::/3');
const IETF_PROTOCOL_ASSIGNMENTS = cidr('2001::/23'); // RFC 2928

const inRange = (address: ipaddr.IPv4 | ipaddr.IPv6, [base, bits]: Range) => address.kind() === base.kind() && address.match(base, bits);

const V4_BY_RANGE: Record<string, AddressClass | ((a: ipaddr.IPv4) => AddressClass)> = {
  unicast: 'public',
  unspecified: 'unspecified', // "this network" 0.0.0.0/8 (RFC 1122); 0.0.0.0 reaches the local host on many systems
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local', // cloud metadata services live here (169.254.169.254)
  loopback: 'loopback',
  carrierGradeNat: 'cgnat',
  private: 'private',
  reserved: (a) => V4_DOCUMENTATION.some((r) => inRange(a, r)) ? 'documentation' : inRange(a, V4_BENCHMARKING) ? 'benchmarking' : 'reserved',
  as112: 'public', // anycast DNS sinks on the public internet
  amt: 'public', // multicast tunnelling relays, public unicast
};

const V6_BY_RANGE: Record<string, AddressClass | ((a: ipaddr.IPv6) => AddressClass)> = {
  unicast: (a) => inRange(a, GLOBAL_UNICAST) ? 'public' : 'reserved', // e.g. the deprecated IPv4-compatible ::a.b.c.d
  unspecified: 'unspecified',
  loopback: 'loopback',
  linkLocal: 'link-local',
  multicast: 'multicast',
  uniqueLocal: 'private',
  deprecatedSiteLocal: 'private',
  // reaches the IPv4 address in its last 32 bits: judged as that address
  ipv4Mapped: (a) => classifyV4(a.toIPv4Address()),
  rfc6052: (a) => inRange(a, NAT64_WELL_KNOWN) ? classifyV4(embeddedV4(a)) : 'private', // else local-use NAT64 (RFC 8215)
  rfc6145: 'reserved', // IPv4-translated (SIIT)
  discard: 'reserved',
  '6to4': 'reserved', // deprecated, embeds any IPv4 address
  teredo: 'reserved',
  benchmarking: 'reserved',
  amt: 'reserved',
  as112v6: (a) => inRange(a, IETF_PROTOCOL_ASSIGNMENTS) ? 'reserved' : 'public',
  deprecatedOrchid: 'reserved',
  orchid2: 'reserved',
  droneRemoteIdProtocolEntityTags: 'reserved',
  segmentRouting: 'reserved',
  reserved: (a) => V6_DOCUMENTATION.some((r) => inRange(a, r)) ? 'documentation' : 'reserved',
};

/** The range names this table decides on; a name a newer ipaddr.js adds is refused until it is added here. */
export const KNOWN_RANGE_NAMES = { ipv4: Object.keys(V4_BY_RANGE), ipv6: Object.keys(V6_BY_RANGE) };

function embeddedV4(a: ipaddr.IPv6): ipaddr.IPv4 {
  return new ipaddr.IPv4(a.toByteArray().slice(12));
}

function classifyV4(a: ipaddr.IPv4): AddressClass {
  const decide = V4_BY_RANGE[a.range()] ?? 'reserved';
  return typeof decide === 'function' ? decide(a) : decide;
}

function classifyV6(a: ipaddr.IPv6): AddressClass {
  const decide = V6_BY_RANGE[a.range()] ?? 'reserved';
  return typeof decide === 'function' ? decide(a) : decide;
}

/** An IPv6 literal as ipaddr.js may read it: zone id dropped, dotted-quad tail rewritten as hex words. */
function parseV6(address: string): ipaddr.IPv6 {
  const bare = address.replace(/%.*$/, '');
  if (!isIPv6(bare)) throw new TypeError(`not an IPv6 address: ${address}`);
  return ipaddr.IPv6.parse(new URL(`http://[${bare}]`).hostname.slice(1, -1));
}

/** 16 bytes of an IPv6 address (a zone id such as %eth0 is ignored). */
export function ipv6Bytes(address: string): Uint8Array {
  return Uint8Array.from(parseV6(address).toByteArray());
}

/** The class of an IPv4 or IPv6 address (literal text); throws a TypeError for anything else. */
export function classifyAddress(address: string): AddressClass {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (isIPv4(bare)) return classifyV4(ipaddr.IPv4.parse(bare));
  if (isIPv6(bare.replace(/%.*$/, ''))) return classifyV6(parseV6(bare));
  throw new TypeError(`not an IP address: ${address}`);
}
