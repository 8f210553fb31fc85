"""VGC as a DDP communication hook: ``vgc_ref.torch.register(ddp_model, method="vgc")``.

For every gradient bucket DDP hands over, on every rank (docs/algorithm.md, steps of one
data-parallel VGC step):

1. take the bucket's gradients as float32 vectors -- on CPU, numpy views of the bucket's
   own memory (no copy), so the numba-cpu backend runs on the tensor memory; float16 and
   bfloat16 gradients are cast to float32 copies;
2. take each parameter's variance term s from the :class:`VarianceTracker` (vgc, hybrid);
   a parameter no tracked layer owns (normalisation layers, ...) is sent dense by default;
3. step a :class:`vgc_ref.Compressor` over the bucket's parameters *on scratch copies* of
   their state: one segment per parameter (parameters above 2^27 elements are split),
   residual state r and v *kept per parameter*, so DDP's bucket rebuild after the first
   step (which regroups and reorders the parameters) changes only the order of the
   segments in the message, never the state; the segment id on the wire is the segment's
   position in its bucket's message;
4. encode the message in the wire format of docs/format.md;
5. exchange the message lengths with ``all_gather`` of an int64 tensor (a rank whose step
   raised sends -1: every rank learns it, and the rest of the step exchanges nothing);
6. exchange the messages padded to the longest with an asynchronous ``all_gather`` of
   uint8 tensors (no pickling);
7. when it completes, decode and add the P messages in rank order and divide by P,
   exactly as :func:`vgc_ref.decode_accumulate`, into the tensor DDP copies into the
   gradients (cast back to the bucket's dtype);
8. at the step's last bucket, wait for every bucket's aggregation, exchange one success
   flag per rank (``all_gather``), and only if every rank succeeded at every bucket
   *commit* the scratch state and the counters. Otherwise no rank changes its state and
   every rank's ``backward()`` raises :class:`VGCStepError` naming the failed ranks.

On a GPU (a CUDA bucket and the numba-cuda backend), steps 1-3 and 7 run in device memory
on the tensors' own memory, r and v stay on the device and the commit swaps device
buffers (:mod:`vgc_ref.torch.device`); elsewhere the bucket is viewed on the host.

All collectives are issued from the thread that runs backward, in the order DDP calls the
hook, which is the same on every rank. The length exchange (step 5) waits; the payload
exchange and the aggregation (6, 7) overlap the rest of backward; step 8 waits at the end.

Errors never leave the hook as exceptions: they are carried by the last bucket's future,
which DDP waits for after it has finished its own bookkeeping for the step, so the next
forward and backward start cleanly (docs/torch.md, "A failed step").
"""

import contextlib
import os

import numpy as np
import torch
import torch.distributed as dist

from vgc_ref.backends import ENV_VAR, Backend, get_backend
from vgc_ref.compressor import METHODS, Compressor
from vgc_ref.criterion import dense_packet
from vgc_ref.errors import InputError
from vgc_ref.state import SegmentState, segment_bounds
from vgc_ref.torch import device as dev
from vgc_ref.torch.variance import VarianceTracker

#: Methods the hook offers (topk is a baseline of the demo, not of the hook).
HOOK_METHODS = tuple(m for m in METHODS if m != "topk")

#: What a parameter without a variance term gets under vgc and hybrid (docs/torch.md).
UNTRACKED = ("dense", "error", "zero")

