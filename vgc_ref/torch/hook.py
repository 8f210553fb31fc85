"""VGC as a DDP communication hook: ``vgc_ref.torch.register(ddp_model, method="vgc")``.

For every gradient bucket DDP hands over, on every rank (docs/algorithm.md, steps of one
data-parallel VGC step):

1. take the bucket's gradients as float32 vectors -- on CPU, numpy views of the bucket's
   own memory (no copy), so the numba-cpu backend runs on the tensor memory;
2. take each parameter's variance term s from the :class:`VarianceTracker` (vgc, hybrid);
3. step a :class:`vgc_ref.Compressor` over the bucket's parameters: one segment per
   parameter (parameters above 2^27 elements are split), residual state r and v *kept per
   parameter*, so DDP's bucket rebuild after the first step (which regroups and reorders
   the parameters) changes only the order of the segments in the message, never the state;
   the segment id on the wire is the segment's position in its bucket's message;
4. encode the message in the wire format of docs/format.md;
5. exchange the message lengths with ``all_gather`` of an int64 tensor (a rank whose step
   raised sends -1, so every rank stops with an error instead of waiting for it);
6. exchange the messages padded to the longest with an asynchronous ``all_gather`` of
   uint8 tensors (no pickling);
7. when it completes, decode and add the P messages in rank order and divide by P,
   exactly as :func:`vgc_ref.decode_accumulate`, into the tensor DDP copies into the
   gradients.

All collectives are issued from the thread that runs backward, in the order DDP calls the
hook, which is the same on every rank. The length exchange (step 5) waits; the payload
exchange and the aggregation (6, 7) overlap the rest of backward.
"""

import torch
import torch.distributed as dist

from vgc_ref.backends import Backend, get_backend
from vgc_ref.compressor import METHODS, Compressor
from vgc_ref.encoding import encode_message
from vgc_ref.errors import InputError
from vgc_ref.state import SegmentState, segment_bounds
from vgc_ref.torch.variance import VarianceTracker

#: Methods the hook offers (topk is a baseline of the demo, not of the hook).
HOOK_METHODS = tuple(m for m in METHODS if m != "topk")


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


