"""Create and inspect the declared topics on a broker (``alpha topics create|list``).

Creation is idempotent: a topic that exists as declared is left alone; one that exists with a
different partition count or cleanup policy is reported as drift and never altered, because
re-partitioning a keyed topic silently moves keys between partitions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # not re-exported for type checkers
from confluent_kafka.admin._listoffsets import OffsetSpec  # not re-exported for type checkers
from confluent_kafka.cimpl import NewTopic

from schemas.errors import AlphaError
from topology.spec import TOPICS, TopicSpec

_TIMEOUT_S = 30.0
#: How long a first metadata request may take before the broker counts as unreachable.
CONNECT_TIMEOUT_S = 10.0


class TopicAdminError(AlphaError):
    """The broker could not be reached or refused to create a declared topic."""


@dataclass(frozen=True, slots=True)
class TopicState:
    """A declared topic compared with the broker.

    Attributes:
        spec: The declaration.
        status: ``created``, ``exists``, ``missing`` or ``drift``.
        detail: What differs, for ``drift``.
    """

    spec: TopicSpec
    status: str
    detail: str = ""


def admin_client(bootstrap_servers: str) -> AdminClient:
    """Return an admin client for ``bootstrap_servers``."""
    return AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})


def inspect(admin: AdminClient, specs: tuple[TopicSpec, ...] = TOPICS) -> list[TopicState]:
    """Compare every declared topic with the broker, without changing anything.

    Raises:
        TopicAdminError: The broker does not answer.
    """
    existing = _partitions_by_topic(admin)
    present = [s for s in specs if s.name in existing]
    cleanup = _cleanup_policies(admin, [s.name for s in present])
    states = []
    for spec in specs:
        if spec.name not in existing:
            states.append(TopicState(spec, "missing"))
            continue
        diffs = []
        if existing[spec.name] != spec.partitions:
            diffs.append(f"{existing[spec.name]} partitions, declared {spec.partitions}")
        if cleanup.get(spec.name) != str(spec.cleanup):
            diffs.append(f"cleanup.policy={cleanup.get(spec.name)}, declared {spec.cleanup}")
        states.append(TopicState(spec, "drift" if diffs else "exists", "; ".join(diffs)))
    return states


def undeclared(admin: AdminClient, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Return topics on the broker that are not declared (internal ``__*`` ones excluded)."""
    declared = {s.name for s in specs}
    return sorted(
        t for t in _partitions_by_topic(admin) if t not in declared and not t.startswith("__")
    )


def create_topics(
    admin: AdminClient, *, replication: int, specs: tuple[TopicSpec, ...] = TOPICS
) -> list[TopicState]:
    """Create every declared topic that is missing; report the rest as they are.

    Args:
        admin: Client for the target cluster.
        replication: Replication factor of new topics (1 locally, 3 on the compose cluster).
        specs: The declaration.

    Raises:
        TopicAdminError: The broker is unreachable or refused a topic.
    """
    states = inspect(admin, specs)
    missing = [st.spec for st in states if st.status == "missing"]
    if missing:
        new = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=replication,
                config=s.configs(),
            )
            for s in missing
        ]
        futures = admin.create_topics(new, request_timeout=_TIMEOUT_S)
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a concurrent create won
                    raise TopicAdminError(f"creating {name}: {err.str()}") from exc
    created = {s.name for s in missing}
    _wait_for_leaders(admin, created)
    return [TopicState(st.spec, "created") if st.spec.name in created else st for st in states]


def _wait_for_leaders(admin: AdminClient, names: set[str]) -> None:
    # A new topic answers "not leader" for a while after metadata already names a leader: wait
    # until every partition answers a ListOffsets request, so callers can use it at once.
    deadline = time.monotonic() + _TIMEOUT_S
    pending = set(names)
    while pending:
        metadata = admin.list_topics(timeout=_TIMEOUT_S)
        for name in sorted(pending):
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                continue
            latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped in confluent-kafka
            request = {TopicPartition(name, p): latest for p in topic.partitions}
            try:
                for future in admin.list_offsets(request, request_timeout=5).values():
                    future.result()
            except KafkaException:
                continue
            pending.discard(name)
        if pending and time.monotonic() > deadline:
            raise TopicAdminError(
                f"partitions without a serving leader after {_TIMEOUT_S:.0f}s: {sorted(pending)}"
            )
        if pending:
            time.sleep(0.1)


def _partitions_by_topic(admin: AdminClient) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=CONNECT_TIMEOUT_S)
    except KafkaException as exc:
        raise TopicAdminError(
            f"cannot reach the broker within {CONNECT_TIMEOUT_S:.0f}s: {exc.args[0].str()}"
        ) from exc
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def _cleanup_policies(admin: AdminClient, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    out: dict[str, str] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=_TIMEOUT_S).items():
        try:
            configs = future.result()
        except KafkaException as exc:
            raise TopicAdminError(f"describing {resource.name}: {exc.args[0].str()}") from exc
        out[resource.name] = str(configs["cleanup.policy"].value)
    return out
