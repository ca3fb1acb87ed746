"""Multi-process distillation on PyTorch's own distributed engine (``torch.distributed``, launched by torchrun).

Data parallelism over the *real* batch of the outer step, or, for a multi-architecture distillation with at
least as many architectures as processes, **learner parallelism**: architecture i is trained by process
i mod N only (its learner state, its own random generator, its validation), on the whole real batch; each
process back-propagates the outer losses of its learners of the step weighted by 1 / (learners in the step),
and the same single all-reduce gives every process the meta-gradient of the mean over the step's learners
(:meth:`ProcessGroup.backward_learners`). Each learner's draws come from its own generator (its dropout is
seeded from it), so a learner draws the same numbers whichever process trains it, and N processes end where
one process training every learner ends (to float tolerance). Checkpoints gather every learner's state and
generator into process 0's ``resume.pt`` (:meth:`ProcessGroup.collect`). In batch parallelism:

- **split**: each outer step's global batch (the same permutation of the real examples as a single process
  with the same seed draws) is cut into contiguous shares, one per process (:func:`batch_share`); each process
  computes the outer loss on its share only.
- **reduced meta-gradient**: each process back-propagates its share's mean loss weighted by
  ``share / global batch``, and one all-reduce (sum) of the meta-gradients of the summary's parameters (and of
  the weighted loss, CE and MSE) gives every process the gradient and the loss of the global batch's mean:
  the single-process values up to the order of float additions. Gradient clipping, the non-finite guard and
  the Adam step then act on the reduced gradient, identically on every process.
- **replicated**: the inner unroll (it depends only on the summary and the random generators, which every
  process seeds identically and advances identically: same unroll lengths, cut positions, learner starts and
  dropout masks), the summary and its optimiser, and validation (every process runs it, so the random
  generators stay in step; only process 0's result is written).
- **outputs**: only process 0 (global rank 0) writes files (summaries, ``steps.jsonl``, ``metrics.json``,
  ``config.yaml``, ``run.json``, ``resume.pt``).
- **teacher features**: computed once, each process taking a contiguous range of the 4096-example chunks the
  single-process computation uses (so the numbers are the same), then exchanged by broadcasts.
- **resume**: process 0 writes ``resume.pt``; every process of a resumed run reads the same file (the run
  folder must be on a file system every process sees) and the random generators are then copied from
  process 0, so a run checkpointed with any number of processes resumes with any other number.

:class:`SingleProcess` is the no-op context of an ordinary run (the distiller's code path and its numbers are
then exactly the single-process ones); :class:`ProcessGroup` is the one of a torchrun worker.
:func:`launch` is ``td3rec distill --nproc N``: it re-runs the same command line under
``torch.distributed.run`` (torchrun) on this machine.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import torch

from td3rec.data.sequences import Examples
from td3rec.distill.teacher import teacher_features
from td3rec.errors import ConfigError, UserError
from td3rec.utils.rng import capture_rng, restore_rng

log = logging.getLogger(__name__)

R = TypeVar("R")

#: the chunk size of :func:`td3rec.distill.teacher.teacher_features` (its default ``batch_size``); the
#: processes split the teacher-feature computation at multiples of it so each chunk is computed as in one process
TEACHER_CHUNK = 4096


# -- the batch split --------------------------------------------------------------------------------------
def share_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of process ``rank``'s contiguous share of ``n`` items: the first ``n % world_size``
    processes take one item more (as ``numpy.array_split``); shares may be empty when ``n < world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size} processes")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def batch_share(index: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process ``rank``'s contiguous share of the global batch ``index`` (the shares of ranks ``0..world_size-1``
    concatenated are ``index`` itself, in order)."""
    start, stop = share_bounds(len(index), rank, world_size)
    return index[start:stop]


