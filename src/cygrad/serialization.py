"""Saving and loading: `cg.save(obj, f)` and `cg.load(f)` in the safetensors format.

safetensors is the format PyTorch and Hugging Face users exchange weights in: a JSON
header, then the raw bytes of each array. Loading parses that header and copies bytes;
it never runs code (no pickle), so a file from anywhere is safe to open.

- A state dict (`model.state_dict()`: names -> Tensors) is written as one safetensors
  entry per name, PyTorch's way: `safetensors.torch.load_file` reads it, and a file that
  `safetensors.torch.save_file` wrote from an equivalent `torch.nn` model loads here.
- Nested checkpoints (`{"model": ..., "optimizer": ..., "epoch": 3}`) are supported too:
  arrays are stored under dotted names ("optimizer.state.0.exp_avg") and the rest of the
  structure (dicts, lists, tuples, numbers, strings, None) as JSON in the header's
  metadata, under "cygrad.structure". Only float32/float64 arrays are stored.

`cg.load(f)` gives back what was saved, each array with the type it had (Tensor or NumPy
array), the top-level dict as an OrderedDict. A file written by another program (no
"cygrad.structure") loads as an OrderedDict of name -> Tensor, ready for
`model.load_state_dict`.

safetensors is an optional dependency: `pip install "cygrad[safetensors]"`.
"""
from __future__ import annotations

import collections
import io
import json
import os
import stat
import uuid
from typing import Any, BinaryIO, Dict, Mapping, Union

import numpy as np

from .tensor import Tensor

__all__ = ["save", "load"]

FileLike = Union[str, "os.PathLike[str]", BinaryIO]

STRUCTURE_KEY = "cygrad.structure"  # the header metadata entry that holds the nesting
_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ImportError('cygrad.save and cygrad.load need the safetensors package: '
                          'pip install "cygrad[safetensors]"') from None
    return safetensors


# -- save ---------------------------------------------------------------------------------
def _encode(value: Any, name: str, arrays: Dict[str, np.ndarray], enclosing: set) -> dict:
    """The JSON node for `value`; its arrays go into `arrays` under dotted names.
    `enclosing`: the ids of the containers `value` is inside (one of them again is a
    cycle)."""
    where = name or "obj"
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{where}: a masked array's mask cannot be saved (its masked values "
                        "would be saved as data): save value.filled(...) or the mask too")
    if isinstance(value, (Tensor, np.ndarray)):
        array = value.data if isinstance(value, Tensor) else value
        if array.dtype.kind != "f" or array.dtype.itemsize not in (4, 8):
            raise TypeError(f"{where}: expected float32 or float64 values, got an array of "
                            f"{array.dtype}; convert it (array.astype(np.float32)) or keep "
                            "it out of the saved dict")
        if name in arrays:
            raise ValueError(f"{where}: two entries map to the same name {name!r} (a key "
                             "with a dot that matches a nested key); rename one of them")
        if name == "__metadata__":
            raise ValueError("obj: the name '__metadata__' is reserved by the safetensors "
                             "format; rename that entry")
        # Dense, native little-endian: the bytes safetensors writes are the array's own.
        arrays[name] = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False)
        return {"tensor": name, "type": "Tensor" if isinstance(value, Tensor) else "ndarray"}
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in enclosing:
            raise ValueError(f"{where}: the {type(value).__name__} contains itself; a saved "
                             "structure must be a tree")
        enclosing.add(id(value))
        try:
            return _encode_container(value, name, where, arrays, enclosing)
        finally:
            enclosing.discard(id(value))
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        value = value.item()
    if isinstance(value, str) and not _encodable(value):
        raise ValueError(f"{where}: the string {value[:40]!r} is not valid Unicode (a lone "
                         "surrogate); it cannot be written as UTF-8")
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    library = type(value).__module__.split(".")[0]
    kind = type(value).__name__
    if library != "builtins":
        kind = f"{library}.{kind}"
    hint = (" (pass t.detach().numpy(), or save PyTorch's state dict with "
            "safetensors.torch.save_file)" if library == "torch" else "")
    raise TypeError(f"{where}: cannot save a {kind}{hint}; "
                    "expected cygrad Tensors, float arrays, numbers, strings, None, or "
                    "dicts/lists/tuples of them (nothing is pickled)")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encode_container(value: Any, name: str, where: str, arrays: Dict[str, np.ndarray],
                      enclosing: set) -> dict:
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if isinstance(key, np.integer):
                key = int(key)
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"{where}: expected str (or int) keys, got {key!r} of type "
                                f"{type(key).__name__}")
            if isinstance(key, str) and not _encodable(key):
                raise ValueError(f"{where}: the key {key[:40]!r} is not valid Unicode (a "
                                 "lone surrogate); it cannot be written as UTF-8")
            items.append([key, _encode(item, f"{name}.{key}" if name else str(key), arrays,
                                       enclosing)])
        return {"dict": items}
    kind = "tuple" if isinstance(value, tuple) else "list"
    return {kind: [_encode(item, f"{name}.{i}" if name else str(i), arrays, enclosing)
                   for i, item in enumerate(value)]}


