using Qed.IO;

namespace Qed.Extents;

/// <summary>One extent of the disk a device shows, its backing chain included: what it reads as and which layer answers for it.</summary>
/// <param name="Offset">First guest byte of the extent.</param>
/// <param name="Length">Length in bytes (at least 1).</param>
/// <param name="State">
/// <see cref="BlockState.Data"/>: stored in <paramref name="Device"/>'s file at <paramref name="HostOffset"/>.
/// <see cref="BlockState.Zero"/>: reads as zeros because the layer at <paramref name="Depth"/> says so (a QED zero
/// cluster, a hole of a raw file). <see cref="BlockState.Unallocated"/>: no layer holds it; it reads as zeros, and
/// <paramref name="Depth"/> is the last layer it fell through (the one without a backing file, or whose backing file ends
/// before it).
/// </param>
/// <param name="Depth">The layer that answers: 0 for the device asked, 1 for its backing file, and so on (qemu-img map's <c>depth</c>).</param>
/// <param name="HostOffset">Offset of the extent's first byte in <paramref name="Device"/>'s file, or -1 when the layer maps it to none.</param>
/// <param name="Device">The layer at <paramref name="Depth"/>; its <see cref="BlockDevice.FileName"/> is the file <paramref name="HostOffset"/> refers to.</param>
/// <remarks>
/// The other views follow from these fields: qemu-img map's <c>present</c> is <see cref="IsPresent"/>, <c>zero</c> is
/// <see cref="ReadsAsZeros"/>, <c>data</c> is <see cref="IsData"/>, <c>offset</c> is <see cref="HostOffset"/> when not
/// negative; NBD's <c>base:allocation</c> is a hole unless <see cref="IsData"/> and zero when <see cref="ReadsAsZeros"/>;
/// <c>qemu:allocation-depth</c> is <see cref="AllocationDepth"/>.
/// </remarks>
public readonly record struct Extent(long Offset, long Length, BlockState State, int Depth, long HostOffset, BlockDevice Device)
{
    /// <summary>The first byte after the extent.</summary>
    public long End => Offset + Length;

    /// <summary>True when the extent holds data that must be read to be known.</summary>
    public bool IsData => State == BlockState.Data;

    /// <summary>True when the extent certainly reads as zeros, known from metadata alone.</summary>
    public bool ReadsAsZeros => State != BlockState.Data;

    /// <summary>True when some layer of the chain defines the extent (qemu-img map's <c>present</c>).</summary>
    public bool IsPresent => State != BlockState.Unallocated;

    /// <summary>The layer that defines the extent counted from 1, or 0 when none does (NBD's <c>qemu:allocation-depth</c>).</summary>
    public int AllocationDepth => IsPresent ? Depth + 1 : 0;

    /// <summary>
    /// True when <paramref name="next"/> starts where this extent ends and is of the same kind: same state and layer, and
    /// either both without a host offset or the host offsets continuing each other, so the two can be reported as one.
    /// </summary>
    internal bool Continues(Extent next) =>
        next.Offset == End && next.State == State && next.Depth == Depth && ReferenceEquals(next.Device, Device)
        && (HostOffset < 0 ? next.HostOffset < 0 : next.HostOffset == HostOffset + Length);
}
