"""vgc_ref: reference implementation of variance-based gradient compression (VGC).

Tsuzuku, Imachi and Akiba, "Variance-based Gradient Compression for Efficient
Distributed Deep Learning" (ICLR 2018 workshop, arXiv:1802.06058).

The method in three parts, one module each:

* :mod:`vgc_ref.variance` -- the gradient g and the variance term s of a dense layer
  at the cost of one extra matrix product;
* :mod:`vgc_ref.criterion` (with :mod:`vgc_ref.state`, :mod:`vgc_ref.params` and
  :mod:`vgc_ref.quantize`) -- send element i when r_i^2 > alpha * v_i, quantized to a
  power of two, the rest kept in the residual r while v decays by zeta;
* :mod:`vgc_ref.encoding` -- the bit-exact message format (docs/format.md).

:mod:`vgc_ref.aggregate` sums P workers' messages in rank order;
:class:`vgc_ref.Compressor` ties the parts together for one worker.
"""

from vgc_ref._version import __version__ as __version__
from vgc_ref.aggregate import aggregate_packets, decode_accumulate
from vgc_ref.compressor import METHODS, Compressor
from vgc_ref.criterion import dense_packet, strom_step, topk_step, vgc_step, vgc_step_scratch
from vgc_ref.encoding import decode_message, encode_message, message_length, validate_packet
from vgc_ref.errors import (
    AccumulatorOverflowError,
    FormatError,
    HyperparameterError,
    InputError,
    NegativeVarianceError,
    NonFiniteError,
    SegmentMismatchError,
    VGCError,
)
from vgc_ref.packet import MAX_SEGMENT_LEN, Codec, Packet, packet_entries
from vgc_ref.params import StromParams, TopKParams, VGCParams
from vgc_ref.state import SegmentState, segment_bounds, split_segments
from vgc_ref.variance import (
    conv_grad_var,
    dense_grad,
    dense_grad_var,
    dense_grad_var_blas,
    dense_var,
    per_sample_conv_grad_var,
    per_sample_dense_grad_var,
)

__all__ = [
    "METHODS",
    "MAX_SEGMENT_LEN",
    "AccumulatorOverflowError",
    "Codec",
    "Compressor",
    "FormatError",
    "HyperparameterError",
    "InputError",
    "NegativeVarianceError",
    "NonFiniteError",
    "Packet",
    "SegmentMismatchError",
    "SegmentState",
    "StromParams",
    "TopKParams",
    "VGCError",
    "VGCParams",
    "aggregate_packets",
    "decode_accumulate",
    "decode_message",
    "conv_grad_var",
    "dense_grad",
    "dense_grad_var",
    "dense_grad_var_blas",
    "dense_packet",
    "dense_var",
    "encode_message",
    "message_length",
    "packet_entries",
    "per_sample_conv_grad_var",
    "per_sample_dense_grad_var",
    "segment_bounds",
    "split_segments",
    "strom_step",
    "topk_step",
    "validate_packet",
    "vgc_step",
    "vgc_step_scratch",
]