# -- the launch environment -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchEnvironment:
    """Where this process stands: inside a torchrun group (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set), or a
    plain process that may have to launch one (``--nproc N``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: processes ``td3rec distill --nproc N`` asked for when this process is not inside a group (0: none)
    launch_nproc: int = 0

    @property
    def is_main(self) -> bool:
        """Process 0, the one that writes the outputs."""
        return self.rank == 0

    @property
    def needs_launch(self) -> bool:
        """``--nproc N`` with N > 1 outside a torchrun group: this process launches the group and waits."""
        return self.launch_nproc > 1

    @property
    def distributed(self) -> bool:
        """More than one process takes part (now, or once launched)."""
        return self.world_size > 1 or self.needs_launch


def launch_environment(nproc: int | None = None) -> LaunchEnvironment:
    """The environment torchrun set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or a single process;
    ``nproc`` is the ``--nproc`` option, ignored inside a torchrun group (torchrun decided the processes)."""
    if nproc is not None and nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        try:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            local = int(os.environ.get("LOCAL_RANK", rank))
        except ValueError:
            raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (launch with torchrun)") from None
        if world > 1:
            return LaunchEnvironment(rank=rank, world_size=world, local_rank=local)
    return LaunchEnvironment(launch_nproc=nproc or 0)


#: torch's loggers of the launch (its agent logs every signal and shutdown as a warning): quiet unless -v
TORCH_LAUNCH_LOGGERS = ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher")


def launch(argv: list[str], nproc: int) -> int:
    """Run ``td3rec ARGV`` in ``nproc`` processes on this machine through ``torch.distributed.run`` (what
    ``torchrun --standalone --nproc_per_node NPROC -m td3rec ARGV`` does) and wait for them; returns the exit
    code of the first process that failed (2 for a user error, 3 for a diverged run), else 0.

    Ctrl-C or SIGTERM to this launcher (or its process group): torch's agent sends the signal to every worker
    (their own sessions, so only through it), waits for them and SIGKILLs any left after its grace period; the
    workers stop silently (:data:`td3rec.utils.signals.LAUNCHED_ENV`), this process raises
    :class:`~td3rec.utils.signals.Interrupted`, and the command ends with one line and exit 130 / 143, its run
    resumable like a single process's."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from td3rec.utils.signals import LAUNCHED_ENV, Interrupted

    log.info("launching %d processes (torch.distributed.run --standalone --nproc_per_node %d)", nproc, nproc)
    options = parse_args(["--standalone", "--nproc_per_node", str(nproc), "-m", "td3rec"])
    options.training_script_args = list(argv)  # set here: torchrun's parser would read options in them
    quiet = not logging.getLogger("td3rec").isEnabledFor(logging.DEBUG)
    names = [name for name in list(logging.root.manager.loggerDict)  # (each of torch's sets its own level)
             if any(name == prefix or name.startswith(prefix + ".") for prefix in TORCH_LAUNCH_LOGGERS)]
    levels = {name: logging.getLogger(name).level for name in names}
    previous = os.environ.get(LAUNCHED_ENV)
    os.environ[LAUNCHED_ENV] = str(os.getpid())  # (the workers inherit it)
    try:
        if quiet:
            for name in names:
                logging.getLogger(name).setLevel(logging.ERROR)
        run(options)
    except ChildFailedError as err:
        _, failure = err.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    except SignalException as err:  # the agent has ended the workers
        raise Interrupted(err.sigval) from None
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if previous is None:
            os.environ.pop(LAUNCHED_ENV, None)
        else:
            os.environ[LAUNCHED_ENV] = previous
    return 0


