"""The Kafka driver: ``kafka://host:port[,host:port][?option=value&...]`` (confluent-kafka).

Topics map 1:1 to Kafka topics; keys and values go through serdes (JSON by default); record
timestamps and headers are kept. The engine chooses every partition itself (Kafka's murmur2 rule,
:mod:`workbench.partitioning`), so the driver produces to explicit partitions; the producer is
still configured with ``partitioner=murmur2_random`` so that anything it places agrees with the
Java client.

**Exactly-once, like Kafka Streams' exactly_once_v2.** One transactional producer per driver
(one per process and application). :meth:`KafkaDriver.commit` runs one transaction: produce every
output (sinks, repartition and changelog records), ``send_offsets_to_transaction`` with the
input positions and the consumer group metadata of this process's group member, commit. The
group metadata fences zombies: a process that lost its partitions in a rebalance has a stale
generation, so its transaction is refused (:class:`~workbench.errors.FencedError`) and nothing it
wrote becomes visible. With ``instance=NAME`` the ``transactional.id`` is stable
(``<app>-<NAME>``) and the group membership static (``group.instance.id``): a restarted instance
fences its predecessor's producer at once and aborts its open transaction, instead of waiting
for the transaction timeout; it takes its partitions back without a rebalance.

**Reading.** Every consumer reads ``read_committed``. The engine reads by explicit position; a
transactional partition has gaps (commit markers, aborted records), so :meth:`end_offset` is the
offset after the last *committed record* below the last stable offset (found from the log,
cached), not the raw last stable offset: "position == end" then still means "nothing left".
After a commit the driver knows where its own records end, so reads see the driver's own
commits at once (the broker writes transaction markers asynchronously).

**Membership.** :meth:`assign` joins the consumer group ``<app>`` with the range assignor: every
process subscribes to the same topics, and the range assignor gives the same partition number of
every topic with the same partition count to the same member, so the partitions of a task (a
sub-topology's inputs, which are co-partitioned) always land together. :meth:`poll_membership`
reports rebalances to the engine (see its docstring for the engine's side).

**Bad input.** A record that cannot be deserialized stops the run with a
:class:`~workbench.errors.SerializationError` naming topic, partition and offset; with
``dead_letter=TOPIC`` records of source topics go to that topic instead (raw bytes, the error in
``workbench.error*`` headers) in the same transaction as the position that skips them.

**Topics the driver creates** keep their records (``retention.ms=-1``; ``retention_ms=N`` or
``default`` for the broker's): Kafka deletes by record timestamp, so replayed history would
otherwise vanish within minutes. Changelog topics are compacted.

URL options: ``partitions`` (default count of topics the driver creates, 1), ``replication``
(-1: the broker's default), ``retention_ms``, ``dead_letter``, ``instance``,
``session_timeout_ms`` (10000),
``transaction_timeout_ms`` (10000), ``timeout`` (seconds to wait for the broker, 60),
``key_serde``/``value_serde`` (``json``); any option with a dot is a librdkafka setting for
every client, or only for the producer/consumers with a ``producer.``/``consumer.`` prefix.

**Parts** (one job each): :mod:`.options` (the URL), :mod:`.connection` (client configs and
factories, error translation), :mod:`.codec` (records to messages and back), :mod:`.topics`
(admin), :mod:`.reader` (reading by position), :mod:`.ends` (end offsets over transaction
markers), :mod:`.transactions` (the producers, commits, committed positions),
:mod:`.membership` (the consumer group), :mod:`.dead_letters`, and :mod:`.driver`, which puts
them together behind the driver contract.
"""

from __future__ import annotations

from .driver import KafkaDriver, connect_kafka
from .options import KafkaOptions

__all__ = ["KafkaDriver", "KafkaOptions", "connect_kafka"]