#: Gradient dtypes the hook takes; float16 and bfloat16 are compressed in float32.
GRAD_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: The counters a step adds to (committed with the step's state).
COUNTERS = ("message_bytes", "dense_bytes", "sent", "elements", "calls")


class VGCStepError(RuntimeError):
    """A step of the hook failed on at least one rank; no rank's hook state changed.

    ``ranks`` lists the ranks that reported a failure (their own step raised, or a
    message failed to decode there), None when the agreement itself failed (a rank died);
    ``local`` is this rank's own exception, if any.
    """

    def __init__(self, ranks: list[int] | None, local: BaseException | None = None) -> None:
        self.ranks = ranks
        self.local = local
        own = f"; on this rank: {type(local).__name__}: {local}" if local is not None else ""
        where = f"on rank(s) {ranks}" if ranks is not None else "(the ranks could not agree)"
        super().__init__(
            f"vgc_ref.torch: the step failed {where}{own}. No rank's hook state "
            "changed: retry the batch, skip it, or stop (docs/torch.md, 'A failed step')"
        )


def tensor_as_numpy(t: torch.Tensor):
    """A tensor as a 1-D numpy array: on the same memory for a contiguous CPU tensor.

    CUDA tensors are copied to the host and non-contiguous ones are copied by ``reshape``;
    a contiguous CPU tensor is never copied, so writes to the array are writes to the
    tensor. The dtype is kept: the step itself rejects anything but float32.
    """
    flat = t.detach().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    return flat.numpy()


def pad_message(message: bytes, longest: int, device=None) -> torch.Tensor:
    """Step 6's payload: the message's bytes in a uint8 tensor of ``longest`` bytes, zero-padded."""
    payload = torch.zeros(longest, dtype=torch.uint8)
    if message:
        payload[: len(message)] = torch.frombuffer(bytearray(message), dtype=torch.uint8)
    return payload if device is None else payload.to(device)


def aggregate_gathered(gathered, lengths, sizes, out, backend: Backend) -> list:
    """Step 7: the first ``lengths[w]`` bytes of each gathered payload (rank order w = 0 ..
    P-1) decoded and averaged by ``backend.decode_accumulate`` into ``out`` (float32 arrays,
    one per segment; on CPU, views of the result tensor)."""
    messages = [bytes(t[:n].cpu().numpy()) for t, n in zip(gathered, lengths)]
    return backend.decode_accumulate(messages, sizes, out=out)


def _done(value: torch.Tensor) -> torch.futures.Future:
    fut = torch.futures.Future()
    fut.set_result(value)
    return fut


def default_backend() -> Backend:
    """The hook's backend when none is named and $VGC_BACKEND is unset: numba-cpu (at 10 M
    parameters its step is a third of numpy's), or numpy where Numba's backend cannot load."""
    try:
        return get_backend("numba-cpu")
    except (ImportError, RuntimeError):
        return get_backend("numpy")


class _ParamState:
    """One parameter's residual state: one SegmentState per piece of at most 2^27 elements.

    On the device path (:mod:`vgc_ref.torch.device`) ``device`` holds the pieces in device
    memory instead, from the parameter's first device step on (``states`` is then unused).
    """

    def __init__(self, name: str, numel: int) -> None:
        self.name = name
        self.bounds = segment_bounds(numel)  # [(start, stop)] pieces of the flat parameter
        self.states = [SegmentState.zeros(stop - start) for start, stop in self.bounds]
        #: Host spares: the scratch pieces of the next step, allocated once (step 3).
        self.spares: list[SegmentState] | None = None
        self.device: dev.DeviceParamState | None = None

    def scratch(self, device: torch.device | None) -> list:
        """Pieces a step may change without changing the committed state (step 3).

        With a ``device``, the device spares (the device state is made from the host
        pieces at the first call: one upload), holding the committed r and v. Else the
        host spares, as they are: the step reads the committed pieces and writes every
        element of these (``Compressor.compress``'s ``into``). The spares are allocated
        once and swapped with the committed pieces at commit: a fresh copy per step cost
        a page fault per page, and copying r and v into them a third of the step
        (docs/performance.md).
        """
        if device is not None:
            if self.device is None:
                self.device = dev.DeviceParamState(self.states, device)
            return self.device.scratch()
        if self.spares is None:
            self.spares = [SegmentState.zeros(st.n) for st in self.states]
        return self.spares

    def commit(self, stepped: list) -> None:
        if self.device is not None:
            self.device.commit(stepped)
        elif stepped is not self.states:
            self.states, self.spares = stepped, self.states

    def host_states(self) -> list[SegmentState]:
        """The committed pieces on the host (copies from the device on the device path)."""
        return self.device.host_states() if self.device is not None else self.states


class _Aside:
    """What one bucket's step computed aside: committed only with its whole step."""

    def __init__(self) -> None:
        self.states: dict[torch.Tensor, list[SegmentState]] = {}  # parameter -> new r, v
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.record: dict | None = None


class _Step:
    """One training step in flight, from its first bucket to its last (step 8)."""

    def __init__(self) -> None:
        self.asides: list[_Aside] = []
        self.futures: list[torch.futures.Future] = []  # every bucket's result
        self.failed: list[int] = []  # ranks that sent length -1 (known alike on every rank)
        self.errors: list[BaseException] = []  # this rank's own (step or aggregation)
        self.broken = False  # a collective raised (a rank died): the ranks cannot agree
        self.warmup = False


class VGCHookState:
    """Everything the hook keeps between steps, on one rank.

    Parameters
    ----------
    model : nn.Module
        The module DDP wraps (``ddp_model.module``).
    method : {"vgc", "hybrid", "strom", "none"}
    alpha, zeta, tau, residual :
        As :class:`vgc_ref.Compressor`.
    backend : str or Backend, optional
        The vgc_ref backend of the step and the aggregation (default $VGC_BACKEND or numpy).
    conv, products :
        Forms of the variance terms (:class:`VarianceTracker`); vgc and hybrid only.
    untracked : {"dense", "error", "zero"}
        What a parameter without a variance term (none of nn.Linear, nn.Conv1d, nn.Conv2d,
        nn.Embedding owns it: normalisation layers, free parameters) gets under vgc and
        hybrid: sent dense, uncompressed, every step (the default: exact, and such
        parameters are small); an error naming it; or s = 0 (v stays 0, so every non-zero
        residual element is sent, quantized).
    warmup_steps : int
        The first ``warmup_steps`` steps are plain allreduce averages (DDP's own hook),
        with r and v untouched; compression starts after them (default 0).
    process_group : ProcessGroup, optional
        Default: the world.
    device_path : {"auto", "host", "simulate"}
        Where a bucket's step and aggregation run. "auto": CUDA buckets in device memory
        with the numba-cuda backend (when ``backend`` names it, or names no backend and
        numba-cuda runs on a GPU here), everything else on the host; "host": always on
        the host (CUDA buckets copied, as before the device path existed); "simulate":
        CPU buckets through the device path on Numba's CUDA simulator (for tests: tiny
        models only). docs/torch.md, "On a GPU".
    """

    def __init__(
        self,
        model: torch.nn.Module,
        method: str = "vgc",
        *,
        alpha: float = 2.0,
        zeta: float = 0.999,
        tau: float = 0.0,
        residual: str = "feedback",
        backend: str | Backend | None = None,
        conv: str = "exact",
        products: str = "blas",
        untracked: str = "dense",
        warmup_steps: int = 0,
        process_group=None,
        device_path: str = "auto",
    ) -> None:
        if method not in HOOK_METHODS:
            raise InputError("method", repr(method), f"must be one of {HOOK_METHODS}")
        if untracked not in UNTRACKED:
            raise InputError("untracked", repr(untracked), f"must be one of {UNTRACKED}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise InputError("warmup_steps", repr(warmup_steps), "must be an integer >= 0")
        self.method = method
        # Hyperparameters checked once, by the Compressor that owns them.
        self.options = dict(alpha=alpha, zeta=zeta, tau=tau, residual=residual)
        Compressor([], method, **self.options)
        named = backend is not None or ENV_VAR in os.environ
        self.backend = get_backend(backend) if named else default_backend()
        if device_path not in dev.DEVICE_PATHS:
            raise InputError("device_path", repr(device_path), f"must be one of {dev.DEVICE_PATHS}")
        if device_path == "simulate" and not dev.simulator_on():
            raise InputError(
                "device_path", "'simulate'", "needs Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
            )
        self.device_path = device_path
        # The backend of device buckets, chosen at the first one (None: not chosen yet);
        # a backend named by the caller (or $VGC_BACKEND) is kept as it is.
        self._backend_named = named
        self._device_backend: Backend | None = None
        self.untracked = untracked
        self.warmup_steps = warmup_steps
        self.process_group = process_group
        # Why per parameter: DDP regroups parameters into new buckets after the first step,
        # so a bucket index does not name the same parameters twice; a parameter does.
        self.params: dict[torch.Tensor, _ParamState] = {
            p: _ParamState(name, p.numel()) for name, p in model.named_parameters() if p.requires_grad
        }
        # s for vgc and hybrid; None for the methods that need none.
        self.tracker = VarianceTracker(model, conv, products) if method in ("vgc", "hybrid") else None
        # One Compressor per bucket layout (its hyperparameters checked once); its states are
        # set to the scratch copies of each call.
        self._compressors: dict[tuple, Compressor] = {}
        # Committed steps (warm-up included): the warm-up and stats() count them.
        self.steps = 0
        # This rank's counters, committed with each step: message bytes, their dense
        # equivalent (4 bytes an element), elements sent and elements in all, hook calls.
        # Warm-up steps count as dense messages (4 bytes an element both ways).
        self.message_bytes = 0
        self.dense_bytes = 0
        self.sent = 0
        self.elements = 0
        self.calls = 0
        # The VGCStepError of the last failed step (DDP raises it as a RuntimeError).
        self.last_error: VGCStepError | None = None
        # The step in flight between its first and its last bucket (step 8).
        self._step: _Step | None = None
        # When not None, every committed hook call appends a dict here: the parameter names,
        # g and s of each segment, the message, and g_hat. For tests and debugging.
        self.record: list | None = None

    # -- the step (1-4) ---------------------------------------------------------------

    def _compressor(self, params: list[torch.Tensor], backend: Backend) -> Compressor:
        key = (tuple(params), backend.name)
        comp = self._compressors.get(key)
        if comp is None:
            comp = Compressor([], self.method, backend=backend, **self.options)
            self._compressors[key] = comp
        return comp

    def _backend_for(self, device: torch.device) -> tuple[Backend, bool]:
        """The backend of a bucket on ``device``, and whether its step runs in device memory."""
        if self.device_path == "simulate" or (self.device_path == "auto" and device.type == "cuda"):
            if self._device_backend is None:
                if self.device_path == "simulate" or self.backend.name == "numba-cuda":
                    self._device_backend = get_backend("numba-cuda")
                elif not self._backend_named and dev.gpu_available():
                    self._device_backend = get_backend("numba-cuda")
                else:
                    self._device_backend = self.backend
            if self._device_backend.name == "numba-cuda":
                return self._device_backend, True
        return self.backend, False

    def _dense(self, p: torch.Tensor) -> bool:
        """Whether ``p`` is sent dense: vgc/hybrid, no tracked layer owns it, untracked='dense'."""
        return self.tracker is not None and not self.tracker.tracks(p) and self.untracked == "dense"

    def _variance(self, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """s of ``p`` for this step (the tracker's term, or 0 where that is exact or asked for)."""
        tracked = self.tracker.tracks(p)
        s = self.tracker.pop(p) if tracked else None
        if s is not None:
            return s
        # A tracked layer that did not run this step (find_unused_parameters) has g = 0, and
        # s = 0 is its exact term; an untracked parameter gets s = 0 only when asked.
        if (tracked and not bool(g.any())) or (not tracked and self.untracked == "zero"):
            return torch.zeros(g.numel(), dtype=torch.float32, device=g.device)
        raise InputError(
            f"variance of {self.params[p].name}",
            "missing",
            "no variance term: only nn.Linear, nn.Conv1d, nn.Conv2d and nn.Embedding layers "
            "are tracked (untracked='dense' sends other parameters uncompressed, 'zero' with "
            "s = 0), and the layer must have run forward with grad enabled since the last step",
        )

    def _float32(self, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """g as a float32 tensor: g itself for float32, a cast copy for half types."""
        if g.dtype not in GRAD_DTYPES:
            raise InputError(
                f"gradient of {self.params[p].name}",
                f"dtype {g.dtype}",
                "must be float32, float16 or bfloat16",
            )
        return g if g.dtype == torch.float32 else g.float()

    def _pieces(self, g32: torch.Tensor, s32: torch.Tensor | None, bounds, on_device: bool, is_dense: bool):
        """g and s of each piece of one parameter, as the backend takes them (no copy).

        On the host: numpy views (a copy only for a CUDA tensor on the host path). On the
        device path: device views of the tensors, but a dense piece on the host, since its
        values are the message's.
        """
        if not on_device:
            g_np = tensor_as_numpy(g32)  # a view of the bucket for float32 on CPU
            s_np = tensor_as_numpy(s32) if s32 is not None else None
            return [(g_np[a:b], s_np[a:b] if s_np is not None else None) for a, b in bounds]
        g_flat = g32.reshape(-1)
        s_flat = s32.reshape(-1).contiguous() if s32 is not None else None
        if is_dense:
            return [(tensor_as_numpy(g_flat[a:b]), None) for a, b in bounds]
        return [
            (dev.device_view(g_flat[a:b]), dev.device_view(s_flat[a:b]) if s_flat is not None else None)
            for a, b in bounds
        ]

    def _compress_aside(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> tuple:
        """Steps 1-4 for one bucket on scratch copies of the state; nothing of ``self`` changes.

        On the device path (:meth:`_backend_for`) g and s are device views of the tensors
        and the scratch state is the parameters' device spares (:mod:`vgc_ref.torch.device`).
        Returns the message, the segment sizes and the :class:`_Aside` to commit.
        """
        device = grads[0].device if grads else torch.device("cpu")
        backend, on_device = self._backend_for(device)
        aside = _Aside()
        comp = self._compressor(params, backend)
        # Per segment, in message order: g, s, dense or not, the state stepped into
        # (scratch) and the one stepped from (start: the committed one on the host; on
        # the device path the device spare, which holds the committed r and v).
        g_list, s_list, dense, scratch, start = [], [], [], [], []
        # On the device path every Numba call below runs in the bucket's device context.
        with dev.kernels(device) if on_device else contextlib.nullcontext():
            for p, g in zip(params, grads):
                g32 = self._float32(p, g)  # the bucket itself for float32
                is_dense = self._dense(p)
                s32 = None
                if self.tracker is not None and not is_dense:
                    s32 = self._variance(p, g).float()
                pieces = self._pieces(g32, s32, self.params[p].bounds, on_device, is_dense)
                # r and v in device memory where the backend keeps them there (vgc, hybrid,
                # strom); a dense parameter's stay 0 on the host.
                in_device = on_device and comp.device_state and not is_dense
                copies = self.params[p].scratch(device if in_device else None)
                committed = copies if in_device else self.params[p].states
                aside.states[p] = copies
                for (g_piece, s_piece), st, old in zip(pieces, copies, committed):
                    st.segment_id = old.segment_id = len(g_list)  # the position in this bucket's message
                    g_list.append(g_piece)
                    s_list.append(s_piece)
                    dense.append(is_dense)
                    scratch.append(st)
                    start.append(old)
            if on_device:
                dev.to_numba(device)  # the casts, s and the views are torch's work on its stream
            # The compressed segments in one Compressor step (which checks them all first),
            # the dense ones as DENSE packets (r and v stay 0), merged back in segment order.
            comp.states = [st for st, d in zip(start, dense) if not d]
            g_c = [g for g, d in zip(g_list, dense) if not d]
            s_c = [s for s, d in zip(s_list, dense) if not d] if self.tracker is not None else None
            into = None if comp.device_state else [st for st, d in zip(scratch, dense) if not d]
            compressed = iter(comp.compress(g_c, s_c, atomic=False, into=into))  # all or nothing above
            if on_device:
                dev.to_torch(device)  # Numba has read g and s before DDP reuses the bucket
        packets = [
            dense_packet(j, g) if d else next(compressed) for j, (g, d) in enumerate(zip(g_list, dense))
        ]
        message = backend.encode_message(packets)  # on the host (the packets' words are host arrays)
        sizes = [st.n for st in scratch]
        aside.counts.update(
            message_bytes=len(message),
            dense_bytes=4 * sum(sizes),
            elements=sum(sizes),
            sent=sum(int(pk.words.shape[0]) for pk in packets),
            calls=1,
        )
        if self.record is not None:
            aside.record = {
                "names": [self.params[p].name for p in params],
                "g": [dev.to_host(g) for g in g_list],
                "s": [dev.to_host(s) for s in s_list if s is not None],
                "message": message,
            }
        return message, sizes, aside

    def _commit(self, asides: list[_Aside]) -> None:
        for aside in asides:
            for p, states in aside.states.items():
                self.params[p].commit(states)
            for key, n in aside.counts.items():
                setattr(self, key, getattr(self, key) + n)
            if self.record is not None and aside.record is not None:
                self.record.append(aside.record)

    def compress(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> tuple[bytes, list[int]]:
        """Steps 1-4 for one bucket on this rank alone, committed at once (no exchange).

        Returns the encoded message and the segment sizes. The hook itself commits only at
        the end of a step every rank completed (step 8); this is for use without DDP.
        """
        message, sizes, aside = self._compress_aside(params, grads)
        self._commit([aside])
        return message, sizes

    # -- the exchange (5-8) -------------------------------------------------------------

    def communicate(self, bucket) -> torch.futures.Future:
        """Steps 1-8 for one bucket; the future's value is the bucket's averaged gradient."""
        if bucket.index() == 0 or self._step is None:
            self._step = _Step()  # DDP hands the buckets over in index order, 0 first
        step = self._step
        if self.steps < self.warmup_steps:
            step.warmup = True
            fut = self._allreduce(bucket, step)
        elif step.failed or step.broken:
            fut = _done(torch.zeros_like(bucket.buffer()))  # lost on every rank: exchange nothing
        else:
            try:
                fut = self._exchange(bucket, step)
            except Exception as exc:  # a collective raised: reported by step 8, not from here
                step.broken = True
                step.errors.append(exc)
                fut = _done(torch.zeros_like(bucket.buffer()))
        step.futures.append(fut)
        if not bucket.is_last():
            return fut
        self._step = None
        return self._finish(step, fut, bucket.buffer().device)

    def _allreduce(self, bucket, step: _Step) -> torch.futures.Future:
        """A warm-up step's bucket: DDP's own average (divide by P, then allreduce)."""
        buf = bucket.buffer()
        n = buf.numel()
        aside = _Aside()
        aside.counts.update(message_bytes=4 * n, dense_bytes=4 * n, elements=n, sent=n, calls=1)
        step.asides.append(aside)
        group = self.process_group
        buf.div_(dist.get_world_size(group))
        work = dist.all_reduce(buf, group=group, async_op=True)
        return work.get_future().then(lambda fut: fut.value()[0])

    def _exchange(self, bucket, step: _Step) -> torch.futures.Future:
        """Steps 1-7 for one bucket of a compressed step."""
        buf = bucket.buffer()
        params = list(bucket.parameters())
        grads = list(bucket.gradients())
        group = self.process_group
        world = dist.get_world_size(group)
        try:
            message, sizes, aside = self._compress_aside(params, grads)
            step.asides.append(aside)
        except Exception as exc:  # reported to every rank in step 5, raised by step 8
            message, sizes, aside = None, [], None
            step.errors.append(exc)
        n = len(message) if message is not None else -1
        length = torch.tensor([n], dtype=torch.int64, device=buf.device)
        lengths = [torch.empty_like(length) for _ in range(world)]
        dist.all_gather(lengths, length, group=group)
        lengths = [int(t.item()) for t in lengths]
        step.failed = [w for w, n in enumerate(lengths) if n < 0]
        if step.failed:
            return _done(torch.zeros_like(buf))
        backend, on_device = self._backend_for(buf.device)  # chosen by the step above
        payload = pad_message(message, max(lengths), buf.device)
        gathered = [torch.empty_like(payload) for _ in range(world)]
        work = dist.all_gather(gathered, payload, group=group, async_op=True)
        offsets = [(g.data_ptr() - buf.data_ptr()) // buf.element_size() for g in grads]
        pieces = [
            (off + start, off + stop)
            for p, off in zip(params, offsets)
            for start, stop in self.params[p].bounds
        ]
        record = aside.record

        def aggregate(fut) -> torch.Tensor:
            try:
                fut.value()  # raises if the exchange failed
                if on_device:  # g_hat written by the kernels into device views of the result
                    result = torch.zeros(buf.numel(), dtype=torch.float32, device=buf.device)
                    with dev.kernels(buf.device):  # the callback's thread: the bucket's context
                        out = [dev.device_view(result[start:stop]) for start, stop in pieces]
                        dev.to_numba(buf.device)
                        aggregate_gathered(gathered, lengths, sizes, out, backend)
                        dev.to_torch(buf.device)
                else:
                    result = _result_buffer(buf, pieces)  # +0.0 where no parameter lies
                    flat = result.numpy()
                    out = [flat[start:stop] for start, stop in pieces]
                    aggregate_gathered(gathered, lengths, sizes, out, backend)
                if record is not None:
                    record["g_hat"] = [dev.to_host(o) for o in out]
                return result.to(device=buf.device, dtype=buf.dtype).reshape(buf.shape)
            except Exception as exc:  # a message that does not decode, ...: step 8 reports it
                step.errors.append(exc)
                return torch.zeros_like(buf)

        return work.get_future().then(aggregate)

    def _finish(self, step: _Step, last: torch.futures.Future, device) -> torch.futures.Future:
        """Step 8: wait for the step's buckets, agree on success, commit or raise on every rank."""
        try:
            for fut in step.futures:
                fut.wait()  # aggregation errors are caught into step.errors
            failed = None if step.broken else step.failed
            if failed == [] and not step.warmup:
                flag = torch.tensor([1 if step.errors else 0], dtype=torch.int64, device=device)
                flags = [torch.empty_like(flag) for _ in range(dist.get_world_size(self.process_group))]
                dist.all_gather(flags, flag, group=self.process_group)
                failed = [w for w, t in enumerate(flags) if int(t.item())]
        except Exception as exc:  # the agreement itself failed (a rank died): nothing commits
            failed, step.errors = None, [*step.errors, exc]
        if self.tracker is not None:
            self.tracker.clear()  # terms of buckets not compressed (warm-up, a failed step)
        if failed is None or failed:
            error = VGCStepError(failed, step.errors[0] if step.errors else None)
            self.last_error = error

            def fail(_):  # raised in DDP's wait: "... the callback: VGCStepError: ..."
                raise error

            return _done(torch.zeros(0)).then(fail)
        self._commit(step.asides)
        self.steps += 1
        return last

    # -- counters and state -------------------------------------------------------------

    def ratio(self) -> float:
        """This rank's compression ratio so far: dense bytes / message bytes (nan before any)."""
        return self.dense_bytes / self.message_bytes if self.message_bytes else float("nan")

    def stats(self) -> dict:
        """This rank's counters of the committed steps, and the ratios they give.

        ``steps`` (warm-up included), ``warmup_steps`` done, ``calls`` (buckets),
        ``message_bytes`` sent and ``dense_bytes`` (4 per element: float32 dense),
        ``elements`` and ``sent`` (elements sent), ``ratio`` (dense / message bytes) and
        ``sent_fraction`` (sent / elements); the ratios are nan before any step.
        """
        return {
            "steps": self.steps,
            "warmup_steps": min(self.steps, self.warmup_steps),
            "calls": self.calls,
            "message_bytes": self.message_bytes,
            "dense_bytes": self.dense_bytes,
            "elements": self.elements,
            "sent": self.sent,
            "ratio": self.ratio(),
            "sent_fraction": self.sent / self.elements if self.elements else float("nan"),
        }

    def state_dict(self) -> dict:
        """Method, hyperparameters and every parameter's r and v (float32 CPU tensors), by name."""
        state = {}
        for ps in self.params.values():
            pieces = ps.host_states()
            state[ps.name] = {
                "r": torch.from_numpy(_concat([st.r for st in pieces])).clone(),
                "v": torch.from_numpy(_concat([st.v for st in pieces])).clone(),
            }
        return {"method": self.method, "options": dict(self.options), "params": state}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s result; checked in full before anything changes."""
        if state.get("method") != self.method or state.get("options") != self.options:
            raise InputError(
                "state['method'/'options']",
                f"{state.get('method')!r} {state.get('options')!r}",
                f"must equal this hook's {self.method!r} {self.options!r}",
            )
        saved = state.get("params", {})
        by_name = {ps.name: ps for ps in self.params.values()}
        if set(saved) != set(by_name):
            raise InputError("state['params']", sorted(set(saved) ^ set(by_name))[:4], "names differ")
        loaded = {}
        for name, ps in by_name.items():
            numel = ps.bounds[-1][1]
            pair = []
            for key in ("r", "v"):
                t = saved[name][key]
                if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.numel() != numel:
                    raise InputError(f"state['params'][{name!r}][{key!r}]", repr(t)[:40], f"float32[{numel}]")
                pair.append(t.detach().cpu().reshape(-1).numpy())
            # SegmentState validates finiteness and v >= 0 for every piece.
            loaded[name] = [SegmentState(0, pair[0][a:b].copy(), pair[1][a:b].copy()) for a, b in ps.bounds]
        for name, ps in by_name.items():
            if ps.device is not None:
                ps.device.load(loaded[name])
                continue
            for st, new in zip(ps.states, loaded[name]):
                st.r[...] = new.r
                st.v[...] = new.v


def _result_buffer(buf: torch.Tensor, pieces: list[tuple[int, int]]) -> torch.Tensor:
    """Where a CPU bucket's g_hat is written: the bucket itself when it is contiguous
    float32 (its gradients are in the message by now; the pieces are overwritten and the
    gaps between them set to +0.0), else a new float32 tensor of zeros. Writing the
    bucket saves allocating and faulting in a bucket-sized tensor every step."""
    if buf.dtype != torch.float32 or buf.device.type != "cpu" or not buf.is_contiguous():
        return torch.zeros(buf.numel(), dtype=torch.float32)
    flat = buf.view(-1)
    at = 0
    for start, stop in sorted(pieces):
        if start > at:
            flat[at:start] = 0.0
        at = max(at, stop)
    if at < flat.numel():
        flat[at:] = 0.0
    return flat


def _concat(arrays):
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]


# DDP compares a hook's return annotation with torch.futures.Future[torch.Tensor] itself, so
# this module has no ``from __future__ import annotations`` (that would make it a string).
def vgc_hook(state: VGCHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """The DDP communication hook: :meth:`VGCHookState.communicate` (steps 1-8)."""
    return state.communicate(bucket)


def register(ddp_model, method: str = "vgc", **options) -> VGCHookState:
    """Register VGC as ``ddp_model``'s communication hook; return the hook's state.

    Call it once, after wrapping the model in DistributedDataParallel and before the
    first forward. ``options`` are those of :class:`VGCHookState`. The returned state has
    ``state_dict``/``load_state_dict`` (save it beside the optimizer's), ``stats()``,
    ``ratio()`` and the counters ``steps``, ``message_bytes``, ``dense_bytes``, ``sent``
    and ``elements``.

    Raises
    ------
    TypeError
        ``ddp_model`` is not a ``torch.nn.parallel.DistributedDataParallel``.
    """
    if not isinstance(ddp_model, torch.nn.parallel.DistributedDataParallel):
        raise TypeError(
            f"vgc_ref.torch.register needs a torch.nn.parallel.DistributedDataParallel model, "
            f"not {type(ddp_model).__module__}.{type(ddp_model).__qualname__}: wrap it first, "
            "register(DistributedDataParallel(model), ...)"
        )
    state = VGCHookState(ddp_model.module, method, **options)
    ddp_model.register_comm_hook(state, vgc_hook)
    return state
