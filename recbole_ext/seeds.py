"""Multi-seed runs: the same configuration once per seed, summarised with Student-t intervals (layer 5).

:func:`run_seeds` calls :func:`recbole_ext.quick_start.run_recbole` once per seed (config key ``seed`` set
per run, everything else identical) — in sequence, in a spawn-context process pool (``parallel="processes"``)
or as Ray tasks (``parallel="ray"``, the optional tune extra) — and writes one JSON summary
``<model>-<dataset>-seeds-<time>-<pid>.json`` under ``results_dir``: the seeds, each run's test and best-valid
metrics and summary path, and per metric the mean, sd, 95 % t-interval and n over the seeds
(:func:`recbole_ext.stats.mean_ci`).

RecBole's ``seed`` seeds the data split as well as the model (its default split is random): the runs differ in
their train/valid/test rows too, so the interval covers split and initialisation noise together, and the runs
cannot be paired user by user. See docs/seeds-and-frontiers.md.
"""

import os
import time

from recbole_ext import checkpoint as ckpt
from recbole_ext.config import Config
from recbole_ext.errors import ConfigError, MissingPackageError
from recbole_ext.quick_start import check_output_dirs, run_recbole, summary_path, write_summary
from recbole_ext.stats import mean_ci

PARALLEL_MODES = (None, "processes", "ray")
RAY_MISSING = (
    "run_seeds(parallel='ray') runs the seeds as Ray tasks, and Ray is not installed: "
    "pip install -r requirements-tune.txt   (or: pip install -e .[tune]); or use parallel='processes'"
)
LEVEL = 0.95
MAX_SEED = 2**32 - 1  # numpy's legacy seeding, used by RecBole's init_seed, takes 0 <= seed < 2**32


def parse_seeds(seeds):
    """``seeds`` (``"2020,2021"`` or a sequence) as a list of distinct non-negative integers, in the given
    order; :class:`ConfigError` naming the bad entry otherwise."""
    if isinstance(seeds, str):
        items = [s.strip() for s in seeds.split(",")]
    elif isinstance(seeds, int):
        items = [seeds]
    else:
        items = list(seeds or [])
    if not items or items == [""]:
        raise ConfigError("no seeds given: pass distinct integers, e.g. --seeds=2020,2021,2022")
    out = []
    for item in items:
        value = item
        if isinstance(item, str):
            try:
                value = int(item)
            except ValueError:
                value = None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
            raise ConfigError(
                f"seed {item!r} is not an integer in [0, {MAX_SEED}]: pass distinct integers, e.g. --seeds=2020,2021,2022"
            )
        out.append(value)
    repeated = sorted({s for s in out if out.count(s) > 1})
    if repeated:
        raise ConfigError(f"seeds must be distinct: {', '.join(map(str, repeated))} given more than once")
    return out


def _check_parallel(parallel, workers, n_seeds):
    if parallel not in PARALLEL_MODES:
        raise ConfigError(f"parallel must be one of None, 'processes', 'ray'; got {parallel!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if parallel is None:
        return 1
    return min(workers or os.cpu_count() or 1, n_seeds)


def _check_no_seed_override(cmd_args):
    """The per-run ``seed`` goes into ``config_dict``; a ``--seed=`` command-line argument would win over it
    (RecBole: command line > config_dict > files) and every run would use that one seed."""
    for arg in cmd_args or []:
        if str(arg).split("=", 1)[0].lstrip("-") == "seed":
            raise ConfigError(f"'{arg}' conflicts with the seeds of a multi-seed run: drop it (--seeds sets seed per run)")


def threads_per_worker(workers, cores=None):
    """Torch threads of each parallel run: the machine's cores shared out, at least one."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


def _one_seed(model, dataset, config_file_list, config_dict, cmd_args, threads=None):
    """One run (in this process, a pool worker or a Ray task): run_recbole's result without the Config."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    result = run_recbole(model, dataset, config_file_list=config_file_list, config_dict=config_dict,
                         cmd_args=list(cmd_args))
    result.pop("config", None)
    return result


def run_seeds(model, dataset, seeds, config_file_list=None, config_dict=None, cmd_args=None, parallel=None,
              workers=None):
    """Run :func:`run_recbole` once per seed and write one summary; return it (a dict, with ``path``).

    ``parallel``: ``None`` (one after the other, in this process), ``"processes"`` (a spawn-context pool of
    ``workers`` processes, default min(seeds, cores), each with ``max(1, cores // workers)`` torch threads)
    or ``"ray"`` (one Ray task per seed, on the running Ray instance or a local one; Ray is the optional
    tune extra). ``cmd_args`` are ``--key=value`` strings as on the command line (default: none, not
    ``sys.argv``). Returns ``{"path", "seeds", "runs": [...], "test": {metric: stats}, "valid": {...}, ...}``
    where stats are ``mean, sd, ci_lo, ci_hi, n`` (``None`` where undefined: sd and interval need 2 seeds).
    """
    seeds = parse_seeds(seeds)
    workers = _check_parallel(parallel, workers, len(seeds))
    cmd_args = list(cmd_args or [])
    _check_no_seed_override(cmd_args)
    base = dict(config_dict or {})
    # the configuration is checked (and the output folders created) once, before any run starts
    config = Config(model, dataset, config_file_list, dict(base, seed=seeds[0]), cmd_args)
    check_output_dirs(config)
    jobs = [(model, dataset, config_file_list, dict(base, seed=s), cmd_args) for s in seeds]
    start = time.perf_counter()
    if parallel is None:
        results = [_one_seed(*job) for job in jobs]
    elif parallel == "processes":
        results = _run_processes(jobs, workers)
    else:
        results = _run_ray(jobs, workers, config)
    seconds = time.perf_counter() - start
    summary = summarise(config, seeds, results, parallel, workers, seconds)
    summary["path"] = write_seeds_summary(config, summary)
    return summary


