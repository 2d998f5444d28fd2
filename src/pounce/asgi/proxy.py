"""Which peers are trusted to speak for the client: ``[proxy] trusted``.

:class:`TrustedPeers` answers, once per connection, whether its peer is a proxy
whose forwarding headers (and request ID) are believed.  Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """The ``[proxy] trusted`` list: IP addresses, CIDR networks, ``"unix"``, ``"*"``."""

    __slots__ = ("_networks", "any", "unix")

    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        self.unix = False
        networks: list[Network] = []
        for entry in entries:
            if entry == "*":
                self.any = True
            elif entry == "unix":
                self.unix = True
            else:
                networks.append(ipaddress.ip_network(entry, strict=False))
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return self.any or self.unix or bool(self._networks)

    def trusts(self, client: tuple[str, int] | None) -> bool:
        """Whether a connection's peer is trusted; ``client`` None is a Unix-socket peer."""
        if client is None:
            return self.any or self.unix
        if self.any:
            return True
        return self.trusts_address(client[0])

    def trusts_address(self, host: str) -> bool:
        """Whether the IP address ``host`` (a hop named in a forwarding header) is trusted."""
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)