# -- the contexts -----------------------------------------------------------------------------------------
class SingleProcess:
    """The distillation context of one process: every operation is the single-process one (no-ops)."""

    rank = 0
    world_size = 1
    local_rank = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device this process computes on."""
        return device

    def share(self, index: torch.Tensor) -> torch.Tensor:
        """This process's share of the global batch ``index``."""
        return index

    def teacher_features(self, model, examples: Examples, device: torch.device) -> torch.Tensor:
        """The teacher's features on every real example (every process gets all of them)."""
        return teacher_features(model, examples, device)

    def backward(self, computes: Sequence[Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]],
                 params: Iterable[torch.nn.Parameter], n_local: int,
                 n_global: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Back-propagate the outer losses of the step's learners on this process's share (each ``compute()``
        returns ``(loss, ce, mse)``, means over the ``n_local`` examples of the share, or ``None`` for an empty
        share; they run one after the other, so only one learner's graph is held at a time) so that ``params`` hold the meta-gradient of the mean over
        the learners of the global batch's mean; returns that mean's ``(loss, ce, mse)``."""
        stats = []
        for compute in computes:
            loss, ce, mse = compute()
            (loss if len(computes) == 1 else loss / len(computes)).backward()
            stats.append(torch.stack([loss.detach(), ce.detach(), mse.detach()]))
        loss, ce, mse = stats[0] if len(stats) == 1 else torch.stack(stats).mean(0)
        return loss, ce, mse

    def backward_learners(self, computes: Sequence[Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]],
                          params: Iterable[torch.nn.Parameter],
                          n_learners: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Learner parallelism: back-propagate the outer losses (each on the whole real batch) of this process's
        learners of the step, so that ``params`` hold the meta-gradient of the mean over the step's
        ``n_learners`` learners, whichever process ran them; returns that mean's ``(loss, ce, mse)``."""
        return self.backward(computes, params, 1, 1)

    def collect(self, value: Any) -> list[Any]:
        """Every process's ``value``, in process order (on every process)."""
        return [value]

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on some process (a decision every process must take the same way)."""
        return flag

    def check_same(self, what: str, value: Any) -> None:
        """Refuse to go on when the processes disagree on ``value`` (a ConfigError naming ``what``)."""

    def on_main(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` on process 0 only; every process gets its result, or raises its user error."""
        return fn()

    def local_main_first(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` on every process, on each machine's first process before the others (downloads, caches)."""
        return fn()

    def sync_start(self, step: int, generator: torch.Generator) -> None:
        """Check that every process starts (or resumes) at outer step ``step`` and give every process process
        0's random generator states."""

    def sync_summary(self, summary: torch.nn.Module) -> float:
        """Make the summary's parameters process 0's on every process; returns the largest difference found."""
        return 0.0


class ProcessGroup(SingleProcess):
    """The distillation context of one process of a torchrun group (initialised by :func:`process_group`)."""

    def __init__(self, env: LaunchEnvironment, device: torch.device) -> None:
        self.rank = env.rank
        self.world_size = env.world_size
        self.local_rank = env.local_rank
        self._device = device

    def device(self, device: torch.device) -> torch.device:
        return self._device

    def share(self, index: torch.Tensor) -> torch.Tensor:
        return batch_share(index, self.rank, self.world_size)

    def teacher_features(self, model, examples: Examples, device: torch.device) -> torch.Tensor:
        import torch.distributed as dist

        n = len(examples)
        vectors = model.item_vectors()
        out = torch.empty(n, vectors.shape[1], dtype=vectors.dtype, device=device)
        n_chunks = math.ceil(n / TEACHER_CHUNK)
        for rank in range(self.world_size):
            first, last = share_bounds(n_chunks, rank, self.world_size)
            start, stop = first * TEACHER_CHUNK, min(last * TEACHER_CHUNK, n)
            if stop <= start:
                continue
            if rank == self.rank:
                out[start:stop] = teacher_features(model, examples.subset(slice(start, stop)), device)
            dist.broadcast(out[start:stop], src=rank)
        return out

    def backward(self, computes, params, n_local, n_global):
        params = list(params)
        weight = n_local / n_global / len(computes)
        stats = torch.zeros(3, device=self._device)
        for compute in computes:  # (every one runs: it also advances its learner, which every process repeats)
            out = compute()
            if out is None:  # an empty share (a global batch smaller than the group) adds nothing
                continue
            loss, ce, mse = out
            (loss * weight).backward()
            stats = stats + torch.stack([loss.detach(), ce.detach(), mse.detach()]) * weight
        return self._reduce(params, stats)

    def backward_learners(self, computes, params, n_learners):
        params = list(params)
        stats = torch.zeros(3, device=self._device)
        for compute in computes:
            loss, ce, mse = compute()
            (loss / n_learners).backward()
            stats = stats + torch.stack([loss.detach(), ce.detach(), mse.detach()]) / n_learners
        return self._reduce(params, stats)

    def collect(self, value):
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def _reduce(self, params: list[torch.nn.Parameter],
                stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sum the processes' gradients of ``params`` and ``stats`` (weighted loss, CE, MSE) in one all-reduce."""
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        has_grad = torch.tensor([float(p.grad is not None) for p in params], device=self._device)
        dtype = grads[0].dtype
        flat = torch.cat([g.reshape(-1) for g in grads] + [stats.to(dtype), has_grad.to(dtype)])
        dist.all_reduce(flat)  # sum over the processes
        offset = 0
        for p, g in zip(params, grads):
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        loss, ce, mse = flat[offset : offset + 3]
        present = flat[offset + 3 :]
        for p, g, on in zip(params, grads, present.tolist()):
            p.grad = g if on > 0 else None  # a parameter no process has a gradient for stays without one
        return loss, ce, mse

    def any(self, flag: bool) -> bool:
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self._device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def check_same(self, what: str, value: Any) -> None:
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        differ = [rank for rank, other in enumerate(values) if other != values[0]]
        if differ:
            raise ConfigError(f"the processes disagree on {what} (process 0 and process(es) "
                              f"{', '.join(map(str, differ))}); give every process the same data, teacher and "
                              "settings")

    def on_main(self, fn):
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except UserError as err:
                box[0] = ("error", err)
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def local_main_first(self, fn):
        import torch.distributed as dist

        if self.local_rank == 0:
            result = fn()
            dist.barrier()
            return result
        dist.barrier()
        return fn()

    def sync_start(self, step, generator):
        import torch.distributed as dist

        self.check_same("the outer step to start from (a resumed run needs its folder, with resume.pt, on a file "
                        "system every process sees)", step)
        cuda = self._device.type == "cuda"
        box: list[Any] = [None]
        if self.is_main:
            box[0] = {"rng": capture_rng(generator), "cuda": torch.cuda.get_rng_state(self._device) if cuda else None}
        dist.broadcast_object_list(box, src=0)
        if not self.is_main:
            # the CUDA generator of *this* process's device takes process 0's (a checkpoint holds every
            # device's generator as process 0 saw them, and process 0 only ever draws on its own device)
            restore_rng(box[0]["rng"], generator)
            if cuda:
                torch.cuda.set_rng_state(box[0]["cuda"].cpu(), self._device)

    def sync_summary(self, summary):
        import torch.distributed as dist

        params = [p for p in summary.parameters()]
        if not params:
            return 0.0
        with torch.no_grad():
            local = torch.cat([p.detach().reshape(-1) for p in params])
            reference = local.clone()
            dist.broadcast(reference, src=0)
            drift = (local - reference).abs().max().reshape(1)
            dist.all_reduce(drift, op=dist.ReduceOp.MAX)
            offset = 0
            for p in params:
                p.copy_(reference[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        value = float(drift.item())
        if value > 0:
            log.info("the summary differed between processes by up to %.3g; every process now has process 0's", value)
        return value


SINGLE_PROCESS = SingleProcess()


@contextlib.contextmanager
def process_group(env: LaunchEnvironment, device: torch.device) -> Iterator[SingleProcess]:
    """The context of this process: :data:`SINGLE_PROCESS`, or (inside a torchrun group) the initialised
    process group (``gloo`` on CPU, ``nccl`` on CUDA with ``cuda:LOCAL_RANK`` as this process's device),
    destroyed on exit."""
    if env.world_size <= 1:
        yield SINGLE_PROCESS
        return
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run distillation in one process")
    if device.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"process {env.rank} (local rank {env.local_rank}) has no GPU: this machine has "
                              f"{torch.cuda.device_count()}; start at most that many processes per machine")
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    log.info("process %d of %d (%s, %s)", env.rank, env.world_size, backend, device)
    try:
        yield ProcessGroup(env, device)
    finally:
        dist.destroy_process_group()
