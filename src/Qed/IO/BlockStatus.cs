namespace Qed.IO;

/// <summary>One extent of a device with a uniform <see cref="BlockState"/>, starting at <see cref="Offset"/>.</summary>
/// <param name="Offset">First guest byte of the extent.</param>
/// <param name="Length">Length in bytes (at least 1).</param>
/// <param name="State">What the extent holds.</param>
/// <param name="HostOffset">For <see cref="BlockState.Data"/> (and the holes of a raw file, which map the same way), the offset of the extent's first byte in the device's file; otherwise -1.</param>
public readonly record struct BlockStatus(long Offset, long Length, BlockState State, long HostOffset);
