"""Short-vector building blocks of the NUFFT kernels, emitted as LLVM vector IR.

numba disables LLVM's SLP vectorizer, and its loop vectorizer only helps loops with a runtime
trip count (with a per-row setup cost of a dozen instructions); the NUFFT's inner loops are
short and of compile-time length (``w`` kernel taps, ``2 w`` floats per complex grid row).
These intrinsics write them as explicit LLVM vectors (``<L x float>``), fully unrolled, so
that a grid row is one or two AVX loads, fused multiply-adds and stores on any target LLVM
supports (it legalises the vector width to the host's registers).

All pointers are to the element type of ``coef``/``grid`` (float32 or float64); ``L`` (row
length) and the counts are compile-time integers (:class:`numba.types.IntegerLiteral`).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_FAST = ("fast",)


def _literal(*args) -> bool:
    return all(isinstance(a, types.IntegerLiteral) for a in args)


def _vector_ptr(builder, ptr, vecty):
    return builder.bitcast(ptr, vecty.as_pointer())


def _splat(builder, value, vecty):
    vec = ir.Constant(vecty, ir.Undefined)
    vec = builder.insert_element(vec, value, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vecty.count), [0] * vecty.count)
    return builder.shuffle_vector(vec, ir.Constant(vecty, ir.Undefined), mask)


def _data(context, builder, arrty, arr):
    return context.make_array(arrty)(context, builder, arr).data


@intrinsic
def horner(typingctx, ker, coef, s, degree, width):
    """``ker[i] = sum_k coef[k, i] s^(degree - k)`` for ``i < width`` (one vector per power).

    ``ker``: pointer to ``width`` elements; ``coef``: C-contiguous ``(degree + 1, width)`` array.
    """
    if not _literal(degree, width):
        return None
    deg, wid = degree.literal_value, width.literal_value

    def codegen(context, builder, sig, args):
        out, coef_arr, sval = args[0], args[1], args[2]
        elt = context.get_value_type(sig.args[1].dtype)
        vecty = ir.VectorType(elt, wid)
        base = _data(context, builder, sig.args[1], coef_arr)
        svec = _splat(builder, sval, vecty)

        def row(k):
            ptr = builder.gep(base, [ir.Constant(ir.IntType(64), k * wid)])
            return builder.load(_vector_ptr(builder, ptr, vecty), align=1)

        acc = row(0)
        for k in range(1, deg + 1):
            acc = builder.fadd(builder.fmul(acc, svec, flags=_FAST), row(k), flags=_FAST)
        builder.store(acc, _vector_ptr(builder, out, vecty), align=1)
        return context.get_dummy_value()

    return types.void(ker, coef, s, degree, width), codegen


def _row_pointer(builder, base, offset, vecty):
    return _vector_ptr(builder, builder.gep(base, [offset]), vecty)


def _row_operands(context, builder, sig, args, length):
    """Vector type, grid base pointer and ``row(c) -> (fac kc[c] splat, pointer to grid row c)``."""
    grid_arr, start_v, stride_v, fac_v, kc_p = args[:5]
    vecty = ir.VectorType(context.get_value_type(sig.args[0].dtype), length)
    base = _data(context, builder, sig.args[0], grid_arr)
    i64 = ir.IntType(64)

    def row(c):
        kc_c = builder.load(builder.gep(kc_p, [ir.Constant(i64, c)]))
        f = _splat(builder, builder.fmul(fac_v, kc_c, flags=_FAST), vecty)
        off = builder.add(start_v, builder.mul(stride_v, ir.Constant(i64, c)))
        return f, _row_pointer(builder, base, off, vecty)

    return vecty, row


@intrinsic
def axpy_rows(typingctx, grid, start, stride, fac, kc, kv, count, length):
    """``grid[start + c stride + e] += fac kc[c] kv[e]`` for ``c < count``, ``e < length``.

    ``grid``: 1D float array; ``kc``, ``kv``: pointers (``count`` and ``length`` elements).
    ``kv`` is loaded once and kept in registers.
    """
    if not _literal(count, length):
        return None
    cnt, ln = count.literal_value, length.literal_value

    def codegen(context, builder, sig, args):
        vecty, row = _row_operands(context, builder, sig, args, ln)
        kvec = builder.load(_vector_ptr(builder, args[5], vecty), align=1)
        for c in range(cnt):
            f, ptr = row(c)
            old = builder.load(ptr, align=1)
            builder.store(builder.fadd(old, builder.fmul(f, kvec, flags=_FAST), flags=_FAST), ptr,
                          align=1)
        return context.get_dummy_value()

    return types.void(grid, start, stride, fac, kc, kv, count, length), codegen


@intrinsic
def dot_rows(typingctx, grid, start, stride, fac, kc, acc, count, length):
    """``acc[e] += sum_c fac kc[c] grid[start + c stride + e]`` for ``c < count``, ``e < length``.

    ``acc``: pointer to ``length`` elements, loaded and stored once; two partial sums (rows
    alternate) halve the dependency chain of the fused multiply-adds.
    """
    if not _literal(count, length):
        return None
    cnt, ln = count.literal_value, length.literal_value

    def codegen(context, builder, sig, args):
        vecty, row = _row_operands(context, builder, sig, args, ln)
        acc_ptr = _vector_ptr(builder, args[5], vecty)
        sums = [builder.load(acc_ptr, align=1), ir.Constant(vecty, [vecty.element(0)] * ln)]
        for c in range(cnt):
            f, ptr = row(c)
            values = builder.load(ptr, align=1)
            sums[c % 2] = builder.fadd(sums[c % 2], builder.fmul(f, values, flags=_FAST), flags=_FAST)
        builder.store(builder.fadd(sums[0], sums[1], flags=_FAST), acc_ptr, align=1)
        return context.get_dummy_value()

    return types.void(grid, start, stride, fac, kc, acc, count, length), codegen
