"""The device gateway: devices speak a small JSON protocol over WebSocket (docs/devices.md) to
sign in, watch topics, push actions and call the RPCs their contracts open to devices.

Every device request is checked here — frame size, shape, who the device is, the permission
the topic, action or RPC needs (docs/identity.md), names, models, limits — and a bad one gets
an error frame while the connection stays usable. A refusal for a missing permission is
counted and written to the audit log.

One module per concept, in the order a frame meets them: `routes` (HTTP and `/ws`),
`connection` (one device: sending, who it is), `frames` (reading and writing frames),
`dispatch` (frame → handler), `sign_in` and `requests` (the handlers), `subscriptions` (one
connection's), `entries` (what devices may use, from the contract catalog, and the plugins'
screens: services.ui.screens), `web_security` (allowed origins; the security headers and
plugin files it shares with the admin page are in services.ui.web) and `state` (what every
connection shares).
"""

from services.client.gateway.entries import DeviceEntries
from services.client.gateway.routes import create_app
from services.client.gateway.state import Gateway, GatewayLimits

__all__ = ["DeviceEntries", "Gateway", "GatewayLimits", "create_app"]
