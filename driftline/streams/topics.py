"""Create driftline's Kafka topics, or check that the existing ones are co-partitioned.

Predictions and ground truth are keyed by ``event_id`` and must have the same partition count,
so that an event's prediction and label land on the same partition number and one worker sees
both; the workers' own topics use that count too, so that partition ``p`` of every input lands
on one worker. The simulator and the worker both call :func:`ensure_topics`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError


class KafkaSetupError(RuntimeError):
    """The broker does not answer, or an existing topic has another partition count."""


def _admin(bootstrap: str | Sequence[str], timeout: float) -> KafkaAdminClient:
    servers = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
    timeout_ms = max(1, int(timeout * 1000))
    options: dict[str, Any] = {
        "bootstrap_servers": servers,
        "request_timeout_ms": timeout_ms,
        "client_id": "driftline-simulate",
    }
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
        options["bootstrap_timeout_ms"] = timeout_ms
    try:
        return KafkaAdminClient(**options)
    except KafkaError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        raise KafkaSetupError(f"no Kafka broker answers at {','.join(servers)} within {timeout:g} s ({reason})") from None


def _configs(topic: str, compacted: Sequence[str], configs: Mapping[str, Mapping[str, str]] | None) -> dict[str, str]:
    out = {"cleanup.policy": "compact"} if topic in compacted else {}
    out.update((configs or {}).get(topic, {}))
    return out


def _align_configs(admin: KafkaAdminClient, topics: list[str], configs: Mapping[str, Mapping[str, str]] | None) -> None:
    wanted = {t: dict(configs[t]) for t in topics if configs and configs.get(t)}
    if not wanted:
        return
    try:
        # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}, the configs set on the topic.
        current = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in wanted])["topic"]
        changes = [
            ConfigResource(ConfigResourceType.TOPIC, t, {k: v for k, v in values.items()
                                                         if current.get(t, {}).get(k, {}).get("value") != v})
            for t, values in wanted.items()
        ]
        changes = [change for change in changes if change.configs]
        if changes:
            admin.alter_configs(changes, incremental=True)
    except KafkaError as error:
        detail = "; ".join(f"{t}: {values}" for t, values in wanted.items())
        raise KafkaSetupError(f"cannot set the configs of existing topics ({detail}): {error}") from None


def ensure_topics(
    bootstrap: str | Sequence[str],
    topics: Sequence[str],
    partitions: int,
    *,
    replication: int = 1,
    timeout: float = 10.0,
    compacted: Sequence[str] = (),
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, bool]:
    """Create the missing ``topics`` with ``partitions`` partitions; check the existing ones.

    Predictions and ground truth are keyed by ``event_id`` and must be co-partitioned (the same
    partition count), so that an event's prediction and label land on the same partition number
    and one worker sees both; an existing topic with another count is therefore an error, not
    something to adapt to.

    Parameters
    ----------
    bootstrap
        ``"host:port"`` or a list of them.
    topics
        Topic names.
    partitions
        Partition count every topic must have, >= 1.
    replication
        Replication factor of the topics created, >= 1.
    timeout
        Seconds to wait for the broker (connection and each request).
    compacted
        Topics (among ``topics``) created with ``cleanup.policy=compact``: Kafka keeps the latest
        message per key (the alerts topic, keyed by alert id).
    configs
        Further topic configs, by topic (e.g. ``max.message.bytes``): set on the topics created,
        and set (incrementally) on existing topics whose value differs.

    Returns
    -------
    dict
        Topic name -> ``True`` when this call created it, ``False`` when it existed.

    Raises
    ------
    KafkaSetupError
        No broker answers, or an existing topic has another partition count (the message names
        the topic and both counts).
    """
    for name, value in (("partitions", partitions), ("replication", replication)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not topics or not all(isinstance(t, str) and t for t in topics):
        raise ValueError(f"topics must be a non-empty list of topic names, got {topics!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
        raise ValueError(f"timeout must be a number > 0, got {timeout!r}")
    admin = _admin(bootstrap, timeout)
    try:
        existing = _partition_counts(admin, topics)
        wrong = {t: existing[t] for t in topics if t in existing and existing[t] != partitions}
        if wrong:
            detail = "; ".join(f"topic {t!r} has {n} partitions" for t, n in wrong.items())
            raise KafkaSetupError(
                f"{detail}, expected {partitions}: predictions and ground truth must have the same partition "
                "count (they are co-partitioned by event_id); ask for the existing count (--partitions) or "
                "delete the topic"
            )
        _align_configs(admin, [t for t in dict.fromkeys(topics) if t in existing], configs)
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            try:
                admin.create_topics(
                    [NewTopic(t, partitions, replication, topic_configs=_configs(t, compacted, configs)) for t in missing],
                    wait_for_metadata=True,
                )
            except TopicAlreadyExistsError:
                # Created concurrently (another simulator or a worker): check it like any other.
                return ensure_topics(bootstrap, topics, partitions, replication=replication, timeout=timeout,
                                     compacted=compacted, configs=configs)
            except KafkaError as error:
                raise KafkaSetupError(f"cannot create topic {', '.join(map(repr, missing))}: {error}") from None
        return {t: t in missing for t in topics}
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, topics: Sequence[str]) -> dict[str, int]:
    present = set(admin.list_topics())
    wanted = [t for t in dict.fromkeys(topics) if t in present]
    if not wanted:
        return {}
    counts = {}
    for description in admin.describe_topics(wanted):
        name = description.get("name") or description.get("topic")
        if description.get("error_code", 0) == 0 and name in present:
            counts[name] = len(description.get("partitions") or ())
    return counts
