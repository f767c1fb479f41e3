namespace Qed.Nbd.Client;

/// <summary>One extent of an NBD export's <c>base:allocation</c> block status.</summary>
/// <param name="Offset">First byte of the extent.</param>
/// <param name="Length">Length in bytes (at least 1).</param>
/// <param name="IsHole">The server has no storage allocated there (<c>NBD_STATE_HOLE</c>).</param>
/// <param name="IsZero">The extent reads as zeros (<c>NBD_STATE_ZERO</c>).</param>
public readonly record struct NbdAllocationExtent(long Offset, long Length, bool IsHole, bool IsZero);
