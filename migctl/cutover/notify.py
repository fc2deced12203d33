"""SNS notices at the start, success, failure and rollback of a cutover, when a topic is set.

The topic is ``[cutover] sns_topic_arn``, else the stack output ``snsTopicArn``.
A notice that cannot be sent never stops or fails the cutover: the failure
is journaled as a note and the run goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from migctl.errors import translate
from migctl.infra.outputs import load_cached_outputs

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

    from migctl.config import Settings

log = logging.getLogger(__name__)
_SUBJECT_MAX = 100  # SNS refuses longer subjects


@dataclass(frozen=True)
class Notifier:
    sns: SNSClient | None  # None: no topic, nothing to send
    topic_arn: str | None

    def send(self, subject: str, message: str) -> str | None:
        """Publish; returns why it failed, or None when sent (or no topic is set)."""
        if not self.topic_arn or self.sns is None:
            return None
        try:
            self.sns.publish(
                TopicArn=self.topic_arn, Subject=subject[:_SUBJECT_MAX], Message=message
            )
        except Exception as exc:
            err = translate(exc)
            why = err.one_line() if err else f"{type(exc).__name__}: {exc}"
            log.warning("SNS notice not sent: %s", why)
            return why
        return None


def topic_for(settings: Settings) -> str | None:

    if settings.cutover.sns_topic_arn:
        return settings.cutover.sns_topic_arn
    cached = load_cached_outputs(settings).get("snsTopicArn")
    return cached if isinstance(cached, str) and cached else None
