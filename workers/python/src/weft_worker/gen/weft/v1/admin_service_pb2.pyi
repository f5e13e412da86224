import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from . import circuit_breaker_pb2 as _circuit_breaker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RateLimit(_message.Message):
    __slots__ = ("max", "duration")
    MAX_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    max: int
    duration: _duration_pb2.Duration
    def __init__(self, max: _Optional[int] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Queue(_message.Message):
    __slots__ = ("name", "waiting", "active", "delayed", "failed", "completed", "paused", "rate_limit", "concurrency", "circuit_breaker", "circuits")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    DELAYED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_FIELD_NUMBER: _ClassVar[int]
    CIRCUITS_FIELD_NUMBER: _ClassVar[int]
    name: str
    waiting: int
    active: int
    delayed: int
    failed: int
    completed: int
    paused: bool
    rate_limit: RateLimit
    concurrency: int
    circuit_breaker: _circuit_breaker_pb2.CircuitBreaker
    circuits: _containers.RepeatedCompositeFieldContainer[_circuit_breaker_pb2.Circuit]
    def __init__(self, name: _Optional[str] = ..., waiting: _Optional[int] = ..., active: _Optional[int] = ..., delayed: _Optional[int] = ..., failed: _Optional[int] = ..., completed: _Optional[int] = ..., paused: _Optional[bool] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., concurrency: _Optional[int] = ..., circuit_breaker: _Optional[_Union[_circuit_breaker_pb2.CircuitBreaker, _Mapping]] = ..., circuits: _Optional[_Iterable[_Union[_circuit_breaker_pb2.Circuit, _Mapping]]] = ...) -> None: ...

class GetQueueRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetQueueResponse(_message.Message):
    __slots__ = ("queue",)
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: Queue
    def __init__(self, queue: _Optional[_Union[Queue, _Mapping]] = ...) -> None: ...

class ListQueuesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListQueuesResponse(_message.Message):
    __slots__ = ("queues", "next_page_token")
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[Queue]
    next_page_token: str
    def __init__(self, queues: _Optional[_Iterable[_Union[Queue, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateQueueRequest(_message.Message):
    __slots__ = ("name", "rate_limit", "clear_rate_limit", "concurrency", "paused", "circuit_breaker", "clear_circuit_breaker")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CLEAR_RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_FIELD_NUMBER: _ClassVar[int]
    CLEAR_CIRCUIT_BREAKER_FIELD_NUMBER: _ClassVar[int]
    name: str
    rate_limit: RateLimit
    clear_rate_limit: bool
    concurrency: int
    paused: bool
    circuit_breaker: _circuit_breaker_pb2.CircuitBreaker
    clear_circuit_breaker: bool
    def __init__(self, name: _Optional[str] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., clear_rate_limit: _Optional[bool] = ..., concurrency: _Optional[int] = ..., paused: _Optional[bool] = ..., circuit_breaker: _Optional[_Union[_circuit_breaker_pb2.CircuitBreaker, _Mapping]] = ..., clear_circuit_breaker: _Optional[bool] = ...) -> None: ...

class UpdateQueueResponse(_message.Message):
    __slots__ = ("queue",)
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: Queue
    def __init__(self, queue: _Optional[_Union[Queue, _Mapping]] = ...) -> None: ...

class SetCircuitStateRequest(_message.Message):
    __slots__ = ("queue", "handler", "state", "open_for")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPEN_FOR_FIELD_NUMBER: _ClassVar[int]
    queue: str
    handler: str
    state: _circuit_breaker_pb2.CircuitState
    open_for: _duration_pb2.Duration
    def __init__(self, queue: _Optional[str] = ..., handler: _Optional[str] = ..., state: _Optional[_Union[_circuit_breaker_pb2.CircuitState, str]] = ..., open_for: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SetCircuitStateResponse(_message.Message):
    __slots__ = ("queue",)
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: Queue
    def __init__(self, queue: _Optional[_Union[Queue, _Mapping]] = ...) -> None: ...
