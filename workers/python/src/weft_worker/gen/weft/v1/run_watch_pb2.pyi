from . import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRunsRequest(_message.Message):
    __slots__ = ("add_runs", "remove_runs", "add_workflows", "remove_workflows")
    ADD_RUNS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_RUNS_FIELD_NUMBER: _ClassVar[int]
    ADD_WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    add_runs: _containers.RepeatedCompositeFieldContainer[RunFollow]
    remove_runs: _containers.RepeatedScalarFieldContainer[str]
    add_workflows: _containers.RepeatedCompositeFieldContainer[WorkflowFollow]
    remove_workflows: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, add_runs: _Optional[_Iterable[_Union[RunFollow, _Mapping]]] = ..., remove_runs: _Optional[_Iterable[str]] = ..., add_workflows: _Optional[_Iterable[_Union[WorkflowFollow, _Mapping]]] = ..., remove_workflows: _Optional[_Iterable[str]] = ...) -> None: ...

class RunFollow(_message.Message):
    __slots__ = ("run_id", "after_sequence", "all_events")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ALL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_sequence: int
    all_events: bool
    def __init__(self, run_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., all_events: _Optional[bool] = ...) -> None: ...

class WorkflowFollow(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    def __init__(self, workflow: _Optional[str] = ...) -> None: ...

class WatchRunsResponse(_message.Message):
    __slots__ = ("events", "rejections")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_run_pb2.RunEvent]
    rejections: _containers.RepeatedCompositeFieldContainer[WatchRunsRejection]
    def __init__(self, events: _Optional[_Iterable[_Union[_run_pb2.RunEvent, _Mapping]]] = ..., rejections: _Optional[_Iterable[_Union[WatchRunsRejection, _Mapping]]] = ...) -> None: ...

class WatchRunsRejection(_message.Message):
    __slots__ = ("run_id", "workflow", "code", "message")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    workflow: str
    code: int
    message: str
    def __init__(self, run_id: _Optional[str] = ..., workflow: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
