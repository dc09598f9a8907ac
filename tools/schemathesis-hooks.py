# The string formats docs/openapi.yaml names beyond JSON Schema's own, for schemathesis
# (tools/test-api loads this file through SCHEMATHESIS_HOOKS): how to generate valid values,
# so that its checks can hold the server to "a request the document calls valid is
# accepted". Each format's rule is the server's (VRouterCore's address parsers).
import ipaddress

import schemathesis
from hypothesis import strategies as st


def prefixes(version, bits):
    # An address and a length, with the host bits cleared: "198.51.100.0/24", "2001:db8::/64".
    return st.tuples(st.ip_addresses(v=version), st.integers(0, bits)).map(
        lambda t: str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)))


def interfaces(version, bits):
    # An address, alone or with the length the pod side gets: "192.0.2.10", "192.0.2.10/24".
    return st.one_of(st.ip_addresses(v=version).map(str),
                     st.tuples(st.ip_addresses(v=version), st.integers(0, bits)).map(lambda t: f"{t[0]}/{t[1]}"))


def unicast4():
    # Not 0.0.0.0, multicast or the broadcast address (TableBuilder's rule for tunnel ends).
    return st.ip_addresses(v=4).filter(lambda a: not a.is_multicast and int(a) not in (0, 0xFFFFFFFF)).map(str)


def unicast6():
    # Not ::, ::1 or multicast.
    return st.ip_addresses(v=6).filter(lambda a: not a.is_multicast and int(a) > 1).map(str)


schemathesis.openapi.format("ipv4-unicast", unicast4())
schemathesis.openapi.format("ipv6-unicast", unicast6())
schemathesis.openapi.format("ip-prefix", st.one_of(prefixes(4, 32), prefixes(6, 128)))
schemathesis.openapi.format("ipv4-interface", interfaces(4, 32))
schemathesis.openapi.format("ipv6-interface", interfaces(6, 128))
