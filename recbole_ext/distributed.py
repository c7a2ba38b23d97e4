"""The one home of multi-process (torch.distributed) logic: "am I distributed?", rank-0 broadcast,
real-row counts of a ``DistributedSampler``, gradient and value all-reduces, the DDP wrapper, and the
single launcher used by ``run_recbole.py --nproc`` and by Python callers (tests, benchmarks).

Layer 1: imports nothing of recbole_ext but :mod:`recbole_ext.errors`; the launcher is handed the
function each process runs (``recbole_ext.quick_start.run_recboles``).
"""

import socket

import torch
import torch.distributed as dist

from recbole_ext.errors import ConfigError

# keys a multi-process launch sets per process (run_recbole.py --nproc / --world_size ...): never
# replayed when a run is rebuilt from its checkpoint or summary
LAUNCH_KEYS = frozenset({"local_rank", "nproc", "world_size", "ip", "port", "offset", "dist_backend"})


def is_distributed(config=None):
    """True in a multi-process run (the process group is up and, given a config, it is not single-spec)."""
    if config is not None and config["single_spec"]:
        return False
    return dist.is_available() and dist.is_initialized()


def rank():
    return dist.get_rank() if is_distributed() else 0


def world_size():
    return dist.get_world_size() if is_distributed() else 1


def is_main_process(config=None):
    """True in a single-process run and on global rank 0: the process that writes files."""
    return not is_distributed(config) or dist.get_rank() == 0


def broadcast_from_rank0(value):
    """Rank 0's ``value`` on every process (any picklable object)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value):
    """Every process's ``value``, rank order."""
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, value)
    return parts


def real_row_count(sampler):
    """Rows of this process's ``DistributedSampler`` share that are real (the sampler pads every
    share to the same length by repeating rows); ``None`` for any other sampler."""
    from torch.utils.data.distributed import DistributedSampler

    if not isinstance(sampler, DistributedSampler):
        return None
    return len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))


def all_reduce_sum(tensor):
    """Sum ``tensor`` over the processes, in place (on its own device)."""
    dist.all_reduce(tensor)
    return tensor


def mean_over_processes(values):
    """Element-wise mean of a list of numbers over the processes."""
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor / dist.get_world_size()]


def all_reduce_gradients(params, weight=None, device=None):
    """Sum the gradients of ``params`` over the processes, in place (missing gradients count as 0).

    With ``weight`` (this process's 0/1 share of the step), each gradient is multiplied by it and the
    sum divided by the number of processes that had weight: the mean over the processes that took part.
    """
    grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    if weight is not None:
        grads = [g * weight for g in grads] + [torch.tensor([float(weight)], device=device)]
    flat = torch.cat(grads)
    dist.all_reduce(flat)
    count = 1.0 if weight is None else max(float(flat[-1]), 1.0)
    offset = 0
    for p in params:
        n = p.numel()
        grad = (flat[offset : offset + n] / count).view_as(p)
        if p.grad is None:
            p.grad = grad.clone()
        else:
            p.grad.copy_(grad)
        offset += n


def wrap_ddp(model, config):
    """``(model, DistributedDataParallel(model))`` for a multi-process trainer. RecBole's
    ``AbstractTrainer.__init__`` passes ``device_ids=[local_rank]`` and converts SyncBatchNorm always;
    DDP rejects device ids for a CPU module and SyncBatchNorm runs only on accelerators, so both are
    used only when the model is on CUDA (CPU training through Gloo)."""
    from torch.nn.parallel import DistributedDataParallel

    if torch.device(config["device"]).type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model, DistributedDataParallel(model, device_ids=[config["local_rank"]])
    return model, DistributedDataParallel(model)


def free_port(host="127.0.0.1"):
    """A TCP port free on this machine now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return str(sock.getsockname()[1])


def launch(entry, model, dataset, nproc=2, config_dict=None, config_file_list=None, cmd_args=None,
           ip="127.0.0.1", port=None, world_size=None, offset=0):
    """Run ``entry(rank, model, dataset, config_file_list, kwargs)`` in ``nproc`` processes on this
    machine (RecBole's spawn pattern; backend ``config_dict['dist_backend']``, default Gloo on CPU /
    NCCL on CUDA); return the results the processes put on the queue, rank order. A failing process
    becomes a :class:`ConfigError` carrying its own last error line."""
    import torch.multiprocessing as mp

    world_size = world_size or nproc
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": world_size, "nproc": nproc, "ip": ip, "port": port or free_port(ip),
                        "offset": offset})
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    kwargs = {"config_dict": config_dict, "cmd_args": list(cmd_args or []), "queue": queue}
    try:
        mp.spawn(entry, args=(model, dataset, config_file_list, kwargs), nprocs=nproc, join=True)
    except mp.ProcessRaisedException as err:  # the failing process's own error, without the spawn frames
        message = str(err).strip().splitlines()
        raise ConfigError(f"a training process failed: {message[-1] if message else err}") from None
    except mp.ProcessExitedException as err:
        raise ConfigError(f"a training process exited abnormally: {err}") from None
    results = []
    while not queue.empty():
        results.append(queue.get())
    return sorted(results, key=lambda r: r.get("rank", 0))


def init_process(cfg):
    """Join the process group of a multi-process run and set ``cfg['device']`` (``cfg``: a Config's
    final dict). RecBole hard-codes NCCL + ``cuda:<local_rank>``; here ``dist_backend`` chooses
    (``nccl`` / ``gloo``; default NCCL when CUDA is usable, Gloo otherwise) and Gloo without CUDA
    trains on CPU. Ranks other than 0 log errors only."""
    import os

    gpu_id = cfg.get("gpu_id")
    gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id if gpu_id is not None else "")
    cfg["gpu_id"] = gpu_id
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
    use_cuda = bool(cfg.get("use_gpu", True)) and len(gpu_id) > 0 and torch.cuda.is_available()
    backend = str(cfg.get("dist_backend") or ("nccl" if use_cuda else "gloo")).lower()
    if backend not in ("nccl", "gloo"):
        raise ConfigError(f"dist_backend must be 'nccl' or 'gloo', not '{cfg.get('dist_backend')}'")
    if backend == "nccl" and not use_cuda:
        raise ConfigError("dist_backend 'nccl' needs CUDA GPUs (none usable here): use dist_backend: gloo to train on CPU")
    for key in ("world_size", "ip", "port"):
        if cfg.get(key) is None:
            raise ConfigError(f"multi-process run: '{key}' is not set (run_recbole.py --nproc sets it)")
    local_rank = int(cfg["local_rank"])
    nproc = int(cfg.get("nproc") or 1)
    if use_cuda and len(gpu_id.split(",")) < nproc:
        raise ConfigError(f"--nproc={nproc} processes on CUDA need {nproc} GPUs in gpu_id, got '{gpu_id}'")
    cfg["dist_backend"] = backend
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            rank=local_rank + int(cfg.get("offset") or 0),
            world_size=int(cfg["world_size"]),
            init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
        )
    if use_cuda:
        cfg["device"] = torch.device("cuda", local_rank)
        torch.cuda.set_device(local_rank)
    else:
        cfg["device"] = torch.device("cpu")
    cfg["single_spec"] = False
    if local_rank != 0:
        cfg["state"] = "error"
        cfg["show_progress"] = False
        cfg["verbose"] = False


def barrier():
    dist.barrier()


def backend():
    return dist.get_backend()


def finish():
    """End a multi-process run: wait for every process, then leave the process group (as RecBole does)."""
    dist.barrier()
    dist.destroy_process_group()
