"""SNS notifications of asynchronous answers: AsyncInferenceConfig.OutputConfig.NotificationConfig.

After an answer (or failure) is written to S3, a JSON message with the fields AWS documents is
published to the SuccessTopic (or ErrorTopic) with boto3's SNS client, under boto3's standard
settings (`AWS_ENDPOINT_URL_SNS`), as the request's model role where the server maps it, else
with the server's credentials (`credentials.py`). When IncludeInferenceResponseIn
names the topic, the answer itself travels inline (base64), if it is at most 128 KB, as AWS
bounds it. A publish that fails is logged and counted: it never fails the request, whose
output is in S3 already. Blocking calls, made from worker threads.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from polyhost.asyncinf.credentials import AwsClients
from polyhost.asyncinf.queue import AsyncRequest
from polyhost.backends.role_credentials import RoleCredentials
from polyhost.control.seam import AsyncInferenceSpec

log = logging.getLogger("polyhost.asyncinf")

MAX_INLINE_BYTES = 128 * 1024
SUCCESS, ERROR = "SUCCESS_NOTIFICATION_TOPIC", "ERROR_NOTIFICATION_TOPIC"


def _timestamp(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def notification(
    request: AsyncRequest,
    region: str,
    now: float,
    *,
    ok: bool,
    content_type: str,
    reason: str | None = None,
    body: bytes | None = None,
) -> dict[str, Any]:
    """The message AWS documents for one finished request; `body` is included inline when
    given and small enough."""
    request_parameters = {
        "accept": request.accept,
        "contentType": request.content_type,
        "endpointName": request.endpoint,
        "inputLocation": request.input_location,
    }
    response_parameters: dict[str, Any] = {"contentType": content_type}
    if ok:
        response_parameters["outputLocation"] = request.output_location
    else:
        response_parameters["failureLocation"] = request.failure_location
    message: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": _timestamp(now),
        "receivedTime": _timestamp(request.received),
        "invocationStatus": "Completed" if ok else "Failed",
        "requestParameters": {k: v for k, v in request_parameters.items() if v is not None},
        "responseParameters": response_parameters,
        "inferenceId": request.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if not ok and reason is not None:
        message["failureReason"] = reason
    if body is not None and len(body) <= MAX_INLINE_BYTES:
        message["responseBody"] = {
            "content": base64.b64encode(body).decode("ascii"),
            "encoding": "BASE64",
        }
    return message


class Notifier:
    """Publishes notifications; `failures` counts the publishes that did not go through."""

    def __init__(self, region: str, timeout_s: float, clients: AwsClients | None = None) -> None:
        self._region = region
        self._clients = clients or AwsClients(RoleCredentials({}), timeout_s)
        self._lock = threading.Lock()
        self.published = 0
        self.failures = 0

    def finished(
        self,
        config: AsyncInferenceSpec | None,
        request: AsyncRequest,
        now: float,
        *,
        ok: bool,
        content_type: str,
        body: bytes,
        reason: str | None = None,
        role: str | None = None,
    ) -> None:
        """Publish the notification `config` asks for, if any, as `role`; never raises."""
        if config is None:
            return
        topic = config.success_topic if ok else config.error_topic
        if not topic:
            return
        inline = (SUCCESS if ok else ERROR) in config.include_response_in
        message = notification(
            request,
            self._region,
            now,
            ok=ok,
            content_type=content_type,
            reason=reason,
            body=body if inline else None,
        )
        try:
            sns = self._clients.client("sns", role, self._region)
            sns.publish(TopicArn=topic, Message=json.dumps(message))
        except Exception as error:  # a notification never fails the request
            with self._lock:
                self.failures += 1
            log.warning(
                "asynchronous request %s: notifying %s failed: %s",
                request.inference_id,
                topic,
                _reason(error),
            )
            return
        with self._lock:
            self.published += 1


def _reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error) or type(error).__name__