class _ParamState:
    """One parameter's residual state: one SegmentState per piece of at most 2^27 elements."""

    def __init__(self, name: str, numel: int) -> None:
        self.name = name
        self.bounds = segment_bounds(numel)  # [(start, stop)] pieces of the flat parameter
        self.states = [SegmentState.zeros(stop - start) for start, stop in self.bounds]


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
    untracked : {"error", "zero"}
        What s a parameter outside nn.Linear/Conv1d/Conv2d gets under vgc and hybrid: an
        error naming it, or s = 0 (v stays 0, so every non-zero residual element is sent).
    process_group : ProcessGroup, optional
        Default: the world.
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
        untracked: str = "error",
        process_group=None,
    ) -> None:
        if method not in HOOK_METHODS:
            raise InputError("method", repr(method), f"must be one of {HOOK_METHODS}")
        if untracked not in ("error", "zero"):
            raise InputError("untracked", repr(untracked), "must be 'error' or 'zero'")
        self.method = method
        # Hyperparameters checked once, by the Compressor that owns them.
        self.options = dict(alpha=alpha, zeta=zeta, tau=tau, residual=residual)
        Compressor([], method, **self.options)
        self.backend = get_backend(backend)
        self.untracked = untracked
        self.process_group = process_group
        # Why per parameter: DDP regroups parameters into new buckets after the first step,
        # so a bucket index does not name the same parameters twice; a parameter does.
        self.params: dict[torch.Tensor, _ParamState] = {
            p: _ParamState(name, p.numel()) for name, p in model.named_parameters() if p.requires_grad
        }
        # s for vgc and hybrid; None for the methods that need none.
        self.tracker = VarianceTracker(model, conv, products) if method in ("vgc", "hybrid") else None
        # One Compressor per bucket layout (tuple of parameters), sharing the states above.
        self._compressors: dict[tuple, Compressor] = {}
        # This rank's counters: message bytes, their dense equivalent (4 bytes an element),
        # elements sent and elements in all, hook calls. The example's summary sums them.
        self.message_bytes = 0
        self.dense_bytes = 0
        self.sent = 0
        self.elements = 0
        self.calls = 0
        # When not None, every hook call appends a dict here: the parameter names, g and s
        # of each segment, the message, and (once aggregated) g_hat. For tests and debugging.
        self.record: list | None = None

    # -- the step (1-4) ---------------------------------------------------------------

    def _compressor(self, params: list[torch.Tensor]) -> Compressor:
        key = tuple(params)
        comp = self._compressors.get(key)
        if comp is None:
            comp = Compressor([], self.method, backend=self.backend, **self.options)
            comp.states = [st for p in params for st in self.params[p].states]
            self._compressors[key] = comp
        for j, st in enumerate(comp.states):
            st.segment_id = j  # the segment's position in this bucket's message
        return comp

    def _variance(self, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """s of ``p`` for this step (the tracker's term, or 0 where that is exact or asked for)."""
        tracked = self.tracker.tracks(p)
        s = self.tracker.pop(p) if tracked else None
        if s is not None:
            return s
        # A tracked layer that did not run this step (find_unused_parameters) has g = 0, and
        # s = 0 is its exact term; an untracked parameter gets s = 0 only when asked.
        if (tracked and not bool(g.any())) or (not tracked and self.untracked == "zero"):
            return torch.zeros(g.numel(), dtype=torch.float32)
        raise InputError(
            f"variance of {self.params[p].name}",
            "missing",
            "no variance term: only nn.Linear, nn.Conv1d and nn.Conv2d layers are tracked "
            "(register(..., untracked='zero') sends other parameters with s = 0), and the "
            "layer must have run forward with grad enabled since the last step",
        )

    def compress(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> tuple[bytes, list[int]]:
        """Steps 1-4 for one bucket: the encoded message and the segment sizes."""
        comp = self._compressor(params)
        g_list, s_list = [], []
        for p, g in zip(params, grads):
            if g.dtype != torch.float32:
                raise InputError(f"gradient of {self.params[p].name}", f"dtype {g.dtype}", "must be float32")
            g_np = tensor_as_numpy(g)  # a view of the bucket on CPU
            s_np = tensor_as_numpy(self._variance(p, g)) if self.tracker is not None else None
            for start, stop in self.params[p].bounds:
                g_list.append(g_np[start:stop])
                if s_np is not None:
                    s_list.append(s_np[start:stop])
        packets = comp.compress(g_list, s_list if self.tracker is not None else None)
        message = encode_message(packets)
        self.message_bytes += len(message)
        self.dense_bytes += 4 * sum(comp.sizes)
        self.elements += sum(comp.sizes)
        self.sent += sum(int(pk.words.shape[0]) for pk in packets)
        if self.record is not None:
            self.record.append(
                {
                    "names": [self.params[p].name for p in params],
                    "g": [g.copy() for g in g_list],
                    "s": [s.copy() for s in s_list],
                    "message": message,
                }
            )
        return message, comp.sizes

    # -- the exchange (5-7) -------------------------------------------------------------

    def communicate(self, bucket) -> torch.futures.Future:
        """Steps 1-7 for one bucket; the future's value is the bucket's averaged gradient."""
        buf = bucket.buffer()
        params = list(bucket.parameters())
        grads = list(bucket.gradients())
        group = self.process_group
        world = dist.get_world_size(group)
        self.calls += 1
        try:
            message, sizes = self.compress(params, grads)
            error = None
        except Exception as exc:  # reported to every rank in step 5, then re-raised here
            message, sizes, error = b"", [], exc
        length = torch.tensor([len(message) if error is None else -1], dtype=torch.int64, device=buf.device)
        lengths = [torch.empty_like(length) for _ in range(world)]
        dist.all_gather(lengths, length, group=group)
        lengths = [int(t.item()) for t in lengths]
        if error is not None:
            raise error
        failed = [w for w, n in enumerate(lengths) if n < 0]
        if failed:
            raise RuntimeError(f"vgc_ref.torch: the VGC step raised on rank(s) {failed}; see their errors")
        payload = pad_message(message, max(lengths), buf.device)
        gathered = [torch.empty_like(payload) for _ in range(world)]
        work = dist.all_gather(gathered, payload, group=group, async_op=True)
        offsets = [(g.data_ptr() - buf.data_ptr()) // buf.element_size() for g in grads]
        pieces = [
            (off + start, off + stop)
            for p, off in zip(params, offsets)
            for start, stop in self.params[p].bounds
        ]
        entry = self.record[-1] if self.record is not None else None

        def aggregate(fut) -> torch.Tensor:
            fut.wait()
            result = torch.zeros(buf.numel(), dtype=torch.float32)  # +0.0 where no parameter lies
            flat = result.numpy()
            out = [flat[start:stop] for start, stop in pieces]
            aggregate_gathered(gathered, lengths, sizes, out, self.backend)
            if entry is not None:
                entry["g_hat"] = [o.copy() for o in out]
            return result.to(buf.device).reshape(buf.shape)

        return work.get_future().then(aggregate)

    # -- state --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Method, hyperparameters and every parameter's r and v (float32 CPU tensors), by name."""
        state = {}
        for ps in self.params.values():
            state[ps.name] = {
                "r": torch.from_numpy(_concat([st.r for st in ps.states])).clone(),
                "v": torch.from_numpy(_concat([st.v for st in ps.states])).clone(),
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
            for st, new in zip(ps.states, loaded[name]):
                st.r[...] = new.r
                st.v[...] = new.v


def _concat(arrays):
    import numpy as np

    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]


# DDP compares a hook's return annotation with torch.futures.Future[torch.Tensor] itself, so
# this module has no ``from __future__ import annotations`` (that would make it a string).
def vgc_hook(state: VGCHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """The DDP communication hook: :meth:`VGCHookState.communicate` (steps 1-7)."""
    return state.communicate(bucket)


def register(ddp_model, method: str = "vgc", **options) -> VGCHookState:
    """Register VGC as ``ddp_model``'s communication hook; return the hook's state.

    Call it once, after wrapping the model in DistributedDataParallel and before the
    first forward. ``options`` are those of :class:`VGCHookState`. The returned state has
    ``state_dict``/``load_state_dict`` (save it beside the optimizer's) and the counters
    ``message_bytes``, ``dense_bytes``, ``sent`` and ``elements``.
    """
    state = VGCHookState(ddp_model.module, method, **options)
    ddp_model.register_comm_hook(state, vgc_hook)
    return state
