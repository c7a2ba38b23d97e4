"""Values in a form ``torch.load(weights_only=True)`` reads without an allow-list (layer 0): tensors,
built-in scalars and containers, and tagged dictionaries of tensors for NumPy arrays, SciPy sparse
matrices and sub-modules. One encoding for recbole_ext's checkpoints (:mod:`recbole_ext.checkpoint`) and
for the RecBole checkpoints that ``compat`` (C14) makes weights-only."""

import enum
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from recbole_ext.errors import CheckpointError

TAG = "__recbole_ext_type__"


def plain(value):
    """``value`` as built-in Python values: enums by name, NumPy scalars as Python ones, devices and any
    other object as text (exact built-in types: subclasses such as TorchVersion are not weights-only safe)."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if value is None:
        return None
    return str(value) if isinstance(value, torch.device) else repr(value)


def encode(value, object_arrays=False):
    """Tensors and plain containers for ``value`` (a model's ``other_parameter``). NumPy object arrays are
    stored element by element with ``object_arrays=True``, refused otherwise (:class:`CheckpointError`)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, torch.nn.Module):  # its weights are in the model's state_dict already
        return {TAG: "module_state", "state_dict": {k: v.detach().cpu() for k, v in value.state_dict().items()}}
    if sp.issparse(value):
        csr = sp.csr_matrix(value)
        return {TAG: "scipy_sparse", "format": value.format, "shape": list(csr.shape),
                "data": torch.from_numpy(np.ascontiguousarray(csr.data)),
                "indices": torch.from_numpy(csr.indices.astype(np.int64)),
                "indptr": torch.from_numpy(csr.indptr.astype(np.int64))}
    if isinstance(value, np.ndarray) and value.dtype == object:
        if not object_arrays:
            raise CheckpointError("cannot store a NumPy object array in a weights-only checkpoint; "
                                  "convert it to a numeric array or a list first")
        return {TAG: "numpy_object", "shape": list(value.shape),
                "items": [encode(v, object_arrays) for v in value.ravel()]}
    if isinstance(value, np.ndarray):
        tag = "numpy_matrix" if isinstance(value, np.matrix) else "numpy"
        return {TAG: tag, "value": torch.from_numpy(np.ascontiguousarray(np.asarray(value)).copy())}
    if isinstance(value, dict):
        return {k if isinstance(k, (int, str)) else str(k): encode(v, object_arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v, object_arrays) for v in value]
    return plain(value)


def decode(value):
    """Inverse of :func:`encode` (a sub-module decodes to its state_dict; enums stay names — older
    checkpoints tagged them ``enum``)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag == "numpy":
        return value["value"].numpy()
    if tag == "numpy_matrix":
        with warnings.catch_warnings():  # np.matrix is deprecated, but it is what the model stored
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.matrix(value["value"].numpy())
    if tag == "numpy_object":
        array = np.empty(len(value["items"]), dtype=object)
        array[:] = [decode(v) for v in value["items"]]
        return array.reshape(value["shape"])
    if tag == "scipy_sparse":
        matrix = sp.csr_matrix((value["data"].numpy(), value["indices"].numpy(), value["indptr"].numpy()),
                               shape=tuple(value["shape"]))
        return matrix.asformat(value["format"])
    if tag == "module_state":
        return value["state_dict"]
    if tag == "enum":
        return value["name"]
    return {k: decode(v) for k, v in value.items()}
