"""Click-to-dial (``[dial]``): ``tel:`` links in the agent's browser ring the agent's phone,
then the PBX calls the number.

``service.DialService`` holds the logic (keys, number, deny, limits, the Originate and its
outcome), ``routes.dial_routes`` puts it on the web listener, ``pages`` renders the HTML,
``links`` builds the URLs ``cti-bridge dial-link`` prints.
"""

from cti_bridge.dial.routes import dial_routes
from cti_bridge.dial.service import DialService

__all__ = ["DialService", "dial_routes"]
