import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkRequest(_message.Message):
    __slots__ = ("queue", "worker_id", "handlers", "credits", "completions")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HANDLERS_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    worker_id: str
    handlers: _containers.RepeatedScalarFieldContainer[str]
    credits: int
    completions: _containers.RepeatedCompositeFieldContainer[CompleteTaskRequest]
    def __init__(self, queue: _Optional[str] = ..., worker_id: _Optional[str] = ..., handlers: _Optional[_Iterable[str]] = ..., credits: _Optional[int] = ..., completions: _Optional[_Iterable[_Union[CompleteTaskRequest, _Mapping]]] = ...) -> None: ...

class WorkResponse(_message.Message):
    __slots__ = ("assignments", "results")
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[TaskAssignment]
    results: _containers.RepeatedCompositeFieldContainer[CompleteTaskResult]
    def __init__(self, assignments: _Optional[_Iterable[_Union[TaskAssignment, _Mapping]]] = ..., results: _Optional[_Iterable[_Union[CompleteTaskResult, _Mapping]]] = ...) -> None: ...

class PollTaskRequest(_message.Message):
    __slots__ = ("queue", "worker_id", "handlers", "wait", "max_tasks")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HANDLERS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    worker_id: str
    handlers: _containers.RepeatedScalarFieldContainer[str]
    wait: _duration_pb2.Duration
    max_tasks: int
    def __init__(self, queue: _Optional[str] = ..., worker_id: _Optional[str] = ..., handlers: _Optional[_Iterable[str]] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_tasks: _Optional[int] = ...) -> None: ...

class PollTaskResponse(_message.Message):
    __slots__ = ("assignment", "more_assignments")
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    MORE_ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignment: TaskAssignment
    more_assignments: _containers.RepeatedCompositeFieldContainer[TaskAssignment]
    def __init__(self, assignment: _Optional[_Union[TaskAssignment, _Mapping]] = ..., more_assignments: _Optional[_Iterable[_Union[TaskAssignment, _Mapping]]] = ...) -> None: ...

class TaskAssignment(_message.Message):
    __slots__ = ("lease_id", "run_id", "task_id", "workflow", "workflow_version", "handler", "queue", "attempt", "max_attempts", "input", "run_input", "parent_outputs", "heartbeat_timeout", "lease_deadline", "attempt_deadline")
    class ParentOutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RUN_INPUT_FIELD_NUMBER: _ClassVar[int]
    PARENT_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    LEASE_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    run_id: str
    task_id: str
    workflow: str
    workflow_version: int
    handler: str
    queue: str
    attempt: int
    max_attempts: int
    input: _struct_pb2.Value
    run_input: _struct_pb2.Value
    parent_outputs: _containers.MessageMap[str, _struct_pb2.Value]
    heartbeat_timeout: _duration_pb2.Duration
    lease_deadline: _timestamp_pb2.Timestamp
    attempt_deadline: _timestamp_pb2.Timestamp
    def __init__(self, lease_id: _Optional[str] = ..., run_id: _Optional[str] = ..., task_id: _Optional[str] = ..., workflow: _Optional[str] = ..., workflow_version: _Optional[int] = ..., handler: _Optional[str] = ..., queue: _Optional[str] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., run_input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., parent_outputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., heartbeat_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lease_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("lease_id", "progress")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    progress: _struct_pb2.Value
    def __init__(self, lease_id: _Optional[str] = ..., progress: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("cancel_requested", "lease_deadline")
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    LEASE_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    cancel_requested: bool
    lease_deadline: _timestamp_pb2.Timestamp
    def __init__(self, cancel_requested: _Optional[bool] = ..., lease_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CompleteTaskRequest(_message.Message):
    __slots__ = ("lease_id", "output")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    output: _struct_pb2.Value
    def __init__(self, lease_id: _Optional[str] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class CompleteTaskResponse(_message.Message):
    __slots__ = ("cancel_requested",)
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    cancel_requested: bool
    def __init__(self, cancel_requested: _Optional[bool] = ...) -> None: ...

class CompleteTasksRequest(_message.Message):
    __slots__ = ("completions",)
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    completions: _containers.RepeatedCompositeFieldContainer[CompleteTaskRequest]
    def __init__(self, completions: _Optional[_Iterable[_Union[CompleteTaskRequest, _Mapping]]] = ...) -> None: ...

class CompleteTasksResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CompleteTaskResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CompleteTaskResult, _Mapping]]] = ...) -> None: ...

class CompleteTaskResult(_message.Message):
    __slots__ = ("lease_id", "code", "message", "cancel_requested")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    code: int
    message: str
    cancel_requested: bool
    def __init__(self, lease_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., cancel_requested: _Optional[bool] = ...) -> None: ...

class FailTaskRequest(_message.Message):
    __slots__ = ("lease_id", "error", "retryable")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    error: _run_pb2.TaskError
    retryable: bool
    def __init__(self, lease_id: _Optional[str] = ..., error: _Optional[_Union[_run_pb2.TaskError, _Mapping]] = ..., retryable: _Optional[bool] = ...) -> None: ...

class FailTaskResponse(_message.Message):
    __slots__ = ("will_retry", "next_attempt_time")
    WILL_RETRY_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    will_retry: bool
    next_attempt_time: _timestamp_pb2.Timestamp
    def __init__(self, will_retry: _Optional[bool] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
