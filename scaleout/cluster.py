"""Where batch and sharded renders run: the driver's own process, or Ray actors across a cluster.

Both pools hold `RenderWorker`s (`dfm.runtime.actor`) and offer the same few calls, so `dfm batch` and
`dfm render --ray` have one scheduling loop (`run_queue`) whichever they use:

* `LocalPool`: one worker in this process; a call runs when it is made.
* `RayPool`: one Ray actor per GPU of the cluster (or per CPU slot on a cluster without GPUs), each
  keeping its model loaded between tasks. Ray is imported only here, and only when asked for: without
  it `--ray` fails with a line saying how to install it.

A worker that dies (killed, out of memory, its node lost) surfaces as `WorkerLost`; the pool starts a
new actor in its place and the loop's caller decides whether the task runs again.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..contract.errors import EXIT_USAGE, UserError

RAY_INSTALL = "pip install -e '.[ray]' in the dfm checkout (`make test` installs it too)"
POLL_SECONDS = 0.25  # how often the driver looks for finished tasks and asks the workers for progress


class ClusterError(UserError):
    """Ray is missing, the cluster cannot be reached, or no worker can start: a setup problem (exit 2)."""

    exit_code = EXIT_USAGE


class WorkerLost(Exception):
    """The worker running a task died before it answered."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray, which is not installed", f"install it: {RAY_INSTALL}") from None
    return ray


@dataclass
class Slot:
    """One worker of a pool, as the scheduler sees it."""

    name: str
    handle: object  # a RenderWorker (LocalPool) or a Ray actor handle
    affinity: object = None  # what the last task given to it needs loaded (its model): like tasks go here
    ready: bool = False  # answered a ping (a Ray actor may wait for resources, or fail to start)
    dead: str = ""  # why it could not start
    _ping: object = None


@dataclass(eq=False)
class _Done:
    """A local call, already run."""

    value: object = None
    error: BaseException | None = None


class LocalPool:
    """One RenderWorker in this process."""

    polls = False  # the worker reports progress itself, through on_progress

    def __init__(self, device: str = "auto", *, dtype: str = "auto", allow_pickle: bool = False,
                 on_progress: Callable[[str, int, int, int], None] | None = None) -> None:
        from ..runtime.actor import RenderWorker
        from ..runtime.errors import RenderError

        worker = RenderWorker(device, dtype=dtype, allow_pickle=allow_pickle, on_progress=on_progress)
        try:
            worker.placement()  # a device that is not there fails now, not once per scene
        except RenderError as e:
            raise ClusterError(e.message, e.help) from None
        self.slots = [Slot("local", worker, ready=True)]

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def report_to(self, on_progress: Callable[[str, int, int, int], None] | None) -> None:
        """Where the worker reports each frame (key, resumed_at, done, total)."""
        for slot in self.slots:
            slot.handle.on_progress = on_progress

    def share(self, obj: object) -> object:
        return obj

    def usable(self) -> list[Slot]:
        return self.slots

    def call(self, slot: Slot, method: str, *args) -> _Done:
        try:
            return _Done(getattr(slot.handle, method)(*args))
        except Exception as e:  # noqa: BLE001 - raised again by result(), as a Ray call's error would be
            return _Done(error=e)

    def wait(self, calls: Sequence[_Done], timeout: float) -> list[_Done]:
        return list(calls)

    def result(self, call: _Done) -> object:
        if call.error is not None:
            raise call.error
        return call.value

    def replace(self, slot: Slot) -> None:
        raise RuntimeError("a local worker cannot be lost")

    def progress(self, slots: Iterable[Slot]) -> dict[str, tuple[int, int, int]]:
        return {}

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class WorkerShape:
    """How many actors a pool starts and what each asks Ray for."""

    count: int
    num_gpus: float
    num_cpus: float
    device: str
    threads: int | None  # torch's threads in a CPU worker (its CPUs); None on a GPU

    def describe(self) -> str:
        what = "GPU" if self.num_gpus else f"{int(self.num_cpus)} CPU" + ("s" if self.num_cpus != 1 else "")
        return f"{self.count} worker{'s' * (self.count != 1)} ({what} each)"


