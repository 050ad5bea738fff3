"""What a training run needs around its loop: torchrun processes, signals, checkpoints, replay.

Not run on its own: `empirics.train.loop` uses it (`torchrun --nproc_per_node N -m empirics.train
...`
for the distributed part). A checkpoint holds everything that decides the next records, so a
killed run resumes to the records of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empirics.outputs import atomic_open
from empirics.train.config import ConfigError, Plan, check_out_dir, differences, previous_run

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


CHECKPOINT_KEYS = (
    "format", "step", "identity", "model", "optimizers", "schedulers", "rng", "data", "summary",
    "records_bytes", "last_loss", "val",
)  # fmt: skip


class CheckpointDamaged(ConfigError):
    """checkpoint.pt cannot be read back (truncated, empty, other bytes); the message gives its
    path and the ways out. A ConfigError: the command exits 2 before any compute."""


def read_checkpoint(path: Path, device: str = "cpu") -> dict[str, Any]:
    """torch.load guarded: a damaged file is reported as CheckpointDamaged (path, cause, way
    out), never as the loader's own traceback; tensors only (weights_only), no pickled code."""
    import torch

    way_out = (
        "delete it to start this run over (or rerun with --overwrite, which starts over too); "
        "the records of the damaged attempt are replaced"
    )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointDamaged(
            f"checkpoint: {str(path)!r} cannot be read ({exc}); {way_out}"
        ) from None
    if size == 0:
        raise CheckpointDamaged(f"checkpoint: {str(path)!r} is empty (0 bytes); {way_out}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch.load fails on damaged bytes with many types
        # (RuntimeError from the zip reader, EOFError, UnpicklingError, ValueError, ...)
        first = str(exc).split(". ", 1)[0].splitlines()[0] if str(exc) else ""
        cause = f"{type(exc).__name__}: {first}"[:160]
        raise CheckpointDamaged(
            f"checkpoint: {str(path)!r} ({size} bytes) is damaged ({cause}); {way_out}"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing or state.get("format") != CHECKPOINT_FORMAT:
        what = f"lacks {', '.join(missing)}" if missing else f"has format {state.get('format')!r}"
        raise CheckpointDamaged(
            f"checkpoint: {str(path)!r} {what} (format {CHECKPOINT_FORMAT} expected); {way_out}"
        )
    return state


def mark_failed(out: Path, message: str) -> None:
    """Set summary.json's status to `failed` with `message` (a run whose resume was refused is
    not `running`); a missing or unreadable summary is left as it is."""
    from empirics.outputs import atomic_write_json

    path = out / "summary.json"
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(body, dict) and body.get("status") != "completed":
        atomic_write_json(path, {**body, "status": "failed", "message": message})


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; records so far and summary.json (status "diverged") are kept."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run at a step boundary; records and summary are kept."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


# ------------------------------------------------------------------------------ processes


@dataclass
class Dist:
    """This process's place under torchrun (rank 0 of 1 without it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def lead(self) -> bool:
        """The process that writes files (rank 0)."""
        return self.rank == 0

    def reduce(self, t: Any, op: str = "mean") -> Any:
        """t combined over the processes: "mean", "max" or "sum" (identity on one process)."""
        if not self.active:
            return t
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return t / self.world if op == "mean" else t

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def start(self, device: str) -> str:
        """Join the process group (torchrun) and return this process's device."""
        if not self.active:
            return device
        import torch
        import torch.distributed as tdist

        if device.startswith("cuda"):
            device = f"cuda:{self.local_rank}"
            torch.cuda.set_device(device)
        if not tdist.is_initialized():
            tdist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return device

    def finish(self) -> None:
        if self.active:
            import torch.distributed as tdist

            if tdist.is_initialized():
                tdist.destroy_process_group()

    def wrap(self, model: Any, device: str) -> Any:
        """The model under DistributedDataParallel when there are several processes."""
        if not self.active:
            return model
        return _ddp_class()(
            model, device_ids=[self.local_rank] if device.startswith("cuda") else None
        )


def dist_from_env() -> Dist:
    """The process's rank and world size as torchrun sets them in the environment."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _ddp_class() -> type:
    from torch.nn.parallel import DistributedDataParallel

    class DDP(DistributedDataParallel):
        """DDP that lends the wrapped model's attributes (a task's loss may read them)."""

        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.module, name)

    return DDP


def split_batch(batch: Any, parts: int) -> list[tuple[Any, ...]]:
    """A batch (tuple of tensors, batch first) cut into `parts` equal micro-batches."""
    import torch

    items = tuple(batch)
    sizes = {t.shape[0] for t in items if torch.is_tensor(t)}
    if len(sizes) != 1 or next(iter(sizes)) % parts:
        raise RuntimeError(f"batch of sizes {sorted(sizes)} does not split into {parts} parts")
    pieces = [t.chunk(parts) if torch.is_tensor(t) else [t] * parts for t in items]
    return [tuple(piece[i] for piece in pieces) for i in range(parts)]


# -------------------------------------------------------------------------------- signals


class StopFlag:
    """Set by the first SIGINT/SIGTERM: the loop stops at the next step boundary; a second
    signal stops at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise Interrupted(signum, -1)
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step (again to stop now)",
            file=sys.stderr,
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


# ------------------------------------------------------------------- data position and seeds


class BatchStream:
    """Train batches forever from a task's `make_data`, restartable at any position.

    Its position is the generator's state when the current pass over the data began plus the
    batches drawn since; `restore` replays that many draws, so a resumed run sees exactly the
    batches an uninterrupted one would have.
    """

    def __init__(self, factory: Callable[[], Any], generator: Any) -> None:
        self.factory, self.generator = factory, generator
        self._it: Iterator[Any] | None = None
        self._epoch_state: Any = None
        self._drawn = 0

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Any:
        for _ in range(2):
            if self._it is None:
                self._epoch_state = self.generator.get_state()
                self._it, self._drawn = iter(self.factory()), 0
            try:
                batch = next(self._it)
            except StopIteration:
                if self._drawn == 0:
                    raise RuntimeError("make_data(split='train') yielded no batches") from None
                self._it = None
                continue
            self._drawn += 1
            return batch
        raise AssertionError("unreachable")

    def state(self) -> dict[str, Any]:
        return {"epoch_state": self._epoch_state, "drawn": self._drawn}

    def restore(self, state: Mapping[str, Any]) -> None:
        if state["epoch_state"] is None:
            return
        self.generator.set_state(state["epoch_state"])
        self._epoch_state = state["epoch_state"]
        self._it, self._drawn = iter(self.factory()), 0
        for _ in range(int(state["drawn"])):
            next(self._it)
            self._drawn += 1


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators from one seed."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global generator's state, in a form `torch.load(weights_only=True)` reads back."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ------------------------------------------------------------------------ summary and resume


class RunSummary:
    """first/last value of every (layer, metric) logged, for summary.json."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], tuple[int, float]] = {}
        self.last: dict[tuple[str, str], tuple[int, float]] = {}
        self.feeds: dict[str, str] = {}  # activation layer -> the layer feeding it

    def add(self, step: int, values: Mapping[tuple[str, str], float]) -> None:
        for key, value in values.items():
            self.first.setdefault(key, (step, value))
            self.last[key] = (step, value)

    def state(self) -> list[list[Any]]:
        return [[*k, *self.first[k], *self.last[k]] for k in self.first]

    def restore(self, rows: Sequence[Sequence[Any]]) -> None:
        for layer, metric, s0, v0, s1, v1 in rows:
            self.first[(layer, metric)] = (int(s0), float(v0))
            self.last[(layer, metric)] = (int(s1), float(v1))

    def layers(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for key, (s0, v0) in self.first.items():
            s1, v1 = self.last[key]
            out.setdefault(key[0], {})[key[1]] = {
                "first_step": s0,
                "first": v0,
                "last_step": s1,
                "last": v1,
            }
        return out


def start_mode(p: Plan) -> str:
    """'fresh' or 'resume' for p.out, or ConfigError when it holds a different run.

    A directory holding the same run (same resolved config) resumes from its checkpoint when it
    has one and did not complete; otherwise the run starts over there. A directory holding
    another run is refused unless `overwrite`, so records of two runs are never mixed.
    """
    out = p.out
    check_out_dir(out)
    old = previous_run(out)
    if old is None:
        return "fresh"
    new_identity = p.cfg.identity()
    old_identity = old.get("identity")
    if old_identity != new_identity and not p.cfg.overwrite:
        detail = (
            differences(old_identity, new_identity)
            if isinstance(old_identity, dict)
            else "its config.json records no comparable config"
        )
        raise ConfigError(
            f"out: {str(out)!r} holds a different run ({detail}); "
            "pass --overwrite to replace it, or choose another --out"
        )
    if old_identity == new_identity and (out / CHECKPOINT).exists():
        try:
            status = json.loads((out / "summary.json").read_text()).get("status")
        except (OSError, ValueError):
            status = None
        if status != "completed":
            if p.cfg.overwrite:
                return "fresh"  # --overwrite starts the same run over, checkpoint or not
            try:
                read_checkpoint(out / CHECKPOINT)
            except CheckpointDamaged as exc:
                mark_failed(out, f"resume refused: {exc}")
                raise
            return "resume"
    return "fresh"


@dataclass
class ResumePoint:
    """What a checkpoint hands back to the loop beyond the objects it restores in place."""

    step: int  # the next step to run
    records_bytes: int  # records.csv is cut back to this length (rows after the checkpoint)
    last_loss: float
    val: dict[str, float]


@dataclass
class TrainState:
    """The objects a checkpoint saves and restores: model, optimisers, schedulers, data
    position, summary, and the global random generators."""

    model: Any
    optimizers: Sequence[Any]
    schedulers: Sequence[Any]
    batches: BatchStream
    summary: RunSummary

    def save(
        self,
        path: Path,
        *,
        step: int,
        identity: dict[str, Any],
        records_bytes: int,
        last_loss: float,
        val: Mapping[str, float],
    ) -> None:
        """Write the checkpoint atomically; `step` is the next step to run."""
        import torch

        body = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "identity": identity,
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "rng": rng_state(),
            "data": self.batches.state(),
            "summary": self.summary.state(),
            "records_bytes": records_bytes,
            "last_loss": last_loss,
            "val": dict(val),
        }
        with atomic_open(path, "wb") as fh:
            torch.save(body, fh)

    def load(self, path: Path, device: str) -> ResumePoint:
        """Restore every object from the checkpoint at `path` (tensors only, no pickled code)."""
        state = read_checkpoint(path, device)
        self.model.load_state_dict(state["model"])
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"], strict=True):
            sch.load_state_dict(s)
        set_rng_state(state["rng"])
        self.batches.restore(state["data"])
        self.summary.restore(state["summary"])
        return ResumePoint(
            step=int(state["step"]),
            records_bytes=int(state["records_bytes"]),
            last_loss=float(state["last_loss"]),
            val=dict(state["val"]),
        )
