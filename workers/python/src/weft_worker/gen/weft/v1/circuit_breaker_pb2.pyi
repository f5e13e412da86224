import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CircuitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIRCUIT_STATE_UNSPECIFIED: _ClassVar[CircuitState]
    CIRCUIT_STATE_CLOSED: _ClassVar[CircuitState]
    CIRCUIT_STATE_OPEN: _ClassVar[CircuitState]
    CIRCUIT_STATE_HALF_OPEN: _ClassVar[CircuitState]
CIRCUIT_STATE_UNSPECIFIED: CircuitState
CIRCUIT_STATE_CLOSED: CircuitState
CIRCUIT_STATE_OPEN: CircuitState
CIRCUIT_STATE_HALF_OPEN: CircuitState

class CircuitBreaker(_message.Message):
    __slots__ = ("per_handler", "failure_threshold", "window", "open_duration", "half_open_probes")
    PER_HANDLER_FIELD_NUMBER: _ClassVar[int]
    FAILURE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    OPEN_DURATION_FIELD_NUMBER: _ClassVar[int]
    HALF_OPEN_PROBES_FIELD_NUMBER: _ClassVar[int]
    per_handler: bool
    failure_threshold: int
    window: _duration_pb2.Duration
    open_duration: _duration_pb2.Duration
    half_open_probes: int
    def __init__(self, per_handler: _Optional[bool] = ..., failure_threshold: _Optional[int] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., open_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., half_open_probes: _Optional[int] = ...) -> None: ...

class Circuit(_message.Message):
    __slots__ = ("handler", "state", "since", "open_until", "failures_in_window", "probes_in_flight", "manual", "opened_count")
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    OPEN_UNTIL_FIELD_NUMBER: _ClassVar[int]
    FAILURES_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    PROBES_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    OPENED_COUNT_FIELD_NUMBER: _ClassVar[int]
    handler: str
    state: CircuitState
    since: _timestamp_pb2.Timestamp
    open_until: _timestamp_pb2.Timestamp
    failures_in_window: int
    probes_in_flight: int
    manual: bool
    opened_count: int
    def __init__(self, handler: _Optional[str] = ..., state: _Optional[_Union[CircuitState, str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., open_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failures_in_window: _Optional[int] = ..., probes_in_flight: _Optional[int] = ..., manual: _Optional[bool] = ..., opened_count: _Optional[int] = ...) -> None: ...