def plan_workers(resources: dict[str, float], device: str, *, workers: int | None, cpus_per_worker: int,
                 limit: int | None) -> WorkerShape:
    """One worker per GPU of the cluster (device auto or cuda), else one per `cpus_per_worker` CPUs;
    `workers` sets the count (an autoscaler then adds the nodes), `limit` caps it (no more workers than
    tasks)."""
    want = device.strip().lower()
    if want.startswith("cuda:"):
        raise ClusterError(f"--device {device} picks a GPU of this machine, but with --ray every worker gets a GPU "
                           "of its own", "use --device auto (or cuda)")
    if want not in ("auto", "cuda", "cpu", "mps"):
        raise ClusterError(f"unknown device {device!r}", "use auto, cuda or cpu")
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 0))
    if cpus_per_worker < 1:
        raise ClusterError("--cpus-per-worker must be at least 1")
    if workers is not None and workers < 1:
        raise ClusterError("--workers must be at least 1")
    if want == "cuda" and gpus == 0 and workers is None:
        raise ClusterError("--device cuda, but the Ray cluster has no GPUs",
                           "use --device cpu, add GPU nodes, or pass --workers N for an autoscaler to add them")
    if want == "cuda" or (want == "auto" and gpus > 0):
        count = workers or gpus
        shape = WorkerShape(count, 1, 1, want, None)
    elif want == "mps":  # Apple's GPU is no Ray resource: one worker holds it, unless told otherwise
        shape = WorkerShape(workers or 1, 0, cpus_per_worker, want, None)
    else:
        count = workers or max(1, cpus // cpus_per_worker)
        shape = WorkerShape(count, 0, cpus_per_worker, "cpu" if want == "auto" else want, cpus_per_worker)
    if limit is not None:
        shape = WorkerShape(max(1, min(shape.count, limit)), shape.num_gpus, shape.num_cpus, shape.device,
                            shape.threads)
    return shape


def connect(ray, address: str, init_kwargs: dict | None = None) -> bool:
    """Connect to (or, for "local", start) a Ray cluster; True if this call started or joined it and so
    must shut it down. An already initialised Ray (a notebook, a test) is used as it is."""
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, **(init_kwargs or {})}
    try:
        if address == "local":
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = "start a local Ray cluster" if address == "local" else f"connect to the Ray cluster at {address}"
        raise ClusterError(f"cannot {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                           "start one with `ray start --head` (then --ray auto), give its address "
                           "(host:6379 or ray://host:10001), or use --ray local") from None
    return True


