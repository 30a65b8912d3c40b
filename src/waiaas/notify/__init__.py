"""Notifications: the :class:`Notifier` port and Telegram, Discord, ntfy and webhook channels.

The pipeline hands :class:`NotificationEvent` values to a :class:`Notifier` after commit.
:class:`NotificationDispatcher` delivers them in a background thread: critical events to every
enabled channel, others to the highest-priority channel that works. :class:`ChannelService`
stores channels in the database with their secrets sealed by the keystore.

Importing this package does no I/O. See ``docs/notifications.md``.
"""

from waiaas.notify.base import (
    CRITICAL_EVENTS,
    MAX_MESSAGE,
    ChannelType,
    NotificationEvent,
    Notifier,
    Sealer,
    is_critical,
)
from waiaas.notify.channels import (
    Channel,
    ChannelConfig,
    DiscordChannel,
    DiscordConfig,
    NtfyChannel,
    NtfyConfig,
    OutboundRequest,
    ResponseVerdict,
    TelegramChannel,
    TelegramConfig,
    WebhookChannel,
    WebhookConfig,
    build_channel,
    parse_channel_config,
)
from waiaas.notify.dispatcher import (
    ChannelResult,
    ChannelSource,
    DeliveryReport,
    DispatcherStats,
    NotificationDispatcher,
    RetryPolicy,
    StaticChannelSource,
    deliver,
)
from waiaas.notify.service import ChannelInfo, ChannelService, DatabaseChannelSource
from waiaas.notify.webhook import (
    WebhookSignatureError,
    generate_webhook_secret,
    sign_webhook,
    verify_webhook_signature,
)

__all__ = [
    "CRITICAL_EVENTS",
    "MAX_MESSAGE",
    "Channel",
    "ChannelConfig",
    "ChannelInfo",
    "ChannelResult",
    "ChannelService",
    "ChannelSource",
    "ChannelType",
    "DatabaseChannelSource",
    "DeliveryReport",
    "DiscordChannel",
    "DiscordConfig",
    "DispatcherStats",
    "NotificationDispatcher",
    "NotificationEvent",
    "Notifier",
    "NtfyChannel",
    "NtfyConfig",
    "OutboundRequest",
    "ResponseVerdict",
    "RetryPolicy",
    "Sealer",
    "StaticChannelSource",
    "TelegramChannel",
    "TelegramConfig",
    "WebhookChannel",
    "WebhookConfig",
    "WebhookSignatureError",
    "build_channel",
    "deliver",
    "generate_webhook_secret",
    "is_critical",
    "parse_channel_config",
    "sign_webhook",
    "verify_webhook_signature",
]
