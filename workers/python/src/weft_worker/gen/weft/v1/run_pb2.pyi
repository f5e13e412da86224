import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_RUNNING: _ClassVar[RunStatus]
    RUN_STATUS_SUCCEEDED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]
    RUN_STATUS_CANCELLED: _ClassVar[RunStatus]
    RUN_STATUS_TIMED_OUT: _ClassVar[RunStatus]

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_PENDING: _ClassVar[TaskStatus]
    TASK_STATUS_QUEUED: _ClassVar[TaskStatus]
    TASK_STATUS_RUNNING: _ClassVar[TaskStatus]
    TASK_STATUS_RETRYING: _ClassVar[TaskStatus]
    TASK_STATUS_SUCCEEDED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELLED: _ClassVar[TaskStatus]
    TASK_STATUS_SKIPPED: _ClassVar[TaskStatus]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_RUN_STARTED: _ClassVar[EventType]
    EVENT_TYPE_TASK_QUEUED: _ClassVar[EventType]
    EVENT_TYPE_TASK_STARTED: _ClassVar[EventType]
    EVENT_TYPE_TASK_RETRYING: _ClassVar[EventType]
    EVENT_TYPE_TASK_COMPLETED: _ClassVar[EventType]
    EVENT_TYPE_TASK_FAILED: _ClassVar[EventType]
    EVENT_TYPE_TASK_CANCELLED: _ClassVar[EventType]
    EVENT_TYPE_TASK_SKIPPED: _ClassVar[EventType]
    EVENT_TYPE_TASK_WAITING: _ClassVar[EventType]
    EVENT_TYPE_RUN_FINISHED: _ClassVar[EventType]
    EVENT_TYPE_RUN_RESUMED: _ClassVar[EventType]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_SUCCEEDED: RunStatus
RUN_STATUS_FAILED: RunStatus
RUN_STATUS_CANCELLED: RunStatus
RUN_STATUS_TIMED_OUT: RunStatus
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_PENDING: TaskStatus
TASK_STATUS_QUEUED: TaskStatus
TASK_STATUS_RUNNING: TaskStatus
TASK_STATUS_RETRYING: TaskStatus
TASK_STATUS_SUCCEEDED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELLED: TaskStatus
TASK_STATUS_SKIPPED: TaskStatus
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_RUN_STARTED: EventType
EVENT_TYPE_TASK_QUEUED: EventType
EVENT_TYPE_TASK_STARTED: EventType
EVENT_TYPE_TASK_RETRYING: EventType
EVENT_TYPE_TASK_COMPLETED: EventType
EVENT_TYPE_TASK_FAILED: EventType
EVENT_TYPE_TASK_CANCELLED: EventType
EVENT_TYPE_TASK_SKIPPED: EventType
EVENT_TYPE_TASK_WAITING: EventType
EVENT_TYPE_RUN_FINISHED: EventType
EVENT_TYPE_RUN_RESUMED: EventType

class TaskError(_message.Message):
    __slots__ = ("type", "message", "details")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    details: str
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., details: _Optional[str] = ...) -> None: ...

class TaskRun(_message.Message):
    __slots__ = ("task_id", "status", "attempt", "max_attempts", "worker_id", "queue", "handler", "queue_time", "start_time", "finish_time", "output", "error", "next_attempt_time", "waiting_reason", "progress", "output_bytes", "omitted_fields")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    WAITING_REASON_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OMITTED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status: TaskStatus
    attempt: int
    max_attempts: int
    worker_id: str
    queue: str
    handler: str
    queue_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    output: _struct_pb2.Value
    error: TaskError
    next_attempt_time: _timestamp_pb2.Timestamp
    waiting_reason: str
    progress: _struct_pb2.Value
    output_bytes: int
    omitted_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., worker_id: _Optional[str] = ..., queue: _Optional[str] = ..., handler: _Optional[str] = ..., queue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., waiting_reason: _Optional[str] = ..., progress: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., output_bytes: _Optional[int] = ..., omitted_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("id", "workflow", "workflow_version", "status", "input", "output", "create_time", "finish_time", "tasks", "idempotency_key", "error", "last_sequence", "output_bytes", "omitted_fields", "resume_count", "schedule_id", "fire_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OMITTED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    RESUME_COUNT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    workflow: str
    workflow_version: int
    status: RunStatus
    input: _struct_pb2.Value
    output: _struct_pb2.Value
    create_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRun]
    idempotency_key: str
    error: str
    last_sequence: int
    output_bytes: int
    omitted_fields: _containers.RepeatedScalarFieldContainer[str]
    resume_count: int
    schedule_id: str
    fire_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., workflow: _Optional[str] = ..., workflow_version: _Optional[int] = ..., status: _Optional[_Union[RunStatus, str]] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[TaskRun, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., error: _Optional[str] = ..., last_sequence: _Optional[int] = ..., output_bytes: _Optional[int] = ..., omitted_fields: _Optional[_Iterable[str]] = ..., resume_count: _Optional[int] = ..., schedule_id: _Optional[str] = ..., fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("sequence", "run_id", "type", "time", "task_id", "attempt", "run_status", "output", "error", "worker_id", "next_attempt_time", "message", "output_bytes", "omitted_fields")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OMITTED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    run_id: str
    type: EventType
    time: _timestamp_pb2.Timestamp
    task_id: str
    attempt: int
    run_status: RunStatus
    output: _struct_pb2.Value
    error: TaskError
    worker_id: str
    next_attempt_time: _timestamp_pb2.Timestamp
    message: str
    output_bytes: int
    omitted_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sequence: _Optional[int] = ..., run_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., run_status: _Optional[_Union[RunStatus, str]] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., worker_id: _Optional[str] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., output_bytes: _Optional[int] = ..., omitted_fields: _Optional[_Iterable[str]] = ...) -> None: ...