def _run_processes(jobs, workers):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = threads_per_worker(workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_one_seed, *job, threads=threads) for job in jobs]
        return [f.result() for f in futures]


def import_ray():
    try:
        import ray
    except ImportError as err:
        raise MissingPackageError(RAY_MISSING) from err
    return ray


def _run_ray(jobs, workers, config):
    ray = import_ray()
    # Ray workers need not share this process's working folder: relative paths become absolute here
    jobs = [(model, dataset, [os.path.abspath(f) for f in files] if files else files,
             dict(cd, **{k: os.path.abspath(config[k]) for k in ("checkpoint_dir", "results_dir")}), args)
            for model, dataset, files, cd, args in jobs]
    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    threads = threads_per_worker(workers)
    task = ray.remote(num_cpus=threads)(_one_seed)
    return ray.get([task.remote(*job, threads=threads) for job in jobs])


def metric_stats(results, key):
    """``{metric: {mean, sd, ci_lo, ci_hi, n}}`` over the runs' ``results[i][key]`` (metrics in the first run's
    order; a run's ``None`` value is left out and lowers ``n``)."""
    names = []
    for result in results:
        for name in result.get(key) or {}:
            if name not in names:
                names.append(name)
    out = {}
    for name in names:
        values = [r[key][name] for r in results if (r.get(key) or {}).get(name) is not None]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue  # not a number (e.g. a flag a trainer reports in best_valid_result)
        ci = mean_ci(values, LEVEL)
        out[name] = {"mean": ci.mean, "sd": _finite(ci.sd), "ci_lo": _finite(ci.lo), "ci_hi": _finite(ci.hi), "n": ci.n}
    return out


def _finite(value):
    return None if value != value else value  # NaN (fewer than 2 values) -> null in JSON


def summarise(config, seeds, results, parallel=None, workers=1, seconds=None):
    runs = [
        {
            "seed": seed,
            "test_result": r.get("test_result"),
            "best_valid_result": r.get("best_valid_result"),
            "best_valid_score": r.get("best_valid_score"),
            "summary_path": os.path.abspath(r["summary_path"]) if r.get("summary_path") else None,
            "checkpoint": r.get("checkpoint"),
            "per_user": r.get("per_user"),  # with save_per_user: True
            "train_seconds": r.get("train_seconds"),
            "eval_seconds": r.get("eval_seconds"),
        }
        for seed, r in zip(seeds, results)
    ]
    plain = ckpt.plain_config(config)
    plain.pop("seed", None)
    return {
        "kind": "seeds",
        "model": config["model"],
        "dataset": config["dataset"],
        "seeds": list(seeds),
        "level": LEVEL,
        "interval": "Student t over seeds (each seed also draws its own data split)",
        "parallel": parallel,
        "workers": workers,
        "seconds": None if seconds is None else round(seconds, 3),
        "test": metric_stats(results, "test_result"),
        "valid": metric_stats(results, "best_valid_result"),
        "runs": runs,
        "config": plain,
    }


def write_seeds_summary(config, summary):
    """Write ``summary`` atomically as ``<results_dir>/<model>-<dataset>-seeds-<time>-<pid>.json``."""
    path = summary_path(config, f"{config['model']}-{config['dataset']}-seeds")
    return os.path.abspath(write_summary(config, {k: v for k, v in summary.items() if k != "path"}, path))


def format_seeds_table(summary, key="test"):
    """``metric  mean  sd  95% CI`` with plain numbers, one line per metric."""
    stats = summary[key]
    width = max([len(n) for n in stats] + [6])
    n = len(summary["seeds"])
    seeds = ", ".join(map(str, summary["seeds"]))
    lines = [f"{summary['model']} on {summary['dataset']}: {key} metrics over {n} seeds ({seeds})",
             f"{'metric':<{width}}  {'mean':>8}  {'sd':>8}  95% CI"]

    def num(v):
        return f"{v:8.4f}" if v is not None else f"{'-':>8}"

    for name, s in stats.items():
        ci = f"[{s['ci_lo']:.4f}, {s['ci_hi']:.4f}]" if s["ci_lo"] is not None else "- (needs 2 seeds)"
        lines.append(f"{name:<{width}}  {num(s['mean'])}  {num(s['sd'])}  {ci}")
    return "\n".join(lines)
