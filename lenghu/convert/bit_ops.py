"""Two machine operations numba does not expose, for the Rice coder: bit length and an unaligned big-endian store.

Written here (as LLVM intrinsics) because neither numpy nor numba offers them
inside compiled loops: the loop form of a bit length costs a mispredicted
branch per coding block, and writing 4 bytes one at a time costs four stores
where the processor has one (``movbe``).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def bit_length(typingctx, value):
    """Bits needed to write the uint64 ``value`` (0 for 0), as ``int.bit_length``."""
    signature = types.int64(types.uint64)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        ctlz = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, ir.IntType(1)]),
                                              "llvm.ctlz.i64")
        zeros = builder.call(ctlz, [args[0], ir.Constant(ir.IntType(1), 0)])
        return builder.sub(ir.Constant(i64, 64), zeros)

    return signature, codegen


@intrinsic
def store_be32(typingctx, array, index, value):
    """Write the low 32 bits of the uint64 ``value`` big-endian at byte ``index`` of the uint8 ``array``.

    No bounds check: the caller guarantees ``index + 4 <= array.size``.
    """
    signature = types.void(array, index, types.uint64)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        i32 = ir.IntType(32)
        bswap = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [i32]), "llvm.bswap.i32")
        word = builder.call(bswap, [builder.trunc(args[2], i32)])
        store = builder.store(word, builder.bitcast(builder.gep(data, [args[1]]), i32.as_pointer()))
        store.align = 1
        return context.get_dummy_value()

    return signature, codegen
