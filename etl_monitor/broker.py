"""kombu's Redis transport, with a worker that survives a Redis restart while it holds messages.

Celery 5.7.0 (celery/worker/consumer/consumer.py, ``on_connection_error_after_connected``) handles a
lost broker connection with ``connection.collect()`` and then ``connection.close()``. When the
dead socket makes ``collect()``'s close of a channel fail (an error it ignores), ``collect()`` still
detaches the transport; ``close()`` then closes that channel again, and the channel tries to put
back the messages the worker had received and not yet acknowledged (``acks_late``) through a
connection that no longer has its parameters: ``AttributeError: 'NoneType' object has no attribute
'hostname'``. That is not a connection error, so the worker logs "Unrecoverable error" and exits
instead of reconnecting: seen in CI when Redis restarted under a busy worker. Celery 5.6 did not
close the connection a second time.

Here a channel whose transport is gone leaves those messages where they are: in Redis's unacked
set, from which any worker puts them back once ``visibility_timeout`` has passed (kombu's own
recovery for a worker that died holding messages). When Redis itself restarted empty they are gone
either way; every periodic task here is enqueued again by beat and the outbox has its own leases.

``tests/platform/test_broker_restart.py`` shows the stock transport failing this way and this one
reconnecting. Drop this module once a kombu/celery release closes the connection once.
"""

from __future__ import annotations

import logging

from kombu.transport import redis

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def restore_unacked(self, client=None):
        if client is None and self.channel.connection.client is None:
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


class Transport(redis.Transport):
    Channel = Channel
