import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeadLetterFilter(_message.Message):
    __slots__ = ("queue", "workflow", "error_type", "since", "until")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    queue: str
    workflow: str
    error_type: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, queue: _Optional[str] = ..., workflow: _Optional[str] = ..., error_type: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("id", "run_id", "workflow", "workflow_version", "task_id", "queue", "handler", "attempts", "max_attempts", "error", "fail_time", "omitted_fields")
    ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FAIL_TIME_FIELD_NUMBER: _ClassVar[int]
    OMITTED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    run_id: str
    workflow: str
    workflow_version: int
    task_id: str
    queue: str
    handler: str
    attempts: int
    max_attempts: int
    error: _run_pb2.TaskError
    fail_time: _timestamp_pb2.Timestamp
    omitted_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., run_id: _Optional[str] = ..., workflow: _Optional[str] = ..., workflow_version: _Optional[int] = ..., task_id: _Optional[str] = ..., queue: _Optional[str] = ..., handler: _Optional[str] = ..., attempts: _Optional[int] = ..., max_attempts: _Optional[int] = ..., error: _Optional[_Union[_run_pb2.TaskError, _Mapping]] = ..., fail_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., omitted_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class AttemptError(_message.Message):
    __slots__ = ("attempt", "error", "time", "worker_id")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    error: _run_pb2.TaskError
    time: _timestamp_pb2.Timestamp
    worker_id: str
    def __init__(self, attempt: _Optional[int] = ..., error: _Optional[_Union[_run_pb2.TaskError, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: DeadLetterFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[DeadLetterFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "next_page_token")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    next_page_token: str
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetDeadLetterRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetDeadLetterResponse(_message.Message):
    __slots__ = ("dead_letter", "input", "run_input", "parent_outputs", "attempt_errors", "omitted_fields")
    class ParentOutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RUN_INPUT_FIELD_NUMBER: _ClassVar[int]
    PARENT_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    OMITTED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    dead_letter: DeadLetter
    input: _struct_pb2.Value
    run_input: _struct_pb2.Value
    parent_outputs: _containers.MessageMap[str, _struct_pb2.Value]
    attempt_errors: _containers.RepeatedCompositeFieldContainer[AttemptError]
    omitted_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dead_letter: _Optional[_Union[DeadLetter, _Mapping]] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., run_input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., parent_outputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., attempt_errors: _Optional[_Iterable[_Union[AttemptError, _Mapping]]] = ..., omitted_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class RetryDeadLetterRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RetryDeadLetterResponse(_message.Message):
    __slots__ = ("run", "resumed")
    RUN_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    resumed: bool
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ..., resumed: _Optional[bool] = ...) -> None: ...

class DiscardDeadLetterRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DiscardDeadLetterResponse(_message.Message):
    __slots__ = ("dead_letter",)
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    dead_letter: DeadLetter
    def __init__(self, dead_letter: _Optional[_Union[DeadLetter, _Mapping]] = ...) -> None: ...

class RetryDeadLettersRequest(_message.Message):
    __slots__ = ("filter", "limit", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: DeadLetterFilter
    limit: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[DeadLetterFilter, _Mapping]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class RetryDeadLettersResponse(_message.Message):
    __slots__ = ("retried", "runs_resumed", "skipped", "next_page_token")
    RETRIED_FIELD_NUMBER: _ClassVar[int]
    RUNS_RESUMED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    retried: int
    runs_resumed: int
    skipped: int
    next_page_token: str
    def __init__(self, retried: _Optional[int] = ..., runs_resumed: _Optional[int] = ..., skipped: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DiscardDeadLettersRequest(_message.Message):
    __slots__ = ("filter", "limit", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: DeadLetterFilter
    limit: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[DeadLetterFilter, _Mapping]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class DiscardDeadLettersResponse(_message.Message):
    __slots__ = ("discarded", "next_page_token")
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    discarded: int
    next_page_token: str
    def __init__(self, discarded: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResumeRunRequest(_message.Message):
    __slots__ = ("run_id", "from_task", "idempotency_key", "reason", "resume_count")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_TASK_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESUME_COUNT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    from_task: str
    idempotency_key: str
    reason: str
    resume_count: int
    def __init__(self, run_id: _Optional[str] = ..., from_task: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., reason: _Optional[str] = ..., resume_count: _Optional[int] = ...) -> None: ...

class ResumeRunResponse(_message.Message):
    __slots__ = ("run", "resumed", "queued_tasks", "reset_tasks")
    RUN_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_TASKS_FIELD_NUMBER: _ClassVar[int]
    RESET_TASKS_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    resumed: bool
    queued_tasks: _containers.RepeatedScalarFieldContainer[str]
    reset_tasks: int
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ..., resumed: _Optional[bool] = ..., queued_tasks: _Optional[_Iterable[str]] = ..., reset_tasks: _Optional[int] = ...) -> None: ...
