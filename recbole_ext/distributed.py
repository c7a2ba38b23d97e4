"""Launching multi-process (torch.distributed) runs from Python: tests, benchmarks, notebooks.

``run_recbole.py --nproc=N`` is the command-line way; :func:`launch` does the same from Python and
returns every process's result (``rank``, ``model_digest``, metrics, timings), rank order.
"""

import socket


def free_port(host="127.0.0.1"):
    """A TCP port free on this machine now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return str(sock.getsockname()[1])


def _worker(rank, model, dataset, config_file_list, kwargs, queue):
    from recbole_ext.quick_start import run_recboles

    try:
        result = run_recboles(rank, model, dataset, config_file_list, kwargs)
    except BaseException as err:  # report, then fail the process (mp.spawn raises in the parent)
        queue.put((rank, {"error": f"{type(err).__name__}: {err}"}))
        raise
    queue.put((rank, {k: v for k, v in result.items() if k != "config"}))


def launch(model, dataset, nproc=2, config_dict=None, config_file_list=None, cmd_args=None, ip="127.0.0.1",
           port=None):
    """Run ``run_recbole`` in ``nproc`` processes on this machine (backend: ``config_dict['dist_backend']``,
    default Gloo on CPU / NCCL on CUDA); return the ``nproc`` results, rank order."""
    import torch.multiprocessing as mp

    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": nproc, "nproc": nproc, "ip": ip, "port": port or free_port(ip),
                        "offset": 0})
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    kwargs = {"config_dict": config_dict, "cmd_args": list(cmd_args or [])}
    mp.spawn(_worker, args=(model, dataset, config_file_list, kwargs, queue), nprocs=nproc, join=True)
    results = {}
    while not queue.empty():
        rank, result = queue.get()
        results[rank] = result
    return [results[r] for r in sorted(results)]


__all__ = ["free_port", "launch"]