class RayPool:
    """Render workers as Ray actors, one per GPU (or CPU slot), each keeping its model between tasks.

    Actors are named (`Slot.name`, in this job's namespace), so a test or an operator can find one with
    `ray.get_actor`. Each is threaded (two calls at a time): one renders while the other answers
    `progress()`."""

    polls = True

    def __init__(self, address: str = "local", *, device: str = "auto", dtype: str = "auto",
                 allow_pickle: bool = False, workers: int | None = None, cpus_per_worker: int = 1,
                 limit: int | None = None, init_kwargs: dict | None = None) -> None:
        ray = import_ray()
        self._ray = ray
        self._owned = connect(ray, address, init_kwargs)
        self._prefix = f"dfm-render-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._spawned = 0
        self.slots: list[Slot] = []
        try:
            self.shape = plan_workers(ray.cluster_resources(), device, workers=workers,
                                      cpus_per_worker=cpus_per_worker, limit=limit)
            from ..runtime.actor import RenderWorker

            self._actor_class = ray.remote(RenderWorker)
            self._allow_pickle = allow_pickle
            self._dtype = dtype  # each actor's precision (a GPU that lacks it fails the scene's open_rows)
            self.slots = [self._spawn() for _ in range(self.shape.count)]
        except BaseException:
            self.close()
            raise
        self._lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                      ray.exceptions.ObjectLostError, getattr(ray.exceptions, "ActorUnavailableError", OSError))

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spawn(self) -> Slot:
        name = f"{self._prefix}-{self._spawned}"
        self._spawned += 1
        s = self.shape
        actor = self._actor_class.options(
            name=name, num_gpus=s.num_gpus, num_cpus=s.num_cpus, max_concurrency=2, max_restarts=0,
        ).remote(s.device, dtype=self._dtype, allow_pickle=self._allow_pickle, threads=s.threads, name=name)
        slot = Slot(name, actor)
        slot._ping = actor.ping.remote()
        return slot

    def report_to(self, on_progress: Callable[[str, int, int, int], None] | None) -> None:
        """Nothing: the driver asks the actors (`progress`) instead."""

    def share(self, obj: object) -> object:
        """`obj` in the object store, sent to every task that takes it without being pickled again."""
        return self._ray.put(obj)

    def usable(self) -> list[Slot]:
        """The workers that are up; raises ClusterError when none is and none can be."""
        pings = [s._ping for s in self.slots if not s.ready and not s.dead]
        if pings:
            done, _ = self._ray.wait(pings, num_returns=len(pings), timeout=0)
            for slot in self.slots:
                if slot._ping in done:
                    try:
                        self._ray.get(slot._ping)
                        slot.ready = True
                    except Exception as e:  # noqa: BLE001 - an actor that cannot start (dfm missing on its node)
                        slot.dead = _first_line(e)
        if all(s.dead for s in self.slots):
            raise ClusterError(f"no render worker could start: {self.slots[0].dead}",
                               "install the same dfm, torch and models on every node of the cluster")
        return [s for s in self.slots if s.ready]

    def call(self, slot: Slot, method: str, *args) -> object:
        return getattr(slot.handle, method).remote(*args)

    def wait(self, calls: Sequence[object], timeout: float) -> list[object]:
        if not calls:
            time.sleep(timeout)
            return []
        ready, _ = self._ray.wait(list(calls), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self._ray.wait(list(calls), num_returns=len(calls), timeout=0)
        return ready

    def result(self, call: object) -> object:
        try:
            return self._ray.get(call)
        except self._lost as e:
            raise WorkerLost(_first_line(e)) from None

    def replace(self, slot: Slot) -> None:
        """Start a new actor in place of `slot`'s, which died (or is killed now)."""
        try:
            self._ray.kill(slot.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - it is already gone
            pass
        new = self._spawn()
        slot.name, slot.handle, slot._ping, slot.ready, slot.dead, slot.affinity = (
            new.name, new.handle, new._ping, False, "", None)

    def progress(self, slots: Iterable[Slot]) -> dict[str, tuple[int, int, int]]:
        """Every scene's (resumed_at, done, total) the busy workers report within a second."""
        refs = [s.handle.progress.remote() for s in slots]
        if not refs:
            return {}
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=1.0)
        out: dict[str, tuple[int, int, int]] = {}
        for ref in ready:
            try:
                out.update(self._ray.get(ref))
            except Exception:  # noqa: BLE001 - a worker that died; its task reports it
                pass
        return out

    def close(self) -> None:
        """Stop every actor (a render in progress stops where it is: its checkpoint resumes it), and shut
        Ray down if this pool started it."""
        for slot in self.slots:
            try:
                self._ray.kill(slot.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.slots = []
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
            self._owned = False


def open_pool(ray: str | None, *, device: str = "auto", dtype: str = "auto", allow_pickle: bool = False,
              workers: int | None = None, cpus_per_worker: int = 1, limit: int | None = None) -> LocalPool | RayPool:
    """The pool of a command: this process without `ray`, else actors on the cluster `ray` names
    ("local" starts one on this machine, "auto" joins the one `ray start` runs here)."""
    if ray is None:
        return LocalPool(device, dtype=dtype, allow_pickle=allow_pickle)
    return RayPool(ray, device=device, dtype=dtype, allow_pickle=allow_pickle, workers=workers,
                   cpus_per_worker=cpus_per_worker, limit=limit)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@dataclass
class Queue:
    """Items waiting for a worker, taken in order, except that a worker gets the first item with its own
    affinity (the model it holds) when there is one."""

    items: list = field(default_factory=list)
    affinity: Callable[[object], object] | None = None

    def take(self, slot: Slot) -> object:
        if self.affinity is not None and slot.affinity is not None:
            for k, item in enumerate(self.items):
                if self.affinity(item) == slot.affinity:
                    return self.items.pop(k)
        item = self.items.pop(0)
        if self.affinity is not None:
            slot.affinity = self.affinity(item)
        return item


def run_queue(pool, queue: Queue, *, submit: Callable[[Slot, object], tuple],
              done: Callable[[Slot, object, object], None], lost: Callable[[Slot, object, WorkerLost], bool],
              poll: Callable[[dict[str, tuple[int, int, int]]], None] | None = None) -> None:
    """Give every item to a free worker until all are done: `submit(slot, item)` returns the call
    (method name and arguments), `done(slot, item, value)` takes its result, `lost(slot, item, error)`
    says whether an item whose worker died goes back into the queue (the worker is replaced). `poll`
    receives the busy workers' progress between waits."""
    running: dict[object, tuple[Slot, object]] = {}
    while queue.items or running:
        busy = {id(slot) for slot, _ in running.values()}
        for slot in pool.usable():
            if not queue.items:
                break
            if id(slot) in busy:
                continue
            item = queue.take(slot)
            method, *args = submit(slot, item)
            running[pool.call(slot, method, *args)] = (slot, item)
            busy.add(id(slot))
        for call in pool.wait(list(running), POLL_SECONDS):
            slot, item = running.pop(call)
            try:
                value = pool.result(call)
            except WorkerLost as e:
                again = lost(slot, item, e)
                pool.replace(slot)
                if again:
                    queue.items.insert(0, item)
                continue
            done(slot, item, value)
        if poll is not None and pool.polls and running:
            poll(pool.progress(slot for slot, _ in running.values()))


__all__ = ["ClusterError", "LocalPool", "Queue", "RayPool", "Slot", "WorkerLost", "WorkerShape", "import_ray",
           "open_pool", "plan_workers", "run_queue"]
