"""A protoc plugin (for buf's `local:`) that writes Python message classes, type stubs and grpcio
stubs with the protoc and gRPC generators that grpcio-tools bundles, so that the generated code is
pinned by the grpcio-tools version in workers/python/constraints.txt.

Option `only=<package>` (buf's `opt`) keeps the files of that proto package and drops the rest of
the request: the other inputs of buf.gen.yaml (gRPC health, reflection) are not generated.

It hands the request's descriptors to grpc_tools.protoc, then makes the imports between the
generated modules relative (`from . import run_pb2`), so that the code works inside the
`weft_worker.gen` package without a top-level `weft` package on sys.path, and adds the
`__init__.py` files of the package tree.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path, PurePosixPath

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc

_IMPORT = re.compile(r"^from ([\w.]+) import (\w+)", re.MULTILINE)


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    files = _files_to_generate(request)
    if not files:
        sys.stdout.buffer.write(response.SerializeToString())
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        descriptors = Path(tmp, "descriptors.binpb")
        descriptors.write_bytes(descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString())
        out = Path(tmp, "out")
        out.mkdir()
        args = [
            "grpc_tools.protoc",
            f"--descriptor_set_in={descriptors}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *files,
        ]
        if protoc.main(args) != 0:
            response.error = "grpc_tools.protoc failed; see its output above"
            sys.stdout.buffer.write(response.SerializeToString())
            return 0
        generated = {PurePosixPath(p.relative_to(out).as_posix()) for p in out.rglob("*.py*")}
        modules = {str(p.with_suffix("")).replace("/", ".") for p in generated}
        packages = {PurePosixPath()} | {parent for p in generated for parent in p.parents}
        for path in sorted(generated):
            text = Path(out, path).read_text()
            text = _relative_imports(text, path, modules)
            response.file.add(name=str(path), content=text)
        for package in sorted(packages):
            response.file.add(name=str(package / "__init__.py"), content="")
    sys.stdout.buffer.write(response.SerializeToString())
    return 0


def _files_to_generate(request: plugin_pb2.CodeGeneratorRequest) -> list[str]:
    options = dict(o.split("=", 1) for o in request.parameter.split(",") if "=" in o)
    only = options.get("only")
    if only is None:
        return list(request.file_to_generate)
    packages = {f.name: f.package for f in request.proto_file}
    return [name for name in request.file_to_generate if packages.get(name) == only]


def _relative_imports(text: str, path: PurePosixPath, modules: set[str]) -> str:
    """Rewrites `from weft.v1 import run_pb2` into `from . import run_pb2` (and `..` as needed)."""
    here = str(path.parent).replace("/", ".").split(".") if str(path.parent) != "." else []

    def rewrite(match: re.Match[str]) -> str:
        package, name = match.group(1), match.group(2)
        if f"{package}.{name}" not in modules:
            return match.group(0)
        target = package.split(".")
        common = 0
        while common < min(len(here), len(target)) and here[common] == target[common]:
            common += 1
        dots = "." * (len(here) - common + 1)
        rest = ".".join(target[common:])
        return f"from {dots}{rest} import {name}"

    return _IMPORT.sub(rewrite, text)


if __name__ == "__main__":
    sys.exit(main())
