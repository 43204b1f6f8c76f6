"""kombu's Redis transport, with a worker that survives a Redis restart while it holds messages.

Celery 5.7.0 (celery/worker/consumer/consumer.py, ``on_connection_error_after_connected``) handles a
lost broker connection with ``connection.collect()`` and then ``connection.close()``. When the
dead socket makes ``collect()``'s close of a channel fail (an error it ignores), ``collect()`` still
detaches the transport; ``close()`` then closes that channel again, and the channel tries to put
back the messages the worker had received and not yet acknowledged (``acks_late``) through a
connection that no longer has its parameters: ``AttributeError: 'NoneType' object has no attribute
'hostname'``; a task that finishes after its channel was closed fails its acknowledgement the same
way. That is not a connection error, so the worker logs "Unrecoverable error" and exits instead of
reconnecting: seen in CI when Redis restarted under a busy worker. Celery 5.6 did not close the
connection a second time.

Here a channel whose connection is gone answers as a lost connection would, with a redis
``ConnectionError`` that kombu and Celery already handle: a late acknowledgement is logged ("Couldn't
ack") and the message stays in Redis's unacked set, from which any worker puts it back once
``visibility_timeout`` has passed (kombu's own recovery for a worker that died holding messages);
closing the channel leaves its held messages there the same way, with a warning. When Redis itself
restarted empty they are gone either way; every periodic task here is enqueued again by beat and
the outbox has its own leases.

``tests/platform/test_broker_restart.py`` shows the stock transport failing this way and this one
reconnecting. Drop this module once a kombu/celery release closes the connection once.
"""

from __future__ import annotations

import logging

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)


def _detached(channel: redis.Channel) -> bool:
    """The channel was closed (kombu sets its transport to None) or its transport was detached
    from the connection (``Connection.collect()``/``close()`` set the transport's client to None)."""
    transport = channel.connection
    return transport is None or transport.client is None


class QoS(redis.QoS):
    def restore_unacked(self, client=None):
        if client is None and _detached(self.channel):
            logger.warning(
                "Broker connection closed with %d message(s) not acknowledged: they come back once "
                "the visibility timeout has passed",
                len(self._delivered),
            )
            self._delivered.clear()
            return None
        return super().restore_unacked(client)


class Channel(redis.Channel):
    QoS = QoS

    def _connparams(self, asynchronous=False):
        if _detached(self):
            raise RedisConnectionError("The broker connection of this channel was closed.")
        return super()._connparams(asynchronous=asynchronous)


class Transport(redis.Transport):
    Channel = Channel