def _is_state_dict(structure: dict) -> bool:
    return all(isinstance(key, str) and "tensor" in node for key, node in structure["dict"])


def _write_atomically(data: bytes, path: str) -> None:
    """Write to a new file beside `path`, then rename it over `path`: an interrupted save
    leaves the previous file whole. As `open(path, "wb")` would: a file the user may not
    write is refused, an existing file keeps its permissions, and a symbolic link is
    written through (its target is replaced, the link stays)."""
    target = os.path.realpath(path)
    directory, base = os.path.split(target)
    temporary = os.path.join(directory, f".{base}.{uuid.uuid4().hex[:12]}.tmp")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"f: the directory {directory!r} does not exist")
    if os.path.isdir(target):
        raise IsADirectoryError(f"f: {path!r} is a directory: give a file name in it")
    mode = None
    if os.path.exists(target):
        if not os.access(target, os.W_OK):
            raise PermissionError(f"f: {path!r} is read-only: make it writable, or save "
                                  f"under another name")
        mode = stat.S_IMODE(os.stat(target).st_mode)
    try:
        # os.open with 0o666 so the umask sets a new file's permissions, as open() does
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except PermissionError as exc:
        raise PermissionError(f"f: cannot write in the directory {directory!r} "
                              f"({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def save(obj: Mapping[str, Any], f: FileLike) -> None:
    """Write `obj` to `f` (a path, or a binary file open for writing) in the safetensors
    format.

    `obj` is a dict: a state dict (name -> Tensor or float array), or a nested checkpoint
    of dicts, lists, tuples, Tensors, float32/float64 arrays, numbers, strings and None.
    A path is written atomically: a new file renamed over the old one.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"obj: expected a dict (such as model.state_dict()), got "
                        f"{type(obj).__name__}")
    arrays: Dict[str, np.ndarray] = {}
    structure = _encode(obj, "", arrays, set())
    metadata = {STRUCTURE_KEY: json.dumps(structure, separators=(",", ":"))}
    if _is_state_dict(structure):
        # Hugging Face's loaders expect this entry: the arrays follow PyTorch's layout.
        metadata["format"] = "pt"
    data = _safetensors().numpy.save(arrays, metadata=metadata)
    if hasattr(f, "write"):
        if isinstance(f, io.TextIOBase):
            raise TypeError("f: expected a file opened in binary mode ('wb'), got a text "
                            "file")
        f.write(data)
    elif isinstance(f, (str, os.PathLike)):
        _write_atomically(data, os.fspath(f))
    else:
        raise TypeError(f"f: expected a path or a binary file open for writing, got "
                        f"{type(f).__name__}")


# -- load ---------------------------------------------------------------------------------
class _CorruptStructure(ValueError):
    pass


def _decode(node: Any, arrays: Dict[str, np.ndarray], used: set) -> Any:
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise _CorruptStructure(f"unexpected node {str(node)[:60]}")
    if "tensor" in node:
        name, kind = node["tensor"], node.get("type")
        if not isinstance(name, str) or name not in arrays or name in used or \
                kind not in ("Tensor", "ndarray"):
            raise _CorruptStructure(f"bad reference to array {str(name)[:60]!r}")
        used.add(name)
        return Tensor(arrays[name]) if kind == "Tensor" else arrays[name]
    (kind, content), = node.items()
    if kind == "value":
        if content is not None and not isinstance(content, (bool, int, float, str)):
            raise _CorruptStructure(f"unexpected value {str(content)[:60]}")
        return content
    if kind in ("list", "tuple") and isinstance(content, list):
        items = [_decode(item, arrays, used) for item in content]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict" and isinstance(content, list):
        result = {}
        for pair in content:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))
                    and not isinstance(pair[0], bool)):
                raise _CorruptStructure(f"unexpected dict entry {str(pair)[:60]}")
            if pair[0] in result:
                raise _CorruptStructure(f"the key {str(pair[0])[:60]!r} twice")
            result[pair[0]] = _decode(pair[1], arrays, used)
        return result
    raise _CorruptStructure(f"unexpected node {str(node)[:60]}")


def load(f: FileLike) -> "collections.OrderedDict[str, Any]":
    """Read a safetensors file written by `save` or by another program (PyTorch's
    `safetensors.torch.save_file`, Hugging Face models).

    Returns an OrderedDict: for a file written by `save`, exactly the structure saved
    (each array as the Tensor or NumPy array it was); otherwise name -> Tensor, in the
    file's order. Arrays other than float32/float64 (float16, bfloat16, integers) are
    refused with an error naming them. Nothing in the file is executed.
    """
    if hasattr(f, "read"):
        data, source = f.read(), getattr(f, "name", "f")
    elif isinstance(f, (str, os.PathLike)):
        source = os.fspath(f)
        with open(source, "rb") as file:
            data = file.read()
    else:
        raise TypeError(f"f: expected a path or a binary file open for reading, got "
                        f"{type(f).__name__}")
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"f: expected a file opened in binary mode ('rb'), got "
                        f"{type(data).__name__} from read()")
    try:
        # The Rust parser checks the header, the offsets and that the bytes cover it.
        entries = _safetensors().deserialize(bytes(data))
    except Exception as exc:  # SafetensorError, or a panic surfaced as an exception
        hint = ("; it looks like torch.save's pickle format, which is never loaded here: "
                "in PyTorch, write it with safetensors.torch.save_file(state_dict, path)"
                if data[:2] == b"PK" or data[:1] == b"\x80" else "")
        raise ValueError(f"{source}: not a valid safetensors file ({exc}){hint}") from None
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_size])
    metadata = header.pop("__metadata__", None) or {}
    entries = dict(entries)  # in a hash map's order, which changes from run to run
    if set(entries) != set(header):
        raise ValueError(f"{source}: not a valid safetensors file (its header lists the "
                         f"arrays twice, differently)")
    arrays: Dict[str, np.ndarray] = {}
    # the file's order: the order of the arrays' bytes, then the header's
    for name in sorted(header, key=lambda name: header[name]["data_offsets"][0]):
        entry = entries[name]
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"{source}: array {name!r} has dtype {entry['dtype']}; cygrad "
                             "holds float32 and float64 only: convert it before saving (in "
                             "PyTorch, tensor.float()) or leave it out of the state dict")
        try:  # a copy: writable (optimizers update in place) and in native byte order
            arrays[name] = np.frombuffer(entry["data"], dtype).reshape(entry["shape"]) \
                .astype(dtype.newbyteorder("="))
        except ValueError as exc:  # a shape NumPy cannot make
            raise ValueError(f"{source}: array {name!r}: {exc}") from None
    if STRUCTURE_KEY not in metadata:
        return collections.OrderedDict((name, Tensor(a)) for name, a in arrays.items())
    used: set = set()
    try:
        result = _decode(json.loads(metadata[STRUCTURE_KEY]), arrays, used)
        if not isinstance(result, dict) or used != set(arrays):
            raise _CorruptStructure("the structure does not list every array exactly once")
    except (_CorruptStructure, ValueError, RecursionError) as exc:
        raise ValueError(f"{source}: corrupt '{STRUCTURE_KEY}' metadata ({exc}); the "
                         "arrays themselves load with safetensors.numpy.load_file") from None
    return collections.OrderedDict(result)
