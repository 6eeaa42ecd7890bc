"""Adapters: how the broker reaches SMTP, SMS gateways, clinics' webhooks and Redis.

Each implements a port that `services` declares (`services.ports`, `services.notice_channels`,
`services.submit_limit`); services never import this package. The composition roots (`web.app`,
`queue.worker`, `cli`) choose the adapters.
"""

#: How long one outgoing message (SMTP, SMS gateway, webhook) may take before it counts as failed.
TIMEOUT_SECONDS = 10.0
