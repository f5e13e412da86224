import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import circuit_breaker_pb2 as _circuit_breaker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowDefinition(_message.Message):
    __slots__ = ("name", "description", "tasks", "default_retry", "default_timeouts", "run_timeout", "continue_on_failure", "default_circuit_breaker")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RETRY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    RUN_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CIRCUIT_BREAKER_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskDefinition]
    default_retry: RetryPolicy
    default_timeouts: TaskTimeouts
    run_timeout: _duration_pb2.Duration
    continue_on_failure: bool
    default_circuit_breaker: _circuit_breaker_pb2.CircuitBreaker
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskDefinition, _Mapping]]] = ..., default_retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., default_timeouts: _Optional[_Union[TaskTimeouts, _Mapping]] = ..., run_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., continue_on_failure: _Optional[bool] = ..., default_circuit_breaker: _Optional[_Union[_circuit_breaker_pb2.CircuitBreaker, _Mapping]] = ...) -> None: ...

class TaskDefinition(_message.Message):
    __slots__ = ("id", "handler", "queue", "depends_on", "input", "retry", "timeouts", "rate_limit_key")
    ID_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    handler: str
    queue: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    input: _struct_pb2.Value
    retry: RetryPolicy
    timeouts: TaskTimeouts
    rate_limit_key: str
    def __init__(self, id: _Optional[str] = ..., handler: _Optional[str] = ..., queue: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., timeouts: _Optional[_Union[TaskTimeouts, _Mapping]] = ..., rate_limit_key: _Optional[str] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff", "backoff_coefficient", "max_backoff", "jitter", "non_retryable_error_types")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_ERROR_TYPES_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff: _duration_pb2.Duration
    backoff_coefficient: float
    max_backoff: _duration_pb2.Duration
    jitter: float
    non_retryable_error_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_coefficient: _Optional[float] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., jitter: _Optional[float] = ..., non_retryable_error_types: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskTimeouts(_message.Message):
    __slots__ = ("start_to_close", "heartbeat", "schedule_to_start")
    START_TO_CLOSE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_TO_START_FIELD_NUMBER: _ClassVar[int]
    start_to_close: _duration_pb2.Duration
    heartbeat: _duration_pb2.Duration
    schedule_to_start: _duration_pb2.Duration
    def __init__(self, start_to_close: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., schedule_to_start: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("name", "version", "definition", "create_time", "content_hash")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    definition: WorkflowDefinition
    create_time: _timestamp_pb2.Timestamp
    content_hash: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., definition: _Optional[_Union[WorkflowDefinition, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., content_hash: _Optional[str] = ...) -> None: ...

class WorkflowSummary(_message.Message):
    __slots__ = ("name", "latest_version", "task_count", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    latest_version: int
    task_count: int
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., latest_version: _Optional[int] = ..., task_count: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExecutionPlan(_message.Message):
    __slots__ = ("layers",)
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[PlanLayer]
    def __init__(self, layers: _Optional[_Iterable[_Union[PlanLayer, _Mapping]]] = ...) -> None: ...

class PlanLayer(_message.Message):
    __slots__ = ("task_ids",)
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ...) -> None: ...
